//! IEEE 802.15.4-2006/2015 MAC frames.
//!
//! Buffers are PSDUs **without** the 2-byte FCS unless a function says otherwise (the virtual air and
//! the sniffer codec strip it). [`parse`] never panics: every malformed, truncated or unsupported
//! frame is a [`WireError`].
//!
//! Header layout (all multi-byte fields little-endian on air):
//! `FCF(2) | seq(0/1) | dst PAN(0/2) | dst addr(0/2/8) | src PAN(0/2) | src addr(0/2/8) |
//!  aux security header(0/5..14) | header IEs | payload | MIC(0/4/8/16)`.

use std::fmt;
use std::str::FromStr;

use crate::WireError;
use crate::reader::Reader;

/// Largest PSDU the PHY carries, FCS included (aMaxPhyPacketSize).
pub const MAX_PSDU_LEN: usize = 127;
/// Length of the frame check sequence that ends every PSDU on air.
pub const FCS_LEN: usize = 2;
/// The broadcast short address and PAN id.
pub const BROADCAST: u16 = 0xffff;

/// Frame version field values.
pub const VERSION_2003: u8 = 0;
pub const VERSION_2006: u8 = 1;
pub const VERSION_2015: u8 = 2;

mod fcf {
    pub const TYPE_MASK: u16 = 0x0007;
    pub const SECURITY: u16 = 1 << 3;
    pub const FRAME_PENDING: u16 = 1 << 4;
    pub const ACK_REQUEST: u16 = 1 << 5;
    pub const PAN_ID_COMPRESSION: u16 = 1 << 6;
    pub const SEQ_SUPPRESSION: u16 = 1 << 8;
    pub const IE_PRESENT: u16 = 1 << 9;
    pub const DST_MODE_SHIFT: u16 = 10;
    pub const VERSION_SHIFT: u16 = 12;
    pub const SRC_MODE_SHIFT: u16 = 14;
}

/// Header IE element ids that end the header IE list.
const IE_HT1: u8 = 0x7e;
const IE_HT2: u8 = 0x7f;

/// MAC frame type (FCF bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    Beacon,
    Data,
    Ack,
    MacCommand,
    /// Reserved (4) or a 2015 type this crate does not decode (5 multipurpose, 6 fragment, 7 extended).
    Other(u8),
}

impl FrameType {
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0x07 {
            0 => FrameType::Beacon,
            1 => FrameType::Data,
            2 => FrameType::Ack,
            3 => FrameType::MacCommand,
            other => FrameType::Other(other),
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            FrameType::Beacon => 0,
            FrameType::Data => 1,
            FrameType::Ack => 2,
            FrameType::MacCommand => 3,
            FrameType::Other(bits) => bits & 0x07,
        }
    }
}

/// An IEEE EUI-64 / extended address in canonical big-endian order, as `ot extaddr` prints it and as
/// the CCM* nonce uses it. On air the 8 bytes are sent reversed (least significant first).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ExtAddress(pub [u8; 8]);

impl ExtAddress {
    /// From the 8 bytes as they appear in a MAC header.
    pub fn from_air(bytes: [u8; 8]) -> Self {
        let mut canonical = bytes;
        canonical.reverse();
        ExtAddress(canonical)
    }

    /// The 8 bytes as they appear in a MAC header.
    pub fn to_air(&self) -> [u8; 8] {
        let mut air = self.0;
        air.reverse();
        air
    }

    pub fn to_u64(&self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    pub fn from_u64(value: u64) -> Self {
        ExtAddress(value.to_be_bytes())
    }
}

impl fmt::Display for ExtAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ExtAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExtAddress({self})")
    }
}

impl FromStr for ExtAddress {
    type Err = WireError;

    /// 16 hex digits, canonical order (`166e0a0000000007`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 8];
        hex::decode_to_slice(s.trim(), &mut out)
            .map_err(|_| WireError::malformed("extended address", "expected 16 hex digits"))?;
        Ok(ExtAddress(out))
    }
}

/// A MAC address field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Address {
    #[default]
    Absent,
    Short(u16),
    Extended(ExtAddress),
}

impl Address {
    /// Addressing mode bits: 0 absent, 2 short, 3 extended.
    pub fn mode(&self) -> u8 {
        match self {
            Address::Absent => 0,
            Address::Short(_) => 2,
            Address::Extended(_) => 3,
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Address::Absent)
    }

