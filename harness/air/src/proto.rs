//! The datagram format between air clients and the hub.
//!
//! client -> hub: `b'C' ch` (register / set channel), `b'F' ch psdu..` (transmit), `b'B'` (bye).
//! hub -> client: `b'F' ch rssi(i8) lqi(u8) ts_us(u64 LE) psdu..`.
//!
//! PSDUs travel without their FCS: the air never corrupts a frame unless a fault is injected, so the
//! checksum would carry no information (a sniffer recomputes it when it needs one).

use crate::AirError;

/// Largest PSDU without the 2-byte FCS (aMaxPhyPacketSize 127 - 2).
pub const MAX_PSDU_LEN: usize = 125;

/// Lowest and highest 2.4 GHz O-QPSK channel (IEEE 802.15.4 channel page 0).
pub const MIN_CHANNEL: u8 = 11;
pub const MAX_CHANNEL: u8 = 26;

/// `0` means "radio off"; otherwise 11..=26.
pub fn is_valid_channel(channel: u8) -> bool {
    channel == 0 || (MIN_CHANNEL..=MAX_CHANNEL).contains(&channel)
}

const KIND_CHANNEL: u8 = b'C';
const KIND_FRAME: u8 = b'F';
const KIND_BYE: u8 = b'B';

/// Size of the hub -> client header before the PSDU.
const FRAME_HEADER_LEN: usize = 1 + 1 + 1 + 1 + 8;

/// A datagram a client sends to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    /// Register, or move the radio to `channel` (0 = off: the client receives nothing).
    SetChannel { channel: u8 },
    /// Transmit `psdu` on `channel`.
    Transmit { channel: u8, psdu: &'a [u8] },
    /// The client is going away.
    Bye,
}

impl<'a> ClientMessage<'a> {
    pub fn parse(datagram: &'a [u8]) -> Result<Self, AirError> {
        let (&kind, rest) = datagram.split_first().ok_or(AirError::Truncated)?;
        match kind {
            KIND_CHANNEL => match rest {
                [channel] if is_valid_channel(*channel) => {
                    Ok(ClientMessage::SetChannel { channel: *channel })
                }
                [channel] => Err(AirError::BadChannel(*channel)),
                [] => Err(AirError::Truncated),
                _ => Err(AirError::TrailingBytes),
            },
            KIND_FRAME => {
                let (&channel, psdu) = rest.split_first().ok_or(AirError::Truncated)?;
                if channel == 0 || !is_valid_channel(channel) {
                    return Err(AirError::BadChannel(channel));
                }
                check_psdu(psdu)?;
                Ok(ClientMessage::Transmit { channel, psdu })
            }
            KIND_BYE if rest.is_empty() => Ok(ClientMessage::Bye),
            KIND_BYE => Err(AirError::TrailingBytes),
            other => Err(AirError::UnknownKind(other)),
        }
    }

    pub fn emit(&self) -> Vec<u8> {
        match self {
            ClientMessage::SetChannel { channel } => vec![KIND_CHANNEL, *channel],
            ClientMessage::Transmit { channel, psdu } => {
                let mut out = Vec::with_capacity(2 + psdu.len());
                out.push(KIND_FRAME);
                out.push(*channel);
                out.extend_from_slice(psdu);
                out
            }
            ClientMessage::Bye => vec![KIND_BYE],
        }
    }
}

fn check_psdu(psdu: &[u8]) -> Result<(), AirError> {
    if psdu.is_empty() {
        return Err(AirError::EmptyPsdu);
    }
    if psdu.len() > MAX_PSDU_LEN {
        return Err(AirError::PsduTooLong(psdu.len()));
    }
    Ok(())
}

/// A frame as a receiver hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AirFrame {
    pub channel: u8,
    pub rssi_dbm: i8,
    pub lqi: u8,
    /// Microseconds since the hub started: one clock for every receiver, like a sniffer's.
    pub timestamp_us: u64,
    /// The PSDU without FCS.
    pub psdu: Vec<u8>,
}

