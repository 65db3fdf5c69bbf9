//! pcap capture files of 802.15.4 frames, as Nordic's extcap script writes them: linktype 230
//! (`IEEE802_15_4_NOFCS`, the bare PSDU) or 283 (`IEEE802_15_4_TAP`, PSDU behind a TLV header with
//! RSSI, channel and LQI).

use std::io::{Read, Write};
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter as RawWriter};

use crate::WireError;
use crate::mac;
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
        let tap;
        let data: &[u8] = match self.link {
            LinkType::NoFcs => &frame.psdu,
            LinkType::Tap => {
                let mut data = tap_header(frame.rssi_dbm, channel, frame.lqi);
                data.extend_from_slice(&frame.psdu);
                tap = data;
                &tap
            }
        };
        let timestamp = self.time_base + Duration::from_micros(frame.timestamp_us);
        let packet = PcapPacket::new(timestamp, data.len() as u32, data);
        self.inner
            .write_packet(&packet)
            .map_err(|e| WireError::Pcap(e.to_string()))?;
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.inner.into_writer()
    }
}

/// A frame read back from a capture.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedFrame {
    /// Capture time since the Unix epoch (or since the sniffer's boot, as written).
    pub timestamp: Duration,
    /// PSDU without FCS.
    pub psdu: Vec<u8>,
    /// From the TAP header, when there is one.
    pub rssi_dbm: Option<f32>,
    pub channel: Option<u16>,
    pub lqi: Option<u8>,
}

impl CapturedFrame {
    /// A frame with no TAP fields.
    fn bare(timestamp: Duration, psdu: &[u8]) -> Self {
        CapturedFrame {
            timestamp,
            psdu: psdu.to_vec(),
            rssi_dbm: None,
            channel: None,
            lqi: None,
        }
    }
}

/// Read every frame of a pcap capture with linktype 230 (no FCS), 195 (with FCS, stripped without
/// checking) or 283 (TAP; FCS stripped when its FCS type TLV says there is one).
pub fn read_frames(reader: impl Read) -> Result<Vec<CapturedFrame>, WireError> {
    let mut pcap = PcapReader::new(reader).map_err(|e| WireError::Pcap(e.to_string()))?;
    let datalink = pcap.header().datalink;
    let mut frames = Vec::new();
    while let Some(packet) = pcap.next_packet() {
        let packet = packet.map_err(|e| WireError::Pcap(e.to_string()))?;
        let data = packet.data.as_ref();
        let frame = match datalink {
            DataLink::IEEE802_15_4_NOFCS => CapturedFrame::bare(packet.timestamp, data),
            DataLink::IEEE802_15_4 => {
                CapturedFrame::bare(packet.timestamp, strip_fcs(data, mac::FCS_LEN))
            }
            DataLink::IEEE802_15_4_TAP => parse_tap(packet.timestamp, data)?,
            other => {
                return Err(WireError::Pcap(format!("unsupported linktype {other:?}")));
            }
        };
        frames.push(frame);
    }
    Ok(frames)
}

fn parse_tap(timestamp: Duration, data: &[u8]) -> Result<CapturedFrame, WireError> {
    let header_len = match data {
        [0, _, lo, hi, ..] => usize::from(u16::from_le_bytes([*lo, *hi])),
        _ => {
            return Err(WireError::malformed(
                "tap header",
                "bad version or too short",
            ));
        }
    };
    let Some(mut tlvs) = data.get(4..header_len) else {
        return Err(WireError::truncated("tap header", header_len, data.len()));
    };
    let mut frame = CapturedFrame::bare(timestamp, &[]);
    let mut fcs_len = 0;
    while let [t0, t1, l0, l1, rest @ ..] = tlvs {
        let tlv_type = u16::from_le_bytes([*t0, *t1]);
        let len = usize::from(u16::from_le_bytes([*l0, *l1]));
        let padded = len.div_ceil(4) * 4;
        let Some(value) = rest.get(..len) else {
            return Err(WireError::truncated("tap tlv", len, rest.len()));
        };
        match (tlv_type, value) {
            (TAP_FCS_TYPE, [fcs_type]) => fcs_len = usize::from(*fcs_type) * 2,
            (TAP_RSS, [a, b, c, d]) => frame.rssi_dbm = Some(f32::from_le_bytes([*a, *b, *c, *d])),
            (TAP_CHANNEL_ASSIGNMENT, [lo, hi, _page]) => {
                frame.channel = Some(u16::from_le_bytes([*lo, *hi]));
            }
            (TAP_LQI, [lqi]) => frame.lqi = Some(*lqi),
            _ => {}
        }
        tlvs = rest.get(padded..).unwrap_or(&[]);
    }
    frame.psdu = strip_fcs(data.get(header_len..).unwrap_or(&[]), fcs_len).to_vec();
    Ok(frame)
}

/// `psdu` without its last `fcs_len` bytes (empty when it is not longer than that).
fn strip_fcs(psdu: &[u8], fcs_len: usize) -> &[u8] {
    psdu.get(..psdu.len().saturating_sub(fcs_len))
        .unwrap_or(&[])
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
    fn reads_back_what_it_writes() {
        for link in [LinkType::NoFcs, LinkType::Tap] {
            let mut writer = PcapWriter::new(Vec::new(), link).unwrap();
            writer.write_frame(&frame(), 20).unwrap();
            writer.write_frame(&frame(), 21).unwrap();
            let frames = read_frames(&writer.into_inner()[..]).unwrap();
            assert_eq!(frames.len(), 2);
            assert_eq!(frames[1].psdu, frame().psdu);
            assert_eq!(frames[0].timestamp, Duration::from_micros(15_822_687));
            if link == LinkType::Tap {
                assert_eq!(frames[1].channel, Some(21));
                assert_eq!(frames[1].rssi_dbm, Some(-39.0));
                assert_eq!(frames[1].lqi, Some(220));
            }
        }
        assert!(read_frames(&b"not a pcap"[..]).is_err());
        assert!(parse_tap(Duration::ZERO, &[0, 0, 40, 0, 1]).is_err());
        assert!(parse_tap(Duration::ZERO, &[0, 0, 8, 0, 1, 0, 9, 0]).is_err());
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