    pub fn is_broadcast(&self) -> bool {
        matches!(self, Address::Short(BROADCAST))
    }

    fn len(&self) -> usize {
        match self {
            Address::Absent => 0,
            Address::Short(_) => 2,
            Address::Extended(_) => 8,
        }
    }

    fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Address::Absent => {}
            Address::Short(short) => out.extend_from_slice(&short.to_le_bytes()),
            Address::Extended(ext) => out.extend_from_slice(&ext.to_air()),
        }
    }

    fn parse(mode: u8, reader: &mut Reader<'_>) -> Result<Self, WireError> {
        match mode {
            0 => Ok(Address::Absent),
            2 => Ok(Address::Short(reader.u16_le()?)),
            3 => Ok(Address::Extended(ExtAddress::from_air(reader.array()?))),
            _ => Err(WireError::malformed(
                "mac header",
                "reserved addressing mode",
            )),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Absent => f.write_str("-"),
            Address::Short(short) => write!(f, "0x{short:04x}"),
            Address::Extended(ext) => write!(f, "{ext}"),
        }
    }
}

/// The MAC key index carried in key id mode 1: `(key_sequence & 0x7f) + 1`.
pub fn key_index(key_sequence: u32) -> u8 {
    ((key_sequence & 0x7f) + 1) as u8
}

/// The key sequence closest to `current` whose key index is `index` (what a receiver tries when a
/// frame names another key than its current one). `None` for index 0, which Thread never sends.
pub fn key_sequence_for_index(current: u32, index: u8) -> Option<u32> {
    if index == 0 || index > 0x80 {
        return None;
    }
    let low = u32::from(index - 1);
    let base = current & !0x7f;
    [base.wrapping_sub(0x80), base, base.wrapping_add(0x80)]
        .into_iter()
        .map(|hi| hi | low)
        .min_by_key(|seq| seq.wrapping_sub(current).min(current.wrapping_sub(*seq)))
}

/// The auxiliary security header.
///
/// `key_id_mode` 0: implicit key; 1: 1-byte key index (Thread MAC); 2: 4-byte key source + index
/// (Thread MLE: key source = BE32(key sequence)). Mode 3 (8-byte source) is rejected by [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecurityHeader {
    /// 0..=7; Thread MAC uses 5 (ENC-MIC-32).
    pub level: u8,
    pub key_id_mode: u8,
    pub frame_counter: u32,
    pub key_index: Option<u8>,
    pub key_source: Option<[u8; 4]>,
}

impl SecurityHeader {
    /// Thread MAC security: level 5, key id mode 1.
    pub fn thread_mac(frame_counter: u32, key_index: u8) -> Self {
        SecurityHeader {
            level: 5,
            key_id_mode: 1,
            frame_counter,
            key_index: Some(key_index),
            key_source: None,
        }
    }

    /// Thread MLE security: level 5, key id mode 2, key source = BE32(key sequence).
    pub fn thread_mle(frame_counter: u32, key_sequence: u32) -> Self {
        SecurityHeader {
            level: 5,
            key_id_mode: 2,
            frame_counter,
            key_index: Some(key_index(key_sequence)),
            key_source: Some(key_sequence.to_be_bytes()),
        }
    }

    /// Length of the MIC this level appends: 0, 4, 8 or 16 bytes.
    pub fn mic_len(&self) -> usize {
        mic_len(self.level)
    }

    /// Whether this level encrypts (levels 4..=7).
    pub fn encrypts(&self) -> bool {
        self.level & 0x04 != 0
    }

    /// Bytes of the aux security header on air.
    pub fn buffer_len(&self) -> usize {
        5 + match self.key_id_mode & 0x03 {
            0 => 0,
            1 => 1,
            2 => 5,
            _ => 9,
        }
    }

