//! The datagram format between air clients and the hub.
//!
//! client -> hub: `b'C' ch` (register / set channel), `b'M' ch` (register as a monitor),
//! `b'F' ch psdu.. fcs(u16 LE)` (transmit), `b'B'` (bye).
//! hub -> client: `b'F' ch rssi(i8) lqi(u8) ts_us(u64 LE) psdu.. fcs(u16 LE)`.
//!
//! Frames travel with their FCS, as on a real air: the sending radio appends it and a fault the
//! hub injects (a flipped bit) can hit the frame or its FCS. A receiving radio checks it before it
//! acknowledges anything, so a corrupted frame is dropped unacknowledged and its sender retries.

use ot_hil_wire::mac::{FCS_LEN, fcs};

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
const KIND_MONITOR: u8 = b'M';
const KIND_FRAME: u8 = b'F';
const KIND_BYE: u8 = b'B';

/// Size of the hub -> client header before the PSDU.
const FRAME_HEADER_LEN: usize = 1 + 1 + 1 + 1 + 8;

/// A datagram a client sends to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    /// Register, or move the radio to `channel` (0 = off: the client receives nothing).
    SetChannel { channel: u8 },
    /// Register, or move the radio to `channel` (11..=26), as a monitor: a sniffer's radio, which
    /// hears every frame as it was transmitted. The air's faults do not reach a monitor unless
    /// they are set on a link to it.
    Monitor { channel: u8 },
    /// Transmit `psdu` with the FCS `fcs` on `channel`. The FCS travels as sent; a correct one
    /// is [`ot_hil_wire::mac::fcs`] of the PSDU.
    Transmit {
        channel: u8,
        psdu: &'a [u8],
        fcs: u16,
    },
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
            KIND_MONITOR => match rest {
                [channel] if *channel != 0 && is_valid_channel(*channel) => {
                    Ok(ClientMessage::Monitor { channel: *channel })
                }
                [channel] => Err(AirError::BadChannel(*channel)),
                [] => Err(AirError::Truncated),
                _ => Err(AirError::TrailingBytes),
            },
            KIND_FRAME => {
                let (&channel, on_air) = rest.split_first().ok_or(AirError::Truncated)?;
                if channel == 0 || !is_valid_channel(channel) {
                    return Err(AirError::BadChannel(channel));
                }
                let (psdu, fcs) = split_fcs(on_air)?;
                Ok(ClientMessage::Transmit { channel, psdu, fcs })
            }
            KIND_BYE if rest.is_empty() => Ok(ClientMessage::Bye),
            KIND_BYE => Err(AirError::TrailingBytes),
            other => Err(AirError::UnknownKind(other)),
        }
    }

    pub fn emit(&self) -> Vec<u8> {
        match self {
            ClientMessage::SetChannel { channel } => vec![KIND_CHANNEL, *channel],
            ClientMessage::Monitor { channel } => vec![KIND_MONITOR, *channel],
            ClientMessage::Transmit { channel, psdu, fcs } => {
                let mut out = Vec::with_capacity(2 + psdu.len() + FCS_LEN);
                out.push(KIND_FRAME);
                out.push(*channel);
                out.extend_from_slice(psdu);
                out.extend_from_slice(&fcs.to_le_bytes());
                out
            }
            ClientMessage::Bye => vec![KIND_BYE],
        }
    }
}

