//! Thread Management Framework messages for address resolution: Address Query (`a/aq`) and
//! Address Notification (`a/an`), CoAP over UDP port 61631 (Thread 1.3 §5.4.2).

use std::net::Ipv6Addr;

use ot_hil_wire::coap::{self, Packet, RequestType};

use super::NetError;

pub const PORT: u16 = 61631;
pub const URI_ADDRESS_QUERY: &str = "a/aq";
pub const URI_ADDRESS_NOTIFY: &str = "a/an";

/// Network-layer TLV types.
mod tlv {
    pub const TARGET_EID: u8 = 0;
    pub const RLOC16: u8 = 2;
    pub const ML_EID: u8 = 3;
}

/// What an Address Notification says: `target` is reachable at `rloc16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    pub target: Ipv6Addr,
    pub rloc16: u16,
    pub ml_eid_iid: [u8; 8],
}

/// Address Query: NON POST to the realm-local all-routers address.
pub fn address_query(message_id: u16, token: &[u8], target: &Ipv6Addr) -> Packet {
    let mut payload = vec![tlv::TARGET_EID, 16];
    payload.extend_from_slice(&target.octets());
    coap::request(
        RequestType::Post,
        false,
        message_id,
        token,
        URI_ADDRESS_QUERY,
        &payload,
    )
}

/// Address Notification: CON POST to the querier's RLOC.
pub fn address_notification(message_id: u16, token: &[u8], n: &Notification) -> Packet {
    let mut payload = vec![tlv::TARGET_EID, 16];
    payload.extend_from_slice(&n.target.octets());
    payload.extend_from_slice(&[tlv::RLOC16, 2]);
    payload.extend_from_slice(&n.rloc16.to_be_bytes());
    payload.extend_from_slice(&[tlv::ML_EID, 8]);
    payload.extend_from_slice(&n.ml_eid_iid);
    coap::request(
        RequestType::Post,
        true,
        message_id,
        token,
        URI_ADDRESS_NOTIFY,
        &payload,
    )
}

/// The first TLV of type `wanted` before any truncated one.
fn find(payload: &[u8], wanted: u8) -> Option<&[u8]> {
    super::tlvs(payload)
        .map_while(Result::ok)
        .find_map(|(t, value)| (t == wanted).then_some(value))
}

/// The Target EID TLV of a query or notification.
pub fn target_eid(payload: &[u8]) -> Result<Ipv6Addr, NetError> {
    let v: [u8; 16] = find(payload, tlv::TARGET_EID)
        .and_then(|v| v.try_into().ok())
        .ok_or(NetError::Tmf("no target eid tlv"))?;
    Ok(Ipv6Addr::from(v))
}

pub fn parse_notification(payload: &[u8]) -> Result<Notification, NetError> {
    let target = target_eid(payload)?;
    let rloc: [u8; 2] = find(payload, tlv::RLOC16)
        .and_then(|v| v.try_into().ok())
        .ok_or(NetError::Tmf("no rloc16 tlv"))?;
    let ml_eid_iid: [u8; 8] = find(payload, tlv::ML_EID)
        .and_then(|v| v.try_into().ok())
        .ok_or(NetError::Tmf("no ml-eid tlv"))?;
    Ok(Notification {
        target,
        rloc16: u16::from_be_bytes(rloc),
        ml_eid_iid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_notification_round_trip() {
        let target: Ipv6Addr = "fdde:ad00:beef:0:1:2:3:4".parse().unwrap();
        let q = coap::decode(&coap::encode(&address_query(7, &[1, 2], &target)).unwrap()).unwrap();
        assert_eq!(coap::uri_path(&q), "a/aq");
        assert_eq!(target_eid(&q.payload).unwrap(), target);
        let n = Notification {
            target,
            rloc16: 0x8401,
            ml_eid_iid: [0, 1, 0, 2, 0, 3, 0, 4],
        };
        let p = coap::decode(&coap::encode(&address_notification(8, &[3], &n)).unwrap()).unwrap();
        assert_eq!(coap::uri_path(&p), "a/an");
        assert_eq!(parse_notification(&p.payload).unwrap(), n);
        assert!(parse_notification(&p.payload[..20]).is_err());
    }
}