    fn control_byte(&self) -> u8 {
        (self.level & 0x07) | ((self.key_id_mode & 0x03) << 3)
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.control_byte());
        out.extend_from_slice(&self.frame_counter.to_le_bytes());
        let index = self.key_index.unwrap_or(0);
        match self.key_id_mode & 0x03 {
            0 => {}
            1 => out.push(index),
            2 => {
                out.extend_from_slice(&self.key_source.unwrap_or_default());
                out.push(index);
            }
            _ => {
                // Mode 3 carries an 8-byte source this struct cannot hold; keep the layout valid.
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&self.key_source.unwrap_or_default());
                out.push(index);
            }
        }
    }

    pub(crate) fn parse(reader: &mut Reader<'_>) -> Result<Self, WireError> {
        let control = reader.u8()?;
        if control & 0x20 != 0 {
            return Err(WireError::unsupported(
                "aux security header",
                "frame counter suppression",
            ));
        }
        let level = control & 0x07;
        let key_id_mode = (control >> 3) & 0x03;
        let frame_counter = reader.u32_le()?;
        let (key_source, key_index) = match key_id_mode {
            0 => (None, None),
            1 => (None, Some(reader.u8()?)),
            2 => (Some(reader.array::<4>()?), Some(reader.u8()?)),
            _ => {
                return Err(WireError::unsupported(
                    "aux security header",
                    "key identifier mode 3",
                ));
            }
        };
        Ok(SecurityHeader {
            level,
            key_id_mode,
            frame_counter,
            key_index,
            key_source,
        })
    }
}

/// MIC length for a security level: 1/5 -> 4, 2/6 -> 8, 3/7 -> 16, 0/4 -> 0.
pub fn mic_len(level: u8) -> usize {
    match level & 0x03 {
        0 => 0,
        1 => 4,
        2 => 8,
        _ => 16,
    }
}

/// The decoded MAC header of a frame.
///
/// `version` is the 2-bit frame version field (0 = 2003, 1 = 2006, 2 = 2015). `dst_pan`/`src_pan`
/// are what is on air: [`FrameRepr::emit_header`] writes exactly the PAN ids that are `Some` and the
/// `pan_id_compression` bit as given; [`FrameRepr::data`] fills them consistently.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrameRepr {
    pub frame_type: FrameType,
    pub frame_pending: bool,
    pub ack_request: bool,
    pub pan_id_compression: bool,
    pub version: u8,
    /// `None` when the sequence number is suppressed (2015 frames only).
    pub sequence: Option<u8>,
    pub dst_pan: Option<u16>,
    pub dst: Address,
    pub src_pan: Option<u16>,
    pub src: Address,
    pub security: Option<SecurityHeader>,
}

impl FrameRepr {
    /// An intra-PAN data frame as Thread sends it: version 2006 when secured (2003 otherwise), PAN id
    /// compression, one PAN id, ack requested unless the destination is broadcast.
    pub fn data(
        sequence: u8,
        pan_id: u16,
        dst: Address,
        src: Address,
        security: Option<SecurityHeader>,
    ) -> Self {
        let both = !dst.is_absent() && !src.is_absent();
        let dst_pan = if dst.is_absent() { None } else { Some(pan_id) };
        let src_pan = if dst.is_absent() && !src.is_absent() {
            Some(pan_id)
        } else {
            None
        };
        FrameRepr {
            frame_type: FrameType::Data,
            frame_pending: false,
            ack_request: !dst.is_absent() && !dst.is_broadcast(),
            pan_id_compression: both,
            version: if security.is_some() {
                VERSION_2006
            } else {
                VERSION_2003
            },
            sequence: Some(sequence),
            dst_pan,
            dst,
            src_pan,
            src,
            security,
        }
    }

    /// An immediate acknowledgement (version 2003/2006 style: FCF + sequence number).
    pub fn ack(sequence: u8, frame_pending: bool) -> Self {
        FrameRepr {
            frame_type: FrameType::Ack,
            frame_pending,
            ack_request: false,
            pan_id_compression: false,
            version: VERSION_2003,
            sequence: Some(sequence),
            dst_pan: None,
            dst: Address::Absent,
            src_pan: None,
            src: Address::Absent,
            security: None,
        }
    }

    /// The frame control field.
    pub fn frame_control(&self) -> u16 {
        let mut fcf = u16::from(self.frame_type.bits());
        if self.security.is_some() {
            fcf |= fcf::SECURITY;
        }
        if self.frame_pending {
            fcf |= fcf::FRAME_PENDING;
        }
        if self.ack_request {
            fcf |= fcf::ACK_REQUEST;
        }
        if self.pan_id_compression {
            fcf |= fcf::PAN_ID_COMPRESSION;
        }
        if self.sequence.is_none() {
            fcf |= fcf::SEQ_SUPPRESSION;
        }
        fcf |= u16::from(self.dst.mode()) << fcf::DST_MODE_SHIFT;
        fcf |= u16::from(self.version & 0x03) << fcf::VERSION_SHIFT;
        fcf |= u16::from(self.src.mode()) << fcf::SRC_MODE_SHIFT;
        fcf
    }

