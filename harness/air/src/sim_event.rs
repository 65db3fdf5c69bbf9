//! The event format of OpenThread's virtual-time simulation platform
//! (`examples/platforms/simulation/virtual_time/platform-sim.c` and `platform-simulation.h` at
//! the pinned `openthread-sys` 0.4.0): what a node built with `OT_SIMULATION_VIRTUAL_TIME` and
//! `OT_SIMULATION_VIRTUAL_TIME_UART` exchanges with its event dispatcher, one event per
//! `SOCK_SEQPACKET` packet (`OT_VT_USE_UNIX_SOCKET=1`).
//!
//! Layout (`struct Event`, packed, host byte order = little-endian here): `mDelay` u64, `mEvent`
//! u8, `mDataLength` u16, then `mDataLength` bytes (at most 1024).
//!
//! From a node: `ALARM_FIRED` with `mDelay` = µs until its next timer (`INT64_MAX`: none) is its
//! sleep request, sent each time it has nothing left to do (`platformSendSleepEvent`);
//! `RADIO_RECEIVED` is a frame it transmits (`radioTransmit`: channel byte, then the PSDU with
//! its 2-byte FCS); `UART_WRITE` is console output (`otPlatUartSend`).
//! To a node: every event first moves its clock on by `mDelay` (`platformAlarmAdvanceNow`);
//! `ALARM_FIRED` only does that, `RADIO_RECEIVED` hands it a frame (its own frame back ends its
//! transmission: `radioReceive`'s echo), `UART_WRITE` is console input (`otPlatUartReceived`).

use crate::AirError;

pub const ALARM_FIRED: u8 = 0;
pub const RADIO_RECEIVED: u8 = 1;
pub const UART_WRITE: u8 = 2;

/// `OT_EVENT_DATA_MAX_SIZE`.
pub const MAX_DATA: usize = 1024;
/// `mDelay` + `mEvent` + `mDataLength`.
pub const HEADER_LEN: usize = 8 + 1 + 2;
/// The delay of a sleep request with no timer running (`INT64_MAX` in `platformAlarmGetNext`).
pub const NO_ALARM: u64 = i64::MAX as u64;

/// One event of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    pub delay_us: u64,
    pub kind: u8,
    pub data: Vec<u8>,
}

impl SimEvent {
    pub fn parse(packet: &[u8]) -> Result<SimEvent, AirError> {
        let header = packet.get(..HEADER_LEN).ok_or(AirError::Truncated)?;
        let (delay, rest) = header.split_at(8);
        let delay_us = u64::from_le_bytes(delay.try_into().map_err(|_| AirError::Truncated)?);
        let [kind, lo, hi] = rest else {
            return Err(AirError::Truncated);
        };
        let len = usize::from(u16::from_le_bytes([*lo, *hi]));
        let data = packet.get(HEADER_LEN..).unwrap_or_default();
        if len > MAX_DATA || data.len() < len {
            return Err(AirError::Truncated);
        }
        if data.len() > len {
            return Err(AirError::TrailingBytes);
        }
        Ok(SimEvent {
            delay_us,
            kind: *kind,
            data: data.to_vec(),
        })
    }

    /// The packet; data beyond [`MAX_DATA`] is cut (callers split console input first).
    pub fn emit(&self) -> Vec<u8> {
        let data = self.data.get(..MAX_DATA).unwrap_or(&self.data);
        let mut out = Vec::with_capacity(HEADER_LEN + data.len());
        out.extend_from_slice(&self.delay_us.to_le_bytes());
        out.push(self.kind);
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    /// A transmitted frame's channel, PSDU (without FCS) and FCS.
    pub fn frame(&self) -> Result<(u8, &[u8], u16), AirError> {
        let (&channel, on_air) = self.data.split_first().ok_or(AirError::Truncated)?;
        let body = on_air
            .len()
            .checked_sub(2)
            .filter(|n| *n > 0)
            .ok_or(AirError::EmptyPsdu)?;
        let (psdu, fcs) = on_air.split_at(body);
        Ok((channel, psdu, u16::from_le_bytes([fcs[0], fcs[1]])))
    }

    /// A frame for a node: channel, PSDU, FCS as sent.
    pub fn radio(delay_us: u64, channel: u8, psdu: &[u8], fcs: u16) -> SimEvent {
        let mut data = Vec::with_capacity(1 + psdu.len() + 2);
        data.push(channel);
        data.extend_from_slice(psdu);
        data.extend_from_slice(&fcs.to_le_bytes());
        SimEvent {
            delay_us,
            kind: RADIO_RECEIVED,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_packed_struct() {
        let e = SimEvent {
            delay_us: 0x0102,
            kind: UART_WRITE,
            data: b"ab".to_vec(),
        };
        assert_eq!(e.emit(), [2, 1, 0, 0, 0, 0, 0, 0, 2, 2, 0, b'a', b'b']);
        assert_eq!(SimEvent::parse(&e.emit()).unwrap(), e);
    }

    #[test]
    fn a_sleep_request_without_a_timer_is_int64_max() {
        let mut packet = (i64::MAX as u64).to_le_bytes().to_vec();
        packet.extend([ALARM_FIRED, 0, 0]);
        let e = SimEvent::parse(&packet).unwrap();
        assert_eq!(
            (e.delay_us, e.kind, e.data.len()),
            (NO_ALARM, ALARM_FIRED, 0)
        );
    }

    #[test]
    fn frames_split_into_channel_psdu_and_fcs() {
        let e = SimEvent::radio(1, 15, &[0x41, 0x88, 0x01], 0xbeef);
        assert_eq!(e.data, [15, 0x41, 0x88, 0x01, 0xef, 0xbe]);
        assert_eq!(e.frame().unwrap(), (15, &[0x41, 0x88, 0x01][..], 0xbeef));
        let short = SimEvent {
            delay_us: 0,
            kind: RADIO_RECEIVED,
            data: vec![15, 1, 2],
        };
        assert_eq!(short.frame(), Err(AirError::EmptyPsdu));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(SimEvent::parse(&[0; 10]), Err(AirError::Truncated));
        let mut long = vec![0u8; 8];
        long.extend([UART_WRITE, 3, 0, b'x']);
        assert_eq!(SimEvent::parse(&long), Err(AirError::Truncated));
        let mut extra = vec![0u8; 8];
        extra.extend([UART_WRITE, 0, 0, b'x']);
        assert_eq!(SimEvent::parse(&extra), Err(AirError::TrailingBytes));
        let mut huge = vec![0u8; 8];
        huge.extend([UART_WRITE, 0x01, 0x04]);
        huge.extend(vec![0u8; 1025]);
        assert_eq!(SimEvent::parse(&huge), Err(AirError::Truncated));
    }
}
