//! pcap capture files of 802.15.4 frames, as Nordic's extcap script writes them: linktype 230
//! (`IEEE802_15_4_NOFCS`, the bare PSDU) or 283 (`IEEE802_15_4_TAP`, PSDU behind a TLV header with
//! RSSI, channel and LQI).

use std::io::Write;
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter as RawWriter};

use crate::WireError;
use crate::sniffer::SnifferFrame;

/// Which link-layer header the capture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// 230: the PSDU without FCS.
    NoFcs,
    /// 283: TAP header (FCS type none, RSSI, channel, LQI) then the PSDU without FCS.
    Tap,
}

impl LinkType {
    pub fn number(self) -> u32 {
        match self {
            LinkType::NoFcs => 230,
            LinkType::Tap => 283,
        }
    }
}

/// TAP TLV types (Wireshark `packet-ieee802154.c`).
const TAP_FCS_TYPE: u16 = 0;
const TAP_RSS: u16 = 1;
const TAP_CHANNEL_ASSIGNMENT: u16 = 3;
const TAP_LQI: u16 = 10;

/// The TAP header for one frame: version 0, reserved 0, total length, then TLVs padded to 4 bytes.
pub fn tap_header(rssi_dbm: i8, channel: u8, lqi: u8) -> Vec<u8> {
    let mut tlvs = Vec::with_capacity(32);
    // FCS type 0 = no FCS follows the PSDU; stated explicitly so readers do not assume one.
    tlvs.extend_from_slice(&TAP_FCS_TYPE.to_le_bytes());
    tlvs.extend_from_slice(&1u16.to_le_bytes());
    tlvs.extend_from_slice(&[0, 0, 0, 0]);
    tlvs.extend_from_slice(&TAP_RSS.to_le_bytes());
    tlvs.extend_from_slice(&4u16.to_le_bytes());
    tlvs.extend_from_slice(&f32::from(rssi_dbm).to_le_bytes());
    tlvs.extend_from_slice(&TAP_CHANNEL_ASSIGNMENT.to_le_bytes());
    tlvs.extend_from_slice(&3u16.to_le_bytes());
    tlvs.extend_from_slice(&u16::from(channel).to_le_bytes());
    tlvs.extend_from_slice(&[0, 0]); // page 0, padding
    tlvs.extend_from_slice(&TAP_LQI.to_le_bytes());
    tlvs.extend_from_slice(&1u16.to_le_bytes());
    tlvs.extend_from_slice(&[lqi, 0, 0, 0]);
    let mut out = Vec::with_capacity(4 + tlvs.len());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&((4 + tlvs.len()) as u16).to_le_bytes());
    out.extend_from_slice(&tlvs);
    out
}

/// Writes sniffed frames to a pcap stream.
pub struct PcapWriter<W: Write> {
    inner: RawWriter<W>,
    link: LinkType,
    time_base: Duration,
}

impl<W: Write> PcapWriter<W> {
    /// Write the pcap file header.
    pub fn new(writer: W, link: LinkType) -> Result<Self, WireError> {
        let header = PcapHeader {
            datalink: match link {
                LinkType::NoFcs => DataLink::IEEE802_15_4_NOFCS,
                LinkType::Tap => DataLink::IEEE802_15_4_TAP,
            },
            ..PcapHeader::default()
        };
        let inner =
            RawWriter::with_header(writer, header).map_err(|e| WireError::Pcap(e.to_string()))?;
        Ok(PcapWriter {
            inner,
            link,
            time_base: Duration::ZERO,
        })
    }

    /// Added to every frame's timestamp (sniffer time counts from its boot): e.g. the wall-clock
    /// time since the Unix epoch at which the sniffer's time was 0.
    pub fn set_time_base(&mut self, time_base: Duration) {
        self.time_base = time_base;
    }

    /// Write one frame received on `channel`.
    pub fn write_frame(&mut self, frame: &SnifferFrame, channel: u8) -> Result<(), WireError> {
        let data = match self.link {
            LinkType::NoFcs => frame.psdu.clone(),
            LinkType::Tap => {
                let mut data = tap_header(frame.rssi_dbm, channel, frame.lqi);
                data.extend_from_slice(&frame.psdu);
                data
            }
        };
        let timestamp = self.time_base + Duration::from_micros(frame.timestamp_us);
        let packet = PcapPacket::new(timestamp, data.len() as u32, &data);
        self.inner
            .write_packet(&packet)
            .map_err(|e| WireError::Pcap(e.to_string()))?;
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.inner.into_writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;

    fn frame() -> SnifferFrame {
        SnifferFrame {
            psdu: vec![0x41, 0xd8, 0x01, 0xce, 0xfa, 0xff, 0xff, 0x00, 0x04],
            rssi_dbm: -39,
            lqi: 220,
            timestamp_us: 15_822_687,
        }
    }

    #[test]
    fn writes_nofcs_capture() {
        let mut writer = PcapWriter::new(Vec::new(), LinkType::NoFcs).unwrap();
        writer.write_frame(&frame(), 15).unwrap();
        let bytes = writer.into_inner();
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header().datalink, DataLink::IEEE802_15_4_NOFCS);
        let packet = reader.next_packet().unwrap().unwrap();
        assert_eq!(packet.data.as_ref(), &frame().psdu[..]);
        assert_eq!(packet.timestamp, Duration::from_micros(15_822_687));
        assert!(reader.next_packet().is_none());
    }

    #[test]
    fn writes_tap_capture() {
        let mut writer = PcapWriter::new(Vec::new(), LinkType::Tap).unwrap();
        writer.set_time_base(Duration::from_secs(1_700_000_000));
        writer.write_frame(&frame(), 26).unwrap();
        let bytes = writer.into_inner();
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header().datalink, DataLink::IEEE802_15_4_TAP);
        let packet = reader.next_packet().unwrap().unwrap();
        let data = packet.data.as_ref();
        let header_len = usize::from(u16::from_le_bytes([data[2], data[3]]));
        assert_eq!(header_len, 36);
        assert_eq!(&data[header_len..], &frame().psdu[..]);
        // RSS TLV as the extcap script writes it: <HHf 1, 4, rssi>.
        assert_eq!(&data[12..16], &[1, 0, 4, 0]);
        assert_eq!(
            f32::from_le_bytes([data[16], data[17], data[18], data[19]]),
            -39.0
        );
        // Channel <HHHH 3, 3, ch, 0> and LQI <HHI 10, 1, lqi>.
        assert_eq!(&data[20..28], &[3, 0, 3, 0, 26, 0, 0, 0]);
        assert_eq!(&data[28..36], &[10, 0, 1, 0, 220, 0, 0, 0]);
        assert_eq!(
            packet.timestamp,
            Duration::from_secs(1_700_000_000) + Duration::from_micros(15_822_687)
        );
    }
}