    /// Length of the header [`FrameRepr::emit_header`] writes.
    pub fn header_len(&self) -> usize {
        2 + usize::from(self.sequence.is_some())
            + self.dst_pan.map_or(0, |_| 2)
            + self.dst.len()
            + self.src_pan.map_or(0, |_| 2)
            + self.src.len()
            + self.security.as_ref().map_or(0, SecurityHeader::buffer_len)
    }

    /// The largest MAC payload a frame with this header can carry: 127 bytes minus FCS, header
    /// and MIC.
    pub fn max_payload_len(&self) -> usize {
        let mic = self.security.as_ref().map_or(0, SecurityHeader::mic_len);
        (MAX_PSDU_LEN - FCS_LEN).saturating_sub(self.header_len() + mic)
    }

    /// The MHR including the aux security header (no IEs): exactly the CCM* AAD of a data frame.
    pub fn emit_header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len());
        self.emit_header_into(&mut out);
        out
    }

    pub fn emit_header_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.frame_control().to_le_bytes());
        if let Some(seq) = self.sequence {
            out.push(seq);
        }
        if let Some(pan) = self.dst_pan {
            out.extend_from_slice(&pan.to_le_bytes());
        }
        self.dst.emit(out);
        if let Some(pan) = self.src_pan {
            out.extend_from_slice(&pan.to_le_bytes());
        }
        self.src.emit(out);
        if let Some(security) = &self.security {
            security.emit(out);
        }
    }

    /// Header + payload of an unsecured frame (PSDU without FCS). For a secured frame use
    /// [`crate::security::secure`].
    pub fn emit(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = self.emit_header();
        out.extend_from_slice(payload);
        out
    }

    /// Number of payload bytes that CCM* leaves in the clear and authenticates as AAD: the command
    /// identifier of a 2003/2006 MAC command frame (in 2015 frames it is encrypted).
    pub fn open_payload_len(&self) -> usize {
        usize::from(self.frame_type == FrameType::MacCommand && self.version < VERSION_2015)
    }

    /// The PAN id that applies to the destination (explicit or, with compression, the other one).
    pub fn dst_pan_id(&self) -> Option<u16> {
        self.dst_pan.or(self.src_pan)
    }

    /// The PAN id that applies to the source (explicit or, with compression, the destination's).
    pub fn src_pan_id(&self) -> Option<u16> {
        self.src_pan.or(self.dst_pan)
    }
}

/// A parsed frame borrowing its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFrame<'a> {
    pub repr: FrameRepr,
    /// MHR incl. aux security header and header IEs (the CCM* AAD, plus
    /// [`FrameRepr::open_payload_len`] bytes of payload for 2006 command frames).
    pub header: &'a [u8],
    /// Everything after the header: payload IEs, MAC payload (a command frame's starts with the
    /// command identifier) and, if secured, the MIC.
    pub payload: &'a [u8],
    /// The header IEs (inside `header`), termination IE included; empty when there are none.
    pub header_ies: &'a [u8],
}

impl ParsedFrame<'_> {
    /// The MIC at the end of `payload` (empty when unsecured).
    pub fn mic(&self) -> &[u8] {
        let mic = self
            .repr
            .security
            .as_ref()
            .map_or(0, SecurityHeader::mic_len);
        let start = self.payload.len().saturating_sub(mic);
        self.payload.get(start..).unwrap_or(&[])
    }

    /// The payload without the MIC (still encrypted if secured).
    pub fn payload_without_mic(&self) -> &[u8] {
        let mic = self.mic().len();
        let end = self.payload.len().saturating_sub(mic);
        self.payload.get(..end).unwrap_or(&[])
    }
}

/// Which PAN id fields are present, from the addressing modes and the compression bit
/// (802.15.4-2006 7.2.1.5 for versions 0/1, 802.15.4-2015 Table 7-2 for version 2).
fn pan_ids_present(version: u8, dst_mode: u8, src_mode: u8, compression: bool) -> (bool, bool) {
    let dst = dst_mode != 0;
    let src = src_mode != 0;
    if version < VERSION_2015 {
        return match (dst, src) {
            (true, true) => (true, !compression),
            (true, false) => (true, false),
            (false, true) => (false, true),
            (false, false) => (false, false),
        };
    }
    match (dst, src, compression) {
        (false, false, c) => (c, false),
        (true, false, c) => (!c, false),
        (false, true, c) => (false, !c),
        (true, true, c) => {
            if dst_mode == 3 && src_mode == 3 {
                (!c, false)
            } else {
                (true, !c)
            }
        }
    }
}

