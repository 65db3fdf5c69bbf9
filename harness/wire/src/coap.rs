//! CoAP message access through the `coap-lite` crate: re-exports plus the few helpers the harness
//! and the virtual DK need (requests with a Uri-Path, piggy-backed responses, parse/encode).

pub use coap_lite;
pub use coap_lite::{
    CoapOption, ContentFormat, Header, MessageClass, MessageType, Packet, RequestType, ResponseType,
};

use crate::WireError;

/// A request: CON (`confirmable`) or NON, with one Uri-Path option per `/`-separated segment.
pub fn request(
    method: RequestType,
    confirmable: bool,
    message_id: u16,
    token: &[u8],
    uri_path: &str,
    payload: &[u8],
) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_version(1);
    packet.header.set_type(if confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    packet.header.code = MessageClass::Request(method);
    packet.header.message_id = message_id;
    packet.set_token(token.to_vec());
    for segment in uri_path.split('/').filter(|s| !s.is_empty()) {
        packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    packet.payload = payload.to_vec();
    packet
}

/// The response to `request`: piggy-backed in an ACK (same message id) for a CON request, a NON
/// with `message_id` for a NON request. The token is echoed.
pub fn response_to(
    request: &Packet,
    code: ResponseType,
    message_id: u16,
    payload: &[u8],
) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_version(1);
    if request.header.get_type() == MessageType::Confirmable {
        packet.header.set_type(MessageType::Acknowledgement);
        packet.header.message_id = request.header.message_id;
    } else {
        packet.header.set_type(MessageType::NonConfirmable);
        packet.header.message_id = message_id;
    }
    packet.header.code = MessageClass::Response(code);
    packet.set_token(request.get_token().to_vec());
    packet.payload = payload.to_vec();
    packet
}

/// An empty ACK for the CON message `message_id` (RFC 7252 §4.2), e.g. a separate response.
pub fn empty_ack(message_id: u16) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_version(1);
    packet.header.set_type(MessageType::Acknowledgement);
    packet.header.code = MessageClass::Empty;
    packet.header.message_id = message_id;
    packet
}

/// The Uri-Path of a message joined with `/` (no leading slash), as OpenThread prints it.
pub fn uri_path(packet: &Packet) -> String {
    packet
        .get_option(CoapOption::UriPath)
        .map(|segments| {
            segments
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}

/// Encode a message.
pub fn encode(packet: &Packet) -> Result<Vec<u8>, WireError> {
    packet
        .to_bytes()
        .map_err(|e| WireError::Coap(e.to_string()))
}

/// Decode a message.
pub fn decode(bytes: &[u8]) -> Result<Packet, WireError> {
    Packet::from_bytes(bytes).map_err(|e| WireError::Coap(e.to_string()))
}

/// Fuzzing entry point.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(packet) = decode(data) {
        let _ = encode(&packet);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_response_round_trip() {
        let req = request(RequestType::Post, true, 0x1234, &[0xab, 0xcd], "a/as", b"x");
        let bytes = encode(&req).unwrap();
        // CON POST, TKL 2, mid 0x1234, token, Uri-Path "a", Uri-Path "as", payload marker.
        assert_eq!(
            bytes,
            [
                0x42, 0x02, 0x12, 0x34, 0xab, 0xcd, 0xb1, b'a', 0x02, b'a', b's', 0xff, b'x'
            ]
        );
        let parsed = decode(&bytes).unwrap();
        assert_eq!(uri_path(&parsed), "a/as");
        assert_eq!(parsed.header.code, MessageClass::Request(RequestType::Post));
        assert_eq!(parsed.payload, b"x");

        let resp = response_to(&parsed, ResponseType::Changed, 0, b"ok");
        let parsed = decode(&encode(&resp).unwrap()).unwrap();
        assert_eq!(parsed.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(parsed.header.message_id, 0x1234);
        assert_eq!(parsed.get_token(), &[0xab, 0xcd]);
        assert_eq!(
            parsed.header.code,
            MessageClass::Response(ResponseType::Changed)
        );

        let non = request(RequestType::Get, false, 1, &[], "/test", &[]);
        let resp = response_to(&non, ResponseType::Content, 77, b"0");
        assert_eq!(resp.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(resp.header.message_id, 77);
    }

    #[test]
    fn empty_ack_layout() {
        // Ver 1, type ACK (2), TKL 0; code 0.00; message id.
        assert_eq!(
            encode(&empty_ack(0x1234)).unwrap(),
            [0x60, 0x00, 0x12, 0x34]
        );
    }

    #[test]
    fn decodes_coap_from_thread_vector() {
        // The CoAP part of the protocols.md §2 plaintext: CON POST a/as (Address Solicit).
        let bytes = hex::decode(
            "44024466 135f2280 b161 026173 112a ff 0108166e0a0000000007".replace(' ', ""),
        )
        .unwrap();
        let parsed = decode(&bytes).unwrap();
        assert_eq!(uri_path(&parsed), "a/as");
        assert_eq!(parsed.header.get_type(), MessageType::Confirmable);
        assert!(decode(&[0x44]).is_err());
    }
}
