//! The datagram format between air clients and the hub.
//!
//! client -> hub: `b'C' ch` (register / set channel), `b'M' ch` (register as a monitor),
//! `b'F' ch psdu.. fcs(u16 LE)` (transmit), `b'B'` (bye), and on a case clock
//! `b'I' now deadline console_in console_out frames_in controls` (all u64 LE; idle report, see
//! [`IdleReport`]).
//! hub -> client: `b'F' ch rssi(i8) lqi(u8) ts_us(u64 LE) psdu.. fcs(u16 LE)`, and on a case
//! clock `b'T' now_us(u64 LE)` (the case clock moved on).
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
const KIND_IDLE: u8 = b'I';
const KIND_TIME: u8 = b'T';

/// Size of an idle report after its kind byte: six u64.
const IDLE_REPORT_LEN: usize = 6 * 8;

/// What a board on a case clock tells the hub each time it has nothing left to do: the instant
/// it has reached, its next timer, and how much of each input it has consumed. The hub compares
/// the counts with what was sent to the board; only when they match is the board idle, so time
/// cannot move on while a byte, a frame or a request is still on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdleReport {
    /// The case clock as the board last heard it (µs).
    pub now_us: u64,
    /// The board's next timer on the case clock (µs); `None`: no timer.
    pub deadline_us: Option<u64>,
    /// Console bytes the board has read and handled.
    pub console_in: u64,
    /// Console bytes the board has written.
    pub console_out: u64,
    /// Datagrams from the hub the board has handled (frames, and ones it discarded).
    pub frames_in: u64,
    /// Control requests the board has handled.
    pub controls: u64,
}

impl IdleReport {
    fn emit_into(&self, out: &mut Vec<u8>) {
        for v in [
            self.now_us,
            self.deadline_us.unwrap_or(u64::MAX),
            self.console_in,
            self.console_out,
            self.frames_in,
            self.controls,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn parse(body: &[u8]) -> Result<Self, AirError> {
        if body.len() < IDLE_REPORT_LEN {
            return Err(AirError::Truncated);
        }
        if body.len() > IDLE_REPORT_LEN {
            return Err(AirError::TrailingBytes);
        }
        let mut fields = body.chunks_exact(8).map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_le_bytes(b)
        });
        let mut next = || fields.next().unwrap_or_default();
        let now_us = next();
        let deadline = next();
        Ok(IdleReport {
            now_us,
            deadline_us: (deadline != u64::MAX).then_some(deadline),
            console_in: next(),
            console_out: next(),
            frames_in: next(),
            controls: next(),
        })
    }
}

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
    /// A board on the case clock has nothing left to do (the first one registers it as clocked).
    Idle(IdleReport),
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
            KIND_IDLE => IdleReport::parse(rest).map(ClientMessage::Idle),
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
            ClientMessage::Idle(report) => {
                let mut out = Vec::with_capacity(1 + IDLE_REPORT_LEN);
                out.push(KIND_IDLE);
                report.emit_into(&mut out);
                out
            }
        }
    }
}

/// A datagram the hub sends to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubMessage {
    /// A frame the radio hears.
    Frame(AirFrame),
    /// The case clock moved on to this instant (µs): a clocked board runs its timers up to it.
    Time { now_us: u64 },
}

impl HubMessage {
    pub fn parse(datagram: &[u8]) -> Result<Self, AirError> {
        match datagram.split_first() {
            Some((&KIND_TIME, rest)) => {
                let bytes: [u8; 8] = match rest.len() {
                    0..8 => return Err(AirError::Truncated),
                    8 => rest.try_into().map_err(|_| AirError::Truncated)?,
                    _ => return Err(AirError::TrailingBytes),
                };
                Ok(HubMessage::Time {
                    now_us: u64::from_le_bytes(bytes),
                })
            }
            _ => AirFrame::parse(datagram).map(HubMessage::Frame),
        }
    }

    pub fn emit(&self) -> Vec<u8> {
        match self {
            HubMessage::Frame(frame) => frame.emit(),
            HubMessage::Time { now_us } => {
                let mut out = Vec::with_capacity(9);
                out.push(KIND_TIME);
                out.extend_from_slice(&now_us.to_le_bytes());
                out
            }
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
    /// Microseconds since the hub started (on a case clock: the case clock's instant): one clock
    /// for every receiver, like a sniffer's.
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
            ClientMessage::Idle(IdleReport::default()),
            ClientMessage::Idle(IdleReport {
                now_us: 8_000_000,
                deadline_us: Some(8_060_000),
                console_in: 12,
                console_out: 345,
                frames_in: 6,
                controls: 2,
            }),
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
    fn idle_report_layout_and_garbage() {
        let report = IdleReport {
            now_us: 1,
            deadline_us: None,
            console_in: 2,
            console_out: 3,
            frames_in: 4,
            controls: 5,
        };
        let bytes = ClientMessage::Idle(report).emit();
        assert_eq!(bytes.len(), 49);
        assert_eq!(bytes[0], b'I');
        assert_eq!(bytes[1..9], 1u64.to_le_bytes());
        assert_eq!(bytes[9..17], [0xff; 8], "no deadline is u64::MAX");
        assert_eq!(bytes[41..49], 5u64.to_le_bytes());
        assert_eq!(ClientMessage::parse(&bytes[..48]), Err(AirError::Truncated));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(ClientMessage::parse(&long), Err(AirError::TrailingBytes));
    }

    #[test]
    fn hub_messages_round_trip_and_time_layout() {
        let time = HubMessage::Time { now_us: 0x0102 };
        assert_eq!(time.emit(), [b'T', 2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(HubMessage::parse(&time.emit()).unwrap(), time);
        assert_eq!(HubMessage::parse(b"T\x01"), Err(AirError::Truncated));
        assert_eq!(
            HubMessage::parse(&[b'T', 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(AirError::TrailingBytes)
        );
        let psdu = vec![0x41, 0x88];
        let frame = HubMessage::Frame(AirFrame {
            channel: 11,
            rssi_dbm: -40,
            lqi: 255,
            timestamp_us: 9,
            fcs: fcs(&psdu),
            psdu,
        });
        assert_eq!(HubMessage::parse(&frame.emit()).unwrap(), frame);
        assert_eq!(HubMessage::parse(b"Z"), Err(AirError::Truncated));
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