/// Parse a PSDU (without FCS).
pub fn parse(psdu: &[u8]) -> Result<ParsedFrame<'_>, WireError> {
    let mut reader = Reader::new(psdu, "mac header");
    let fcf = reader.u16_le()?;
    let frame_type = FrameType::from_bits((fcf & fcf::TYPE_MASK) as u8);
    if let FrameType::Other(bits) = frame_type
        && bits >= 5
    {
        return Err(WireError::unsupported(
            "mac frame",
            "multipurpose, fragment and extended frame types",
        ));
    }
    let version = ((fcf >> fcf::VERSION_SHIFT) & 0x03) as u8;
    let dst_mode = ((fcf >> fcf::DST_MODE_SHIFT) & 0x03) as u8;
    let src_mode = ((fcf >> fcf::SRC_MODE_SHIFT) & 0x03) as u8;
    let compression = fcf & fcf::PAN_ID_COMPRESSION != 0;
    let seq_suppressed = fcf & fcf::SEQ_SUPPRESSION != 0;
    let ie_present = fcf & fcf::IE_PRESENT != 0;
    if version < VERSION_2015 && (seq_suppressed || ie_present) {
        return Err(WireError::malformed(
            "mac header",
            "sequence suppression or IEs in a pre-2015 frame",
        ));
    }
    if version == 3 {
        return Err(WireError::unsupported("mac header", "frame version 3"));
    }

    let sequence = if seq_suppressed {
        None
    } else {
        Some(reader.u8()?)
    };
    let (dst_pan_present, src_pan_present) =
        pan_ids_present(version, dst_mode, src_mode, compression);
    let dst_pan = if dst_pan_present {
        Some(reader.u16_le()?)
    } else {
        None
    };
    let dst = Address::parse(dst_mode, &mut reader)?;
    let src_pan = if src_pan_present {
        Some(reader.u16_le()?)
    } else {
        None
    };
    let src = Address::parse(src_mode, &mut reader)?;
    let security = if fcf & fcf::SECURITY != 0 {
        if version == VERSION_2003 {
            // 2003 security is a different, obsolete scheme.
            return Err(WireError::unsupported(
                "mac security",
                "802.15.4-2003 security",
            ));
        }
        Some(SecurityHeader::parse(&mut reader)?)
    } else {
        None
    };
    let mic = security.as_ref().map_or(0, SecurityHeader::mic_len);

    let ies_start = reader.pos();
    if ie_present {
        skip_header_ies(&mut reader, psdu.len().saturating_sub(mic))?;
    }
    let header_end = reader.pos();
    if reader.remaining() < mic {
        return Err(WireError::truncated(
            "mac frame MIC",
            header_end + mic,
            psdu.len(),
        ));
    }
    let repr = FrameRepr {
        frame_type,
        frame_pending: fcf & fcf::FRAME_PENDING != 0,
        ack_request: fcf & fcf::ACK_REQUEST != 0,
        pan_id_compression: compression,
        version,
        sequence,
        dst_pan,
        dst,
        src_pan,
        src,
        security,
    };
    if repr.security.is_some() && reader.remaining() < mic + repr.open_payload_len() {
        return Err(WireError::truncated(
            "mac command identifier",
            header_end + mic + 1,
            psdu.len(),
        ));
    }
    Ok(ParsedFrame {
        repr,
        header: psdu.get(..header_end).unwrap_or(&[]),
        payload: reader.rest(),
        header_ies: psdu.get(ies_start..header_end).unwrap_or(&[]),
    })
}

/// Skip header IEs up to and including a termination IE (HT1/HT2), or up to `end` when the list is
/// not terminated (allowed when no payload follows).
fn skip_header_ies(reader: &mut Reader<'_>, end: usize) -> Result<(), WireError> {
    while reader.pos() < end {
        let descriptor = reader.u16_le()?;
        if descriptor & 0x8000 != 0 {
            return Err(WireError::malformed(
                "header IE",
                "payload IE without header termination",
            ));
        }
        let len = usize::from(descriptor & 0x7f);
        let id = ((descriptor >> 7) & 0xff) as u8;
        reader.bytes(len)?;
        if reader.pos() > end {
            return Err(WireError::truncated("header IE", reader.pos(), end));
        }
        if id == IE_HT1 || id == IE_HT2 {
            break;
        }
    }
    Ok(())
}