impl AirFrame {
    /// Parse a hub -> client datagram.
    pub fn parse(datagram: &[u8]) -> Result<Self, AirError> {
        let header = datagram
            .get(..FRAME_HEADER_LEN)
            .ok_or(AirError::Truncated)?;
        let psdu = datagram
            .get(FRAME_HEADER_LEN..)
            .ok_or(AirError::Truncated)?;
        let [kind, channel, rssi, lqi, ts @ ..] = header else {
            return Err(AirError::Truncated);
        };
        if *kind != KIND_FRAME {
            return Err(AirError::UnknownKind(*kind));
        }
        if *channel == 0 || !is_valid_channel(*channel) {
            return Err(AirError::BadChannel(*channel));
        }
        check_psdu(psdu)?;
        let ts: [u8; 8] = ts.try_into().map_err(|_| AirError::Truncated)?;
        Ok(AirFrame {
            channel: *channel,
            rssi_dbm: i8::from_le_bytes([*rssi]),
            lqi: *lqi,
            timestamp_us: u64::from_le_bytes(ts),
            psdu: psdu.to_vec(),
        })
    }

    /// Emit the hub -> client datagram.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + self.psdu.len());
        out.push(KIND_FRAME);
        out.push(self.channel);
        out.extend_from_slice(&self.rssi_dbm.to_le_bytes());
        out.push(self.lqi);
        out.extend_from_slice(&self.timestamp_us.to_le_bytes());
        out.extend_from_slice(&self.psdu);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_round_trip() {
        let psdu = [0x41u8, 0xd8, 0x01, 0xff, 0xff];
        for msg in [
            ClientMessage::SetChannel { channel: 0 },
            ClientMessage::SetChannel { channel: 15 },
            ClientMessage::Transmit {
                channel: 26,
                psdu: &psdu,
            },
            ClientMessage::Bye,
        ] {
            let bytes = msg.emit();
            assert_eq!(ClientMessage::parse(&bytes).unwrap(), msg);
        }
        assert_eq!(
            ClientMessage::Transmit {
                channel: 11,
                psdu: &psdu
            }
            .emit(),
            [b'F', 11, 0x41, 0xd8, 0x01, 0xff, 0xff]
        );
    }

    #[test]
    fn client_messages_reject_garbage() {
        assert_eq!(ClientMessage::parse(b""), Err(AirError::Truncated));
        assert_eq!(ClientMessage::parse(b"C"), Err(AirError::Truncated));
        assert_eq!(
            ClientMessage::parse(&[b'C', 10]),
            Err(AirError::BadChannel(10))
        );
        assert_eq!(
            ClientMessage::parse(&[b'C', 27]),
            Err(AirError::BadChannel(27))
        );
        assert_eq!(
            ClientMessage::parse(&[b'C', 11, 0]),
            Err(AirError::TrailingBytes)
        );
        assert_eq!(
            ClientMessage::parse(&[b'F', 0, 1]),
            Err(AirError::BadChannel(0))
        );
        assert_eq!(ClientMessage::parse(&[b'F', 11]), Err(AirError::EmptyPsdu));
        let mut long = vec![b'F', 11];
        long.extend([0u8; MAX_PSDU_LEN + 1]);
        assert_eq!(
            ClientMessage::parse(&long),
            Err(AirError::PsduTooLong(MAX_PSDU_LEN + 1))
        );
        assert_eq!(ClientMessage::parse(b"Bx"), Err(AirError::TrailingBytes));
        assert_eq!(ClientMessage::parse(b"Z"), Err(AirError::UnknownKind(b'Z')));
    }

    #[test]
    fn air_frame_layout_and_round_trip() {
        let frame = AirFrame {
            channel: 15,
            rssi_dbm: -40,
            lqi: 255,
            timestamp_us: 0x0102_0304_0506_0708,
            psdu: vec![0xaa, 0xbb],
        };
        let bytes = frame.emit();
        assert_eq!(
            bytes,
            [b'F', 15, 0xd8, 0xff, 8, 7, 6, 5, 4, 3, 2, 1, 0xaa, 0xbb]
        );
        assert_eq!(AirFrame::parse(&bytes).unwrap(), frame);
        assert_eq!(AirFrame::parse(&bytes[..5]), Err(AirError::Truncated));
        assert_eq!(AirFrame::parse(&bytes[..12]), Err(AirError::EmptyPsdu));
    }
}