/// Split the bytes of a frame on the air into its PSDU and FCS, checking the PSDU's length.
fn split_fcs(on_air: &[u8]) -> Result<(&[u8], u16), AirError> {
    let body_len = on_air
        .len()
        .checked_sub(FCS_LEN)
        .ok_or(AirError::Truncated)?;
    let (psdu, trailer) = on_air.split_at(body_len);
    if psdu.is_empty() {
        return Err(AirError::EmptyPsdu);
    }
    if psdu.len() > MAX_PSDU_LEN {
        return Err(AirError::PsduTooLong(psdu.len()));
    }
    let [lo, hi] = trailer else {
        return Err(AirError::Truncated);
    };
    Ok((psdu, u16::from_le_bytes([*lo, *hi])))
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
    /// The FCS as received (wrong when a fault corrupted the frame on the way).
    pub fcs: u16,
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
        let (psdu, fcs) = split_fcs(psdu)?;
        let ts: [u8; 8] = ts.try_into().map_err(|_| AirError::Truncated)?;
        Ok(AirFrame {
            channel: *channel,
            rssi_dbm: i8::from_le_bytes([*rssi]),
            lqi: *lqi,
            timestamp_us: u64::from_le_bytes(ts),
            psdu: psdu.to_vec(),
            fcs,
        })
    }

    /// Whether the FCS matches the PSDU: what a radio checks before it acknowledges or passes a
    /// frame on.
    pub fn fcs_ok(&self) -> bool {
        fcs(&self.psdu) == self.fcs
    }

    /// Emit the hub -> client datagram.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + self.psdu.len() + FCS_LEN);
        out.push(KIND_FRAME);
        out.push(self.channel);
        out.extend_from_slice(&self.rssi_dbm.to_le_bytes());
        out.push(self.lqi);
        out.extend_from_slice(&self.timestamp_us.to_le_bytes());
        out.extend_from_slice(&self.psdu);
        out.extend_from_slice(&self.fcs.to_le_bytes());
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
            ClientMessage::Monitor { channel: 26 },
            ClientMessage::Transmit {
                channel: 26,
                psdu: &psdu,
                fcs: fcs(&psdu),
            },
            ClientMessage::Transmit {
                channel: 26,
                psdu: &psdu,
                fcs: 0xbeef,
            },
            ClientMessage::Bye,
        ] {
            let bytes = msg.emit();
            assert_eq!(ClientMessage::parse(&bytes).unwrap(), msg);
        }
        assert_eq!(
            ClientMessage::Transmit {
                channel: 11,
                psdu: &psdu,
                fcs: 0x1234,
            }
            .emit(),
            [b'F', 11, 0x41, 0xd8, 0x01, 0xff, 0xff, 0x34, 0x12]
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
            ClientMessage::parse(&[b'M', 0]),
            Err(AirError::BadChannel(0)),
            "a monitor is switched off with `C 0`"
        );
        assert_eq!(ClientMessage::parse(b"M"), Err(AirError::Truncated));
        assert_eq!(
            ClientMessage::parse(&[b'F', 0, 1, 0, 0]),
            Err(AirError::BadChannel(0))
        );
        assert_eq!(ClientMessage::parse(&[b'F', 11]), Err(AirError::Truncated));
        assert_eq!(
            ClientMessage::parse(&[b'F', 11, 0x12]),
            Err(AirError::Truncated),
            "shorter than an FCS"
        );
        assert_eq!(
            ClientMessage::parse(&[b'F', 11, 0x12, 0x34]),
            Err(AirError::EmptyPsdu)
        );
        let mut long = vec![b'F', 11];
        long.extend([0u8; MAX_PSDU_LEN + 1 + FCS_LEN]);
        assert_eq!(
            ClientMessage::parse(&long),
            Err(AirError::PsduTooLong(MAX_PSDU_LEN + 1))
        );
        assert_eq!(ClientMessage::parse(b"Bx"), Err(AirError::TrailingBytes));
        assert_eq!(ClientMessage::parse(b"Z"), Err(AirError::UnknownKind(b'Z')));
    }

    #[test]
    fn air_frame_layout_and_round_trip() {
        let psdu = vec![0xaa, 0xbb];
        let frame = AirFrame {
            channel: 15,
            rssi_dbm: -40,
            lqi: 255,
            timestamp_us: 0x0102_0304_0506_0708,
            fcs: fcs(&psdu),
            psdu,
        };
        assert!(frame.fcs_ok());
        let bytes = frame.emit();
        let [lo, hi] = frame.fcs.to_le_bytes();
        assert_eq!(
            bytes,
            [
                b'F', 15, 0xd8, 0xff, 8, 7, 6, 5, 4, 3, 2, 1, 0xaa, 0xbb, lo, hi
            ]
        );
        assert_eq!(AirFrame::parse(&bytes).unwrap(), frame);
        assert_eq!(AirFrame::parse(&bytes[..5]), Err(AirError::Truncated));
        assert_eq!(AirFrame::parse(&bytes[..12]), Err(AirError::Truncated));
        assert_eq!(AirFrame::parse(&bytes[..14]), Err(AirError::EmptyPsdu));
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_the_fcs() {
        let psdu = [0x41u8, 0xd8, 0x01, 0xcd, 0xab, 0xff, 0xff, 0x12, 0x34];
        let good = AirFrame {
            channel: 15,
            rssi_dbm: -40,
            lqi: 255,
            timestamp_us: 0,
            psdu: psdu.to_vec(),
            fcs: fcs(&psdu),
        }
        .emit();
        assert!(AirFrame::parse(&good).unwrap().fcs_ok());
        for bit in FRAME_HEADER_LEN * 8..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!AirFrame::parse(&bad).unwrap().fcs_ok(), "bit {bit}");
        }
    }
}