/// The 802.15.4 FCS: CRC-16/KERMIT (poly 0x1021 reflected, init 0, no final xor), sent little-endian.
pub fn fcs(psdu: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in psdu {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// `psdu` followed by its FCS, as transmitted.
pub fn append_fcs(psdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(psdu.len() + FCS_LEN);
    out.extend_from_slice(psdu);
    out.extend_from_slice(&fcs(psdu).to_le_bytes());
    out
}

/// Split a received PSDU that still carries its FCS; returns the PSDU without FCS and whether the
/// FCS is right.
pub fn split_fcs(psdu_with_fcs: &[u8]) -> Result<(&[u8], bool), WireError> {
    let Some(body_len) = psdu_with_fcs.len().checked_sub(FCS_LEN) else {
        return Err(WireError::truncated("fcs", FCS_LEN, psdu_with_fcs.len()));
    };
    let (body, trailer) = psdu_with_fcs.split_at(body_len);
    let received = u16::from_le_bytes([
        trailer.first().copied().unwrap_or(0),
        trailer.get(1).copied().unwrap_or(0),
    ]);
    Ok((body, received == fcs(body)))
}

/// Fuzzing entry point: parse must not panic, and a parsed frame without IEs must re-emit to a
/// frame that parses to the same repr (reserved bits are not kept, so bytes may differ there).
pub fn fuzz_parse(data: &[u8]) {
    if let Ok(frame) = parse(data)
        && frame.header_ies.is_empty()
    {
        let emitted = frame.repr.emit(frame.payload);
        assert_eq!(emitted.len(), data.len());
        let reparsed = parse(&emitted).map(|f| f.repr);
        assert_eq!(reparsed, Ok(frame.repr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::unhex;

    /// The Thread data frame of protocols.md §2 (OpenThread test_mac802154.py), FCS included.
    const THREAD_DATA_FRAME: &str = "699868cefa00200120 0d0000000001 \
        b55a0d8e185cb106c46f7d6bb54a8714aedd8eb737622748c9530c4431598ba28359a143 74e02af6 99fc";

    #[test]
    fn fcs_matches_thread_vector() {
        let frame = unhex(THREAD_DATA_FRAME);
        let (body, ok) = split_fcs(&frame).unwrap();
        assert!(ok);
        assert_eq!(fcs(body), 0xfc99);
        assert_eq!(append_fcs(body), frame);
        // CRC-16/KERMIT check value.
        assert_eq!(fcs(b"123456789"), 0x2189);
    }

    #[test]
    fn parses_thread_data_frame() {
        let frame = unhex(THREAD_DATA_FRAME);
        let psdu = &frame[..frame.len() - 2];
        let parsed = parse(psdu).unwrap();
        let repr = &parsed.repr;
        assert_eq!(repr.frame_type, FrameType::Data);
        assert!(repr.ack_request && repr.pan_id_compression && !repr.frame_pending);
        assert_eq!(repr.version, VERSION_2006);
        assert_eq!(repr.sequence, Some(0x68));
        assert_eq!(repr.dst_pan, Some(0xface));
        assert_eq!(repr.src_pan, None);
        assert_eq!(repr.dst, Address::Short(0x2000));
        assert_eq!(repr.src, Address::Short(0x2001));
        assert_eq!(repr.security, Some(SecurityHeader::thread_mac(0, 1)));
        assert_eq!(parsed.header, &psdu[..15]);
        // 125 - 15 header - 4 MIC.
        assert_eq!(repr.max_payload_len(), 106);
        assert_eq!(parsed.payload.len(), 36 + 4);
        assert_eq!(parsed.mic(), &unhex("74e02af6")[..]);
        assert_eq!(repr.emit_header(), parsed.header);
        assert_eq!(
            FrameRepr::data(0x68, 0xface, repr.dst, repr.src, repr.security),
            *repr
        );
    }

    #[test]
    fn parses_annex_c_frames_with_extended_addresses() {
        // 802.15.4-2006 Annex C.2.1 secured beacon (MIC-64).
        let beacon = unhex("08d0842143010000000048deac020500000055cf000051525354");
        let parsed = parse(&beacon).unwrap();
        assert_eq!(parsed.repr.frame_type, FrameType::Beacon);
        assert_eq!(parsed.repr.src_pan, Some(0x4321));
        assert_eq!(
            parsed.repr.src,
            Address::Extended("acde480000000001".parse().unwrap())
        );
        let sec = parsed.repr.security.unwrap();
        assert_eq!((sec.level, sec.key_id_mode, sec.frame_counter), (2, 0, 5));
        assert_eq!(parsed.repr.emit_header(), parsed.header);

        // Annex C.2.3 MAC command frame: command id 0x01 stays in the clear (AAD).
        let command = unhex(
            "2bdc842143020000000048deacffff010000000048deac0605000000 01 d8 4fde529061f9c6f1",
        );
        let parsed = parse(&command).unwrap();
        assert_eq!(parsed.repr.frame_type, FrameType::MacCommand);
        assert_eq!(parsed.repr.dst_pan, Some(0x4321));
        assert_eq!(parsed.repr.src_pan, Some(0xffff));
        assert_eq!(
            parsed.repr.dst,
            Address::Extended("acde480000000002".parse().unwrap())
        );
        assert_eq!(parsed.repr.open_payload_len(), 1);
        assert_eq!(parsed.header.len(), 28);
        assert_eq!(parsed.payload.first(), Some(&0x01));
        assert_eq!(parsed.mic().len(), 8);
    }

    #[test]
    fn skips_header_ies() {
        // 2015 data frame, short addresses, PAN compression, a CSL IE (id 0x1a, 4 bytes) then HT2.
        let mut repr = FrameRepr::data(
            7,
            0xface,
            Address::Short(0x1234),
            Address::Short(0x5678),
            None,
        );
        repr.version = VERSION_2015;
        let mut frame = repr.emit_header();
        frame[1] |= 0x02; // IE present
        let csl_ie: u16 = 4 | (0x1a << 7);
        let ht2: u16 = u16::from(IE_HT2) << 7;
        frame.extend_from_slice(&csl_ie.to_le_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        frame.extend_from_slice(&ht2.to_le_bytes());
        frame.extend_from_slice(b"payload");
        let parsed = parse(&frame).unwrap();
        assert_eq!(parsed.payload, b"payload");
        assert_eq!(parsed.header_ies.len(), 8);
        assert_eq!(parsed.repr.dst_pan, Some(0xface));
        // An unterminated IE list that runs to the end of the frame is fine too.
        let parsed = parse(&frame[..frame.len() - 9]).unwrap();
        assert!(parsed.payload.is_empty());
        // A truncated IE is an error, not a panic.
        assert!(parse(&frame[..frame.len() - 11]).is_err());
    }

    #[test]
    fn ack_and_pan_id_rules_round_trip() {
        let ack = FrameRepr::ack(0x42, true);
        let bytes = ack.emit(&[]);
        assert_eq!(bytes, [0x12, 0x00, 0x42]);
        assert_eq!(parse(&bytes).unwrap().repr, ack);

        let ext = Address::Extended(ExtAddress([1, 2, 3, 4, 5, 6, 7, 8]));
        for (dst, src) in [
            (Address::Short(0xffff), ext),
            (ext, ext),
            (Address::Absent, ext),
            (Address::Short(1), Address::Absent),
        ] {
            let repr = FrameRepr::data(1, 0xabcd, dst, src, None);
            let bytes = repr.emit(b"x");
            let parsed = parse(&bytes).unwrap();
            assert_eq!(parsed.repr, repr);
            assert_eq!(parsed.payload, b"x");
        }
        // Extended addresses are reversed on air.
        let repr = FrameRepr::data(1, 0xabcd, Address::Short(0xffff), ext, None);
        assert_eq!(&repr.emit_header()[7..15], &[8, 7, 6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            fuzz_parse(&data);
            let mut ones = vec![0xffu8; len];
            fuzz_parse(&ones);
            ones.fill(0x4b);
            fuzz_parse(&ones);
        }
        assert!(parse(&[0x41]).is_err());
        assert!(matches!(
            parse(&[0x41, 0xd8]),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn ext_address_text() {
        let ext: ExtAddress = "166e0a0000000007".parse().unwrap();
        assert_eq!(ext.to_string(), "166e0a0000000007");
        assert_eq!(ext.to_air(), [7, 0, 0, 0, 0, 0x0a, 0x6e, 0x16]);
        assert_eq!(ExtAddress::from_u64(ext.to_u64()), ext);
        assert!("xyz".parse::<ExtAddress>().is_err());
    }
}
