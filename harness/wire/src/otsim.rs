//! The radio of OpenThread's simulation platform (`examples/platforms/simulation`, the platform of
//! upstream's `ot-cli-ftd`) on the wire: every transmitted 802.15.4 frame is one UDP datagram to the
//! IPv4 group 224.0.0.116 on the simulation's port base, sent from `port base + node id`.
//!
//! The datagram is the platform's `struct RadioMessage` (`radio.c`) cut to the frame's length
//! (`radioTransmit` sends `mLength + 1` bytes): one byte of channel, then the PSDU including its two
//! FCS bytes, which `radioComputeCrc` fills in with the CRC-16 of 802.15.4 before sending.
//!
//! Ports (`radio.c`, `platformRadioInit`; `simul_utils.c`, `utilsInitSocket`): the port base is
//! `PORT_BASE` (default 9000) plus `PORT_OFFSET × (MAX_NETWORK_SIZE + 1)` with
//! `OPENTHREAD_SIMULATION_MAX_NETWORK_SIZE` = 33, so each offset owns 34 ports: the group port and
//! one sending port per node id 1..=33.

use std::net::Ipv4Addr;

use crate::WireError;
use crate::mac;

/// The multicast group every simulated node sends to and listens on.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 116);
/// `PORT_BASE` when the environment does not set it.
pub const DEFAULT_PORT_BASE: u16 = 9000;
/// Node ids one port offset can hold (`OPENTHREAD_SIMULATION_MAX_NETWORK_SIZE`); node ids are 1-based.
pub const MAX_NODES_PER_OFFSET: u16 = 33;
/// Bytes in front of the PSDU: the channel.
const HEADER_LEN: usize = 1;

/// One simulated radio transmission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RadioMessage {
    /// IEEE 802.15.4 channel (11..=26 for Thread); a receiver drops frames not on its channel.
    pub channel: u8,
    /// The PSDU as sent, FCS included.
    pub psdu: Vec<u8>,
}

impl RadioMessage {
    /// A message carrying `psdu_without_fcs` on `channel`, its FCS computed as the platform does.
    pub fn with_fcs(channel: u8, psdu_without_fcs: &[u8]) -> RadioMessage {
        RadioMessage {
            channel,
            psdu: mac::append_fcs(psdu_without_fcs),
        }
    }

    /// Parse one datagram. The PSDU must hold at least its FCS and at most 127 bytes; the FCS is
    /// not checked here (see [`RadioMessage::split_fcs`]).
    pub fn parse(datagram: &[u8]) -> Result<RadioMessage, WireError> {
        let Some((&channel, psdu)) = datagram.split_first() else {
            return Err(WireError::truncated(
                "simulation radio message",
                HEADER_LEN,
                0,
            ));
        };
        if psdu.len() < mac::FCS_LEN {
            return Err(WireError::truncated(
                "simulation radio psdu",
                mac::FCS_LEN,
                psdu.len(),
            ));
        }
        if psdu.len() > mac::MAX_PSDU_LEN {
            return Err(WireError::malformed(
                "simulation radio psdu",
                "longer than 127 bytes",
            ));
        }
        Ok(RadioMessage {
            channel,
            psdu: psdu.to_vec(),
        })
    }

    /// The datagram as the simulation sends it.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.psdu.len());
        out.push(self.channel);
        out.extend_from_slice(&self.psdu);
        out
    }

    /// The PSDU without its FCS, and whether the FCS matches it.
    pub fn split_fcs(&self) -> Result<(&[u8], bool), WireError> {
        mac::split_fcs(&self.psdu)
    }
}

/// Where a port offset's nodes meet: the port of the group, i.e. the port base of the offset.
/// `None` when the offset's ports do not fit in 16 bits.
pub fn group_port(port_base: u16, port_offset: u16) -> Option<u16> {
    port_offset
        .checked_mul(MAX_NODES_PER_OFFSET + 1)
        .and_then(|shift| port_base.checked_add(shift))
}

/// The node id that sent a datagram from `source_port` to the group on `group_port`, if it is one.
pub fn sender_node(group_port: u16, source_port: u16) -> Option<u16> {
    source_port
        .checked_sub(group_port)
        .filter(|id| (1..=MAX_NODES_PER_OFFSET).contains(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unhex;

    // A MAC data request as the simulation sends it on channel 15: frame control 0x6863, seq 0x17,
    // PAN 0xface, short dst 0x0000, short src 0x0400, command 0x04, FCS.
    const DATA_REQUEST: &str = "0f | 63 68 17 ce fa 00 00 00 04 04";

    #[test]
    fn parses_channel_and_psdu_with_fcs() {
        let body = unhex("63 68 17 ce fa 00 00 00 04 04");
        let mut datagram = unhex(DATA_REQUEST);
        datagram.extend_from_slice(&mac::fcs(&body).to_le_bytes());
        let m = RadioMessage::parse(&datagram).unwrap();
        assert_eq!(m.channel, 15);
        assert_eq!(m.psdu.len(), body.len() + 2);
        assert_eq!(m.split_fcs().unwrap(), (&body[..], true));
        assert_eq!(m.emit(), datagram);
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let m = RadioMessage::with_fcs(26, &[0x02, 0x00, 0x2a]);
        assert_eq!(m.emit().len(), 1 + 3 + 2);
        assert_eq!(RadioMessage::parse(&m.emit()).unwrap(), m);
    }

    #[test]
    fn a_corrupted_frame_parses_but_its_fcs_does_not_match() {
        let mut m = RadioMessage::with_fcs(11, &[0x02, 0x00, 0x2a]);
        m.psdu[1] ^= 0x01;
        let parsed = RadioMessage::parse(&m.emit()).unwrap();
        assert!(!parsed.split_fcs().unwrap().1);
    }

    #[test]
    fn rejects_empty_short_and_oversized_datagrams() {
        assert!(RadioMessage::parse(&[]).is_err());
        assert!(RadioMessage::parse(&[11]).is_err());
        assert!(RadioMessage::parse(&[11, 0x00]).is_err());
        assert!(RadioMessage::parse(&[11, 0x00, 0x00]).is_ok());
        let mut long = vec![11];
        long.extend(std::iter::repeat_n(0u8, 128));
        assert!(RadioMessage::parse(&long).is_err());
        long.pop();
        assert!(RadioMessage::parse(&long).is_ok());
    }

    #[test]
    fn port_offsets_own_34_ports() {
        assert_eq!(group_port(DEFAULT_PORT_BASE, 0), Some(9000));
        assert_eq!(group_port(DEFAULT_PORT_BASE, 1), Some(9034));
        assert_eq!(group_port(DEFAULT_PORT_BASE, 2000), None);
        assert_eq!(sender_node(9034, 9035), Some(1));
        assert_eq!(sender_node(9034, 9067), Some(33));
        assert_eq!(sender_node(9034, 9068), None);
        assert_eq!(sender_node(9034, 9034), None);
        assert_eq!(sender_node(9034, 9000), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(m) = RadioMessage::parse(&bytes) {
                proptest::prop_assert_eq!(m.emit(), bytes);
            }
        }
    }
}
