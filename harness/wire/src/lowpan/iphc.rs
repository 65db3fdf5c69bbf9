//! IPHC (RFC 6282 §3), IPv6 extension header NHC (§4.2) and UDP NHC (§4.3).
//!
//! Decompression handles every SAM/DAM mode (stateless and stateful, multicast incl. the
//! unicast-prefix-based form), the four TF modes, inline or elided hop limit, extension header NHC
//! for hop-by-hop/routing/destination options, and UDP NHC with all four port modes and the C bit.
//! Compression produces what OpenThread sends: contexts for prefixes, IIDs elided when derivable from
//! the link-layer address, UDP NHC with the checksum carried inline. Extension headers are carried
//! inline (NH=0), which every decompressor accepts.

use crate::WireError;
use crate::ip::{self, IPV6_HEADER_LEN, LINK_LOCAL_PREFIX, NEXT_HEADER_UDP, UDP_HEADER_LEN};
use crate::mac::Address;
use crate::reader::Reader;

use super::Context;

/// UDP header fields carried by UDP NHC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UdpNhc {
    src_port: u16,
    dst_port: u16,
    /// `None` when elided (C=1): the decompressor computes it.
    checksum: Option<u16>,
}

/// Decompressed headers of one IPHC datagram, before lengths are known.
#[derive(Debug)]
struct Headers {
    /// The 40-byte IPv6 header with a zero payload length.
    fixed: [u8; IPV6_HEADER_LEN],
    /// Uncompressed extension headers (from extension header NHC), including the inner IPv6 header
    /// (and its extension headers) of an IPv6-in-IPv6 tunnel.
    ext: Vec<u8>,
    /// Offset in `ext` of the tunnelled inner IPv6 header, if any.
    inner_offset: Option<usize>,
    udp: Option<UdpNhc>,
    /// Compressed bytes consumed.
    consumed: usize,
}

impl Headers {
    fn uncompressed_len(&self) -> usize {
        IPV6_HEADER_LEN
            + self.ext.len()
            + if self.udp.is_some() {
                UDP_HEADER_LEN
            } else {
                0
            }
    }

    /// Build the uncompressed bytes of a datagram of `total_len` bytes whose payload (after the
    /// compressed headers) starts with `payload`.
    fn build(&self, total_len: usize, payload: &[u8]) -> Result<Vec<u8>, WireError> {
        let Some(ipv6_payload_len) = total_len.checked_sub(IPV6_HEADER_LEN) else {
            return Err(WireError::malformed(
                "iphc",
                "datagram shorter than its headers",
            ));
        };
        let ipv6_payload_len = u16::try_from(ipv6_payload_len).map_err(|_| WireError::TooLong {
            what: "ipv6 payload",
            len: ipv6_payload_len,
            max: usize::from(u16::MAX),
        })?;
        if total_len < self.uncompressed_len() {
            return Err(WireError::malformed(
                "iphc",
                "datagram shorter than its headers",
            ));
        }
        let mut out = Vec::with_capacity(self.uncompressed_len() + payload.len());
        out.extend_from_slice(&self.fixed);
        out[4..6].copy_from_slice(&ipv6_payload_len.to_be_bytes());
        let ext_start = out.len();
        out.extend_from_slice(&self.ext);
        if let Some(inner) = self.inner_offset {
            // The inner payload length follows from the total like the outer one.
            let inner_start = ext_start + inner;
            let inner_payload = total_len.checked_sub(inner_start + IPV6_HEADER_LEN).ok_or(
                WireError::malformed("iphc", "datagram shorter than its headers"),
            )?;
            if let Some(field) = out.get_mut(inner_start + 4..inner_start + 6) {
                field.copy_from_slice(&(inner_payload as u16).to_be_bytes());
            }
        }
        if let Some(udp) = self.udp {
            let udp_len = total_len - IPV6_HEADER_LEN - self.ext.len();
            out.extend_from_slice(&udp.src_port.to_be_bytes());
            out.extend_from_slice(&udp.dst_port.to_be_bytes());
            out.extend_from_slice(&(udp_len as u16).to_be_bytes());
            out.extend_from_slice(&udp.checksum.unwrap_or(0).to_be_bytes());
        }
        out.extend_from_slice(payload);
        Ok(out)
    }

    /// (IPv6 header offset, UDP header offset) when the UDP checksum must be computed.
    fn udp_checksum_offset(&self) -> Option<(usize, usize)> {
        match self.udp {
            Some(UdpNhc { checksum: None, .. }) => Some((
                self.inner_offset.map_or(0, |inner| IPV6_HEADER_LEN + inner),
                IPV6_HEADER_LEN + self.ext.len(),
            )),
            _ => None,
        }
    }
}

/// Inverse of [`compress`]: IPHC(+NHC)-compressed bytes -> full IPv6 packet, with the IPv6 payload
/// length, the UDP length and (if elided) the UDP checksum restored.
pub fn decompress(
    lowpan: &[u8],
    mac_src: &Address,
    mac_dst: &Address,
    contexts: &[Context],
) -> Result<Vec<u8>, WireError> {
    let headers = parse_headers(lowpan, mac_src, mac_dst, contexts)?;
    let payload = lowpan.get(headers.consumed..).unwrap_or(&[]);
    let total = headers.uncompressed_len() + payload.len();
    let mut datagram = headers.build(total, payload)?;
    if let Some((ip_offset, udp_offset)) = headers.udp_checksum_offset() {
        ip::fill_udp_checksum(&mut datagram, ip_offset, udp_offset);
    }
    Ok(datagram)
}

/// The uncompressed start of a fragmented datagram (from the body of a FRAG1).
pub(crate) struct FirstFragment {
    pub(crate) bytes: Vec<u8>,
    /// Where the IPv6 header (for the pseudo-header) and the UDP header start when the UDP checksum
    /// was elided and must be computed once the whole datagram is there.
    pub(crate) udp_checksum_offset: Option<(usize, usize)>,
}

pub(crate) fn decompress_first_fragment(
    lowpan: &[u8],
    mac_src: &Address,
    mac_dst: &Address,
    contexts: &[Context],
    datagram_size: usize,
) -> Result<FirstFragment, WireError> {
    let headers = parse_headers(lowpan, mac_src, mac_dst, contexts)?;
    let payload = lowpan.get(headers.consumed..).unwrap_or(&[]);
    let bytes = headers.build(datagram_size, payload)?;
    if bytes.len() > datagram_size {
        return Err(WireError::malformed(
            "fragment",
            "first fragment longer than the datagram",
        ));
    }
    Ok(FirstFragment {
        bytes,
        udp_checksum_offset: headers.udp_checksum_offset(),
    })
}

/// Length of the compressed headers (IPHC + NHC) at the start of `lowpan`. Used by the
/// fragmenter, which must keep all compressed headers in FRAG1.
pub(crate) fn compressed_header_len(lowpan: &[u8]) -> Result<usize, WireError> {
    // The lengths do not depend on addresses or context values.
    let contexts: Vec<Context> = (0..16).map(|id| Context { id, prefix: [0; 8] }).collect();
    let any = Address::Short(0);
    let headers = parse_headers(lowpan, &any, &any, &contexts)?;
    Ok(headers.consumed)
}

fn context_prefix(contexts: &[Context], id: u8) -> Result<[u8; 8], WireError> {
    contexts
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.prefix)
        .ok_or(WireError::UnknownContext(id))
}

fn iid_from_mac(mac: &Address) -> Result<[u8; 8], WireError> {
    match mac {
        Address::Short(short) => Ok(ip::iid_from_short(*short)),
        Address::Extended(ext) => Ok(ip::iid_from_ext(ext)),
        Address::Absent => Err(WireError::malformed(
            "iphc",
            "address elided but no link-layer address to derive it from",
        )),
    }
}

/// Unicast address from the (stateless or stateful) mode bits.
fn read_unicast(
    reader: &mut Reader<'_>,
    mode: u8,
    prefix: [u8; 8],
    mac: &Address,
) -> Result<[u8; 16], WireError> {
    let mut addr = [0u8; 16];
    addr[..8].copy_from_slice(&prefix);
    match mode {
        0b01 => addr[8..].copy_from_slice(reader.bytes(8)?),
        0b10 => addr[8..].copy_from_slice(&ip::iid_from_short(reader.u16_be()?)),
        _ => addr[8..].copy_from_slice(&iid_from_mac(mac)?),
    }
    Ok(addr)
}

fn parse_headers(
    lowpan: &[u8],
    mac_src: &Address,
    mac_dst: &Address,
    contexts: &[Context],
) -> Result<Headers, WireError> {
    parse_headers_at(lowpan, mac_src, mac_dst, contexts, false)
}

/// `inner`: decoding the IPHC of a tunnelled packet (which may not tunnel again).
fn parse_headers_at(
    lowpan: &[u8],
    mac_src: &Address,
    mac_dst: &Address,
    contexts: &[Context],
    inner: bool,
) -> Result<Headers, WireError> {
    let mut reader = Reader::new(lowpan, "iphc header");
    let b0 = reader.u8()?;
    let b1 = reader.u8()?;
    if b0 & 0xe0 != 0x60 {
        return Err(WireError::malformed("iphc", "dispatch is not 011xxxxx"));
    }
    let tf = (b0 >> 3) & 0x03;
    let nh_compressed = b0 & 0x04 != 0;
    let hlim = b0 & 0x03;
    let cid = b1 & 0x80 != 0;
    let sac = b1 & 0x40 != 0;
    let sam = (b1 >> 4) & 0x03;
    let multicast = b1 & 0x08 != 0;
    let dac = b1 & 0x04 != 0;
    let dam = b1 & 0x03;

    let (sci, dci) = if cid {
        let byte = reader.u8()?;
        (byte >> 4, byte & 0x0f)
    } else {
        (0, 0)
    };

    // Traffic class / flow label; inline order is ECN, DSCP, flow label (RFC 6282 §3.1.1).
    let (ecn, dscp, flow_label) = match tf {
        0b00 => {
            let b = reader.array::<4>()?;
            let flow = u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]]);
            (b[0] >> 6, b[0] & 0x3f, flow)
        }
        0b01 => {
            let b = reader.array::<3>()?;
            let flow = u32::from_be_bytes([0, b[0] & 0x0f, b[1], b[2]]);
            (b[0] >> 6, 0, flow)
        }
        0b10 => {
            let b = reader.u8()?;
            (b >> 6, b & 0x3f, 0)
        }
        _ => (0, 0, 0),
    };
    let traffic_class = (dscp << 2) | ecn;
    let inline_next_header = if nh_compressed {
        None
    } else {
        Some(reader.u8()?)
    };
    let hop_limit = match hlim {
        0b00 => reader.u8()?,
        0b01 => 1,
        0b10 => 64,
        _ => 255,
    };

    let src = if sac {
        if sam == 0b00 {
            [0u8; 16]
        } else {
            read_unicast(&mut reader, sam, context_prefix(contexts, sci)?, mac_src)?
        }
    } else if sam == 0b00 {
        reader.array::<16>()?
    } else {
        read_unicast(&mut reader, sam, LINK_LOCAL_PREFIX, mac_src)?
    };

    let dst = match (multicast, dac, dam) {
        (false, false, 0b00) => reader.array::<16>()?,
        (false, false, mode) => read_unicast(&mut reader, mode, LINK_LOCAL_PREFIX, mac_dst)?,
        (false, true, 0b00) => {
            return Err(WireError::malformed("iphc", "reserved DAC=1 DAM=00"));
        }
        (false, true, mode) => {
            read_unicast(&mut reader, mode, context_prefix(contexts, dci)?, mac_dst)?
        }
        (true, false, 0b00) => reader.array::<16>()?,
        (true, false, 0b01) => {
            // ffXX::00XX:XXXX:XXXX
            let b = reader.array::<6>()?;
            let mut a = [0u8; 16];
            a[0] = 0xff;
            a[1] = b[0];
            a[11..].copy_from_slice(&b[1..]);
            a
        }
        (true, false, 0b10) => {
            // ffXX::00XX:XXXX
            let b = reader.array::<4>()?;
            let mut a = [0u8; 16];
            a[0] = 0xff;
            a[1] = b[0];
            a[13..].copy_from_slice(&b[1..]);
            a
        }
        (true, false, _) => {
            // ff02::00XX
            let mut a = [0u8; 16];
            a[0] = 0xff;
            a[1] = 0x02;
            a[15] = reader.u8()?;
            a
        }
        (true, true, 0b00) => {
            // Unicast-prefix-based multicast (RFC 3306): ffXX:XXLL:PPPP:PPPP:PPPP:PPPP:XXXX:XXXX
            let b = reader.array::<6>()?;
            let prefix = context_prefix(contexts, dci)?;
            let mut a = [0u8; 16];
            a[0] = 0xff;
            a[1] = b[0];
            a[2] = b[1];
            a[3] = 64;
            a[4..12].copy_from_slice(&prefix);
            a[12..].copy_from_slice(&b[2..]);
            a
        }
        (true, true, _) => {
            return Err(WireError::malformed("iphc", "reserved M=1 DAC=1 DAM"));
        }
    };

    // Next headers: either inline, or a chain of NHC headers ending in UDP or an inline header.
    let mut chain = NhcChain::default();
    let next_header = match inline_next_header {
        Some(nh) => nh,
        None => {
            let tunnel = Tunnel {
                mac_src,
                mac_dst,
                contexts,
                allowed: !inner,
            };
            parse_nhc_chain(&mut reader, &mut chain, &tunnel)?
        }
    };

    let mut fixed = [0u8; IPV6_HEADER_LEN];
    let first_word = (6u32 << 28) | (u32::from(traffic_class) << 20) | flow_label;
    fixed[..4].copy_from_slice(&first_word.to_be_bytes());
    fixed[6] = next_header;
    fixed[7] = hop_limit;
    fixed[8..24].copy_from_slice(&src);
    fixed[24..40].copy_from_slice(&dst);
    Ok(Headers {
        fixed,
        ext: chain.ext,
        inner_offset: chain.inner_offset,
        udp: chain.udp,
        consumed: reader.pos(),
    })
}

#[derive(Default)]
struct NhcChain {
    ext: Vec<u8>,
    inner_offset: Option<usize>,
    udp: Option<UdpNhc>,
}

/// What decoding a tunnelled (EID 7) inner header needs.
struct Tunnel<'a> {
    mac_src: &'a Address,
    mac_dst: &'a Address,
    contexts: &'a [Context],
    allowed: bool,
}

/// Decode NHC headers; returns the IPv6 next header value of the first one.
fn parse_nhc_chain(
    reader: &mut Reader<'_>,
    chain: &mut NhcChain,
    tunnel: &Tunnel<'_>,
) -> Result<u8, WireError> {
    let ext = &mut chain.ext;
    // Position in `ext` of the next-header byte of the previous extension header.
    let mut pending_nh_slot: Option<usize> = None;
    let mut first = None;
    loop {
        let id = reader.u8()?;
        if id & 0xf8 == 0xf0 {
            chain.udp = Some(parse_udp_nhc(id, reader)?);
            set_next_header(ext, pending_nh_slot, &mut first, NEXT_HEADER_UDP);
            break;
        }
        if id & 0xf0 != 0xe0 {
            return Err(WireError::unsupported(
                "nhc",
                "unknown next header encoding",
            ));
        }
        let value = match (id >> 1) & 0x07 {
            0 => 0u8, // hop-by-hop options
            1 => 43,  // routing
            3 => 60,  // destination options
            7 => {
                // IPv6-in-IPv6 (RFC 6282 §4.2 EID 7): an IPHC-compressed inner packet follows,
                // with no length byte; its elided addresses come from the same link-layer ones.
                if !tunnel.allowed {
                    return Err(WireError::unsupported("nhc", "nested IPv6-in-IPv6"));
                }
                set_next_header(ext, pending_nh_slot, &mut first, 41);
                let inner = parse_headers_at(
                    reader.rest(),
                    tunnel.mac_src,
                    tunnel.mac_dst,
                    tunnel.contexts,
                    true,
                )?;
                reader.bytes(inner.consumed)?;
                chain.inner_offset = Some(ext.len());
                ext.extend_from_slice(&inner.fixed);
                ext.extend_from_slice(&inner.ext);
                chain.udp = inner.udp;
                break;
            }
            2 => {
                return Err(WireError::unsupported("nhc", "fragment extension header"));
            }
            _ => {
                return Err(WireError::unsupported("nhc", "mobility header"));
            }
        };
        set_next_header(ext, pending_nh_slot, &mut first, value);
        let nh_inline = id & 0x01 == 0;
        let inline_nh = if nh_inline { Some(reader.u8()?) } else { None };
        let len = usize::from(reader.u8()?);
        let data = reader.bytes(len)?;
        let slot = ext.len();
        ext.push(inline_nh.unwrap_or(0));
        // Header length in 8-octet units, not counting the first 8; options headers are padded.
        let total = (2 + len).div_ceil(8) * 8;
        ext.push((total / 8 - 1) as u8);
        ext.extend_from_slice(data);
        let pad = total - 2 - len;
        if pad > 0 {
            if value == 43 {
                return Err(WireError::malformed(
                    "nhc",
                    "routing header not 8-octet aligned",
                ));
            }
            if pad == 1 {
                ext.push(0); // Pad1
            } else {
                ext.push(1); // PadN
                ext.push((pad - 2) as u8);
                ext.extend(std::iter::repeat_n(0, pad - 2));
            }
        }
        if nh_inline {
            break;
        }
        pending_nh_slot = Some(slot);
    }
    Ok(first.unwrap_or(NEXT_HEADER_UDP))
}

fn set_next_header(ext: &mut [u8], slot: Option<usize>, first: &mut Option<u8>, value: u8) {
    match slot {
        Some(index) => {
            if let Some(byte) = ext.get_mut(index) {
                *byte = value;
            }
        }
        None => {
            if first.is_none() {
                *first = Some(value);
            }
        }
    }
}

fn parse_udp_nhc(id: u8, reader: &mut Reader<'_>) -> Result<UdpNhc, WireError> {
    let (src_port, dst_port) = match id & 0x03 {
        0b00 => (reader.u16_be()?, reader.u16_be()?),
        0b01 => (reader.u16_be()?, 0xf000 | u16::from(reader.u8()?)),
        0b10 => (0xf000 | u16::from(reader.u8()?), reader.u16_be()?),
        _ => {
            let ports = reader.u8()?;
            (
                0xf0b0 | u16::from(ports >> 4),
                0xf0b0 | u16::from(ports & 0x0f),
            )
        }
    };
    let checksum = if id & 0x04 != 0 {
        None
    } else {
        Some(reader.u16_be()?)
    };
    Ok(UdpNhc {
        src_port,
        dst_port,
        checksum,
    })
}

/// UDP NHC bytes for the given ports (checksum carried inline, C=0).
fn emit_udp_nhc(src_port: u16, dst_port: u16, checksum: u16, out: &mut Vec<u8>) {
    if src_port & 0xfff0 == 0xf0b0 && dst_port & 0xfff0 == 0xf0b0 {
        out.push(0xf3);
        out.push((((src_port & 0x0f) as u8) << 4) | (dst_port & 0x0f) as u8);
    } else if dst_port & 0xff00 == 0xf000 {
        out.push(0xf1);
        out.extend_from_slice(&src_port.to_be_bytes());
        out.push(dst_port as u8);
    } else if src_port & 0xff00 == 0xf000 {
        out.push(0xf2);
        out.push(src_port as u8);
        out.extend_from_slice(&dst_port.to_be_bytes());
    } else {
        out.push(0xf0);
        out.extend_from_slice(&src_port.to_be_bytes());
        out.extend_from_slice(&dst_port.to_be_bytes());
    }
    out.extend_from_slice(&checksum.to_be_bytes());
}

/// How a unicast address compresses: (address context used, mode bits, context id, inline bytes).
fn compress_unicast(
    addr: &[u8; 16],
    mac: &Address,
    contexts: &[Context],
) -> (bool, u8, u8, Vec<u8>) {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&addr[..8]);
    let mut iid = [0u8; 8];
    iid.copy_from_slice(&addr[8..]);
    let (stateful, context_id) = if prefix == LINK_LOCAL_PREFIX {
        (false, 0)
    } else if let Some(context) = contexts.iter().find(|c| c.prefix == prefix && c.id < 16) {
        (true, context.id)
    } else {
        return (false, 0b00, 0, addr.to_vec());
    };
    let (mode, inline) = if iid_from_mac(mac).is_ok_and(|derived| derived == iid) {
        (0b11, Vec::new())
    } else if let Some(short) = ip::short_from_iid(&iid) {
        (0b10, short.to_be_bytes().to_vec())
    } else {
        (0b01, iid.to_vec())
    };
    (stateful, mode, context_id, inline)
}

fn compress_multicast(addr: &[u8; 16]) -> (u8, Vec<u8>) {
    if addr[1] == 0x02 && addr[2..15].iter().all(|&b| b == 0) {
        (0b11, vec![addr[15]])
    } else if addr[2..13].iter().all(|&b| b == 0) {
        (0b10, vec![addr[1], addr[13], addr[14], addr[15]])
    } else if addr[2..11].iter().all(|&b| b == 0) {
        let mut inline = vec![addr[1]];
        inline.extend_from_slice(&addr[11..]);
        (0b01, inline)
    } else {
        (0b00, addr.to_vec())
    }
}

/// NHC encoding of the headers from `next_header` on, followed by the rest of the payload; `None`
/// when the first header is not NHC-compressible (it then goes inline).
fn compress_next(
    next_header: u8,
    payload: &[u8],
    mac_src: &Address,
    mac_dst: &Address,
    contexts: &[Context],
    tunnel_allowed: bool,
) -> Option<Vec<u8>> {
    match next_header {
        NEXT_HEADER_UDP => {
            let header = payload.get(..UDP_HEADER_LEN)?;
            let field = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
            // A UDP length that disagrees with the datagram cannot be elided.
            if usize::from(field(4)) != payload.len() {
                return None;
            }
            let mut out = Vec::with_capacity(payload.len());
            emit_udp_nhc(field(0), field(2), field(6), &mut out);
            out.extend_from_slice(&payload[UDP_HEADER_LEN..]);
            Some(out)
        }
        0 | 43 | 60 => {
            let eid = match next_header {
                0 => 0u8,
                43 => 1,
                _ => 3,
            };
            let (&inner_nh, rest) = payload.split_first()?;
            let header_len = (usize::from(*rest.first()?) + 1) * 8;
            let data = payload.get(2..header_len)?;
            let after = payload.get(header_len..)?;
            // The length byte counts the option bytes; longer headers stay inline.
            let data_len = u8::try_from(data.len()).ok()?;
            let mut out = Vec::with_capacity(payload.len() + 2);
            match compress_next(inner_nh, after, mac_src, mac_dst, contexts, tunnel_allowed) {
                Some(next) => {
                    out.push(0xe0 | (eid << 1) | 1);
                    out.push(data_len);
                    out.extend_from_slice(data);
                    out.extend_from_slice(&next);
                }
                None => {
                    out.push(0xe0 | (eid << 1));
                    out.push(inner_nh);
                    out.push(data_len);
                    out.extend_from_slice(data);
                    out.extend_from_slice(after);
                }
            }
            Some(out)
        }
        41 if tunnel_allowed => {
            // IPv6-in-IPv6: EID 7, then the inner packet in IPHC (its length follows from the
            // outer one, so it must fill the payload exactly).
            let inner_len = u16::from_be_bytes([*payload.get(4)?, *payload.get(5)?]);
            if usize::from(inner_len) + IPV6_HEADER_LEN != payload.len() {
                return None;
            }
            let inner = compress_with(payload, mac_src, mac_dst, contexts, false).ok()?;
            let mut out = Vec::with_capacity(inner.len() + 1);
            out.push(0xee);
            out.extend_from_slice(&inner);
            Some(out)
        }
        _ => None,
    }
}

/// Compress a full IPv6 packet (header + payload) into IPHC, with NHC for UDP, hop-by-hop,
/// routing and destination options headers and IPv6-in-IPv6. The UDP checksum stays inline
/// (OpenThread never elides it).
pub fn compress(
    ipv6: &[u8],
    mac_src: &Address,
    mac_dst: &Address,
    contexts: &[Context],
) -> Result<Vec<u8>, WireError> {
    compress_with(ipv6, mac_src, mac_dst, contexts, true)
}

fn compress_with(
    ipv6: &[u8],
    mac_src: &Address,
    mac_dst: &Address,
    contexts: &[Context],
    tunnel_allowed: bool,
) -> Result<Vec<u8>, WireError> {
    let mut reader = Reader::new(ipv6, "ipv6 header");
    let first_word = u32::from_be_bytes(reader.array()?);
    if first_word >> 28 != 6 {
        return Err(WireError::malformed("ipv6 header", "version is not 6"));
    }
    let payload_len = usize::from(reader.u16_be()?);
    let next_header = reader.u8()?;
    let hop_limit = reader.u8()?;
    let src: [u8; 16] = reader.array()?;
    let dst: [u8; 16] = reader.array()?;
    let payload = reader.bytes(payload_len)?;

    let traffic_class = ((first_word >> 20) & 0xff) as u8;
    let (dscp, ecn) = (traffic_class >> 2, traffic_class & 0x03);
    let flow_label = first_word & 0x000f_ffff;

    let compressed_next = compress_next(
        next_header,
        payload,
        mac_src,
        mac_dst,
        contexts,
        tunnel_allowed,
    );

    let mut inline = Vec::with_capacity(payload.len() + 40);
    let tf = match (ecn, dscp, flow_label) {
        (0, 0, 0) => 0b11,
        (_, 0, _) => {
            inline.push((ecn << 6) | ((flow_label >> 16) as u8 & 0x0f));
            inline.extend_from_slice(&(flow_label as u16).to_be_bytes());
            0b01
        }
        (_, _, 0) => {
            inline.push((ecn << 6) | dscp);
            0b10
        }
        _ => {
            inline.push((ecn << 6) | dscp);
            inline.push((flow_label >> 16) as u8 & 0x0f);
            inline.extend_from_slice(&(flow_label as u16).to_be_bytes());
            0b00
        }
    };
    let nh = if compressed_next.is_some() {
        1
    } else {
        inline.push(next_header);
        0
    };
    let hlim = match hop_limit {
        1 => 0b01,
        64 => 0b10,
        255 => 0b11,
        other => {
            inline.push(other);
            0b00
        }
    };

    let (sac, sam, sci, src_inline) = if src == [0u8; 16] {
        (true, 0b00, 0, Vec::new())
    } else {
        compress_unicast(&src, mac_src, contexts)
    };
    let multicast = dst[0] == 0xff;
    let (dac, dam, dci, dst_inline) = if multicast {
        let (dam, bytes) = compress_multicast(&dst);
        (false, dam, 0, bytes)
    } else {
        compress_unicast(&dst, mac_dst, contexts)
    };
    let cid = sci != 0 || dci != 0;

    let mut out =
        Vec::with_capacity(3 + inline.len() + src_inline.len() + dst_inline.len() + payload.len());
    out.push(0x60 | (tf << 3) | (nh << 2) | hlim);
    out.push(
        (u8::from(cid) << 7)
            | (u8::from(sac) << 6)
            | (sam << 4)
            | (u8::from(multicast) << 3)
            | (u8::from(dac) << 2)
            | dam,
    );
    if cid {
        out.push((sci << 4) | (dci & 0x0f));
    }
    out.extend_from_slice(&inline);
    out.extend_from_slice(&src_inline);
    out.extend_from_slice(&dst_inline);
    match compressed_next {
        Some(next) => out.extend_from_slice(&next),
        None => out.extend_from_slice(payload),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::ExtAddress;
    use std::net::{Ipv6Addr, SocketAddrV6};

    const ML_PREFIX: [u8; 8] = [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0x00];
    const OTHER_PREFIX: [u8; 8] = [0xfd, 0x11, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00];

    fn contexts() -> Vec<Context> {
        vec![
            Context {
                id: 0,
                prefix: ML_PREFIX,
            },
            Context {
                id: 2,
                prefix: OTHER_PREFIX,
            },
        ]
    }

    use crate::unhex;

    /// The mesh-local prefix of OpenThread's test network: with it the inline UDP checksum 0xe004
    /// of the vector verifies (it does not with fdde:ad00:beef::/64).
    const VECTOR_PREFIX: [u8; 8] = [0xfd, 0x00, 0x0d, 0xb8, 0, 0, 0, 0];

    #[test]
    fn decompresses_thread_vector_plaintext() {
        // protocols.md §2: decrypted payload of OpenThread's secured data frame.
        let plaintext =
            unhex("7c7780f04d4d4d4de004440244 66135f2280b16102617311 2aff0108166e0a0000000007");
        let ctx = [Context {
            id: 0,
            prefix: VECTOR_PREFIX,
        }];
        let (mac_src, mac_dst) = (Address::Short(0x2001), Address::Short(0x2000));
        let datagram = decompress(&plaintext, &mac_src, &mac_dst, &ctx).unwrap();
        let packet = ip::parse(&datagram).unwrap();
        assert_eq!(packet.src, ip::rloc(&VECTOR_PREFIX, 0x2001));
        assert_eq!(packet.dst, ip::rloc(&VECTOR_PREFIX, 0x2000));
        assert_eq!(packet.hop_limit, 0x80);
        let ip::Body::Udp {
            src_port,
            dst_port,
            payload,
        } = packet.body
        else {
            panic!("not udp: {:?}", packet.body);
        };
        assert_eq!((src_port, dst_port), (0x4d4d, 0x4d4d));
        assert_eq!(payload, &plaintext[10..]);
        let coap = crate::coap::decode(&payload).unwrap();
        assert_eq!(crate::coap::uri_path(&coap), "a/as");
        // Checksum 0xe004 was carried inline and ip::parse verified it.
        assert_eq!(&datagram[46..48], &[0xe0, 0x04]);
        // With another mesh-local prefix the addresses change, so the checksum no longer verifies.
        let other = decompress(&plaintext, &mac_src, &mac_dst, &contexts()).unwrap();
        assert_eq!(ip::parse(&other), Err(WireError::BadChecksum("udp")));
        // Compressing again gives the same bytes.
        assert_eq!(
            compress(&datagram, &mac_src, &mac_dst, &ctx).unwrap(),
            plaintext
        );
    }

    fn udp(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, hop: u8) -> Vec<u8> {
        ip::udp_packet(
            SocketAddrV6::new(src, sport, 0, 0),
            SocketAddrV6::new(dst, dport, 0, 0),
            hop,
            b"payload bytes",
        )
    }

    /// Decompress a frame from MAC short 0x0400 to the broadcast address.
    fn decompress_broadcast(lowpan: &[u8]) -> Vec<u8> {
        decompress(
            lowpan,
            &Address::Short(0x0400),
            &Address::Short(0xffff),
            &contexts(),
        )
        .unwrap()
    }

    fn round_trip(packet: &[u8], src: &Address, dst: &Address) -> Vec<u8> {
        let compressed = compress(packet, src, dst, &contexts()).unwrap();
        let back = decompress(&compressed, src, dst, &contexts()).unwrap();
        assert_eq!(back, packet, "compressed {}", hex::encode(&compressed));
        compressed
    }

    #[test]
    fn round_trips_every_address_mode() {
        let ext_a: ExtAddress = "166e0a0000000007".parse().unwrap();
        let ext_b: ExtAddress = "1122334455667788".parse().unwrap();
        let mac_ext_a = Address::Extended(ext_a);
        let mac_ext_b = Address::Extended(ext_b);
        let mac_short_a = Address::Short(0x0400);
        let mac_short_b = Address::Short(0x0c01);
        let ll_a = ip::link_local_from_ext(&ext_a);
        let ll_b = ip::link_local_from_ext(&ext_b);
        let eid = ip::from_prefix_iid(&ML_PREFIX, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let other_ctx = ip::from_prefix_iid(&OTHER_PREFIX, &ip::iid_from_short(0x0400));
        let global: Ipv6Addr = "2001:db8::1".parse().unwrap();
        // (src, dst, mac src, mac dst, expected IPHC second byte)
        let cases = [
            // SAM=11/DAM=11 stateless from extended addresses.
            (ll_a, ll_b, mac_ext_a, mac_ext_b, 0x33),
            // SAM=10/DAM=10 stateless: 16-bit IIDs not derivable from the MAC (ext) addresses.
            (
                ip::link_local_from_short(0x0400),
                ip::link_local_from_short(0x0c01),
                mac_ext_a,
                mac_ext_b,
                0x22,
            ),
            // SAM=01/DAM=01 stateless: 64-bit IIDs.
            (ll_a, ll_b, mac_short_a, mac_short_b, 0x11),
            // SAM=00/DAM=00 stateless: full addresses.
            (global, global, mac_short_a, mac_short_b, 0x00),
            // SAC/DAC with context 0: 0-bit, 16-bit, 64-bit.
            (
                ip::rloc(&ML_PREFIX, 0x0400),
                ip::rloc(&ML_PREFIX, 0x0c01),
                mac_short_a,
                mac_short_b,
                0x77,
            ),
            (
                ip::rloc(&ML_PREFIX, 0x0400),
                ip::rloc(&ML_PREFIX, 0x0c01),
                mac_ext_a,
                mac_ext_b,
                0x66,
            ),
            (eid, eid, mac_short_a, mac_short_b, 0x55),
            // Context 2 needs the CID byte.
            (other_ctx, eid, mac_short_a, mac_short_b, 0xf5),
            // Unspecified source.
            (Ipv6Addr::UNSPECIFIED, ll_b, mac_ext_a, mac_ext_b, 0x43),
        ];
        for (src, dst, mac_src, mac_dst, byte1) in cases {
            let packet = udp(src, 1234, dst, 5683, 64);
            let compressed = round_trip(&packet, &mac_src, &mac_dst);
            assert_eq!(compressed[1], byte1, "{src} -> {dst}");
        }
    }

    #[test]
    fn round_trips_multicast_modes() {
        let mac_src = Address::Short(0x0400);
        let bcast = Address::Short(0xffff);
        let src = ip::rloc(&ML_PREFIX, 0x0400);
        let cases: [(&str, u8, usize); 8] = [
            ("ff02::1", 0b11, 1),
            ("ff02::2", 0b11, 1),
            ("ff03::1", 0b10, 4),
            ("ff03::2", 0b10, 4),
            ("ff03::fc", 0b10, 4),
            ("ff05::1:3", 0b10, 4),
            ("ff33:0:0:0:0:1:2:3", 0b01, 6),
            ("ff32:40:fdde:ad00:beef:0:1:2", 0b00, 16),
        ];
        for (dst, dam, inline) in cases {
            let dst: Ipv6Addr = dst.parse().unwrap();
            let packet = udp(src, 19788, dst, 19788, 255);
            let compressed = round_trip(&packet, &mac_src, &bcast);
            assert_eq!(compressed[1] & 0x0f, 0x08 | dam, "{dst}");
            // IPHC(2) + src(0) + dst inline + NHC(1+4) + checksum(2)
            assert_eq!(compressed.len(), 2 + inline + 5 + 2 + 13, "{dst}");
        }
    }

    #[test]
    fn decompresses_unicast_prefix_based_multicast() {
        // M=1 DAC=1 DAM=00: ffXX:XXLL:<context prefix>:XXXX:XXXX, 48 bits inline.
        let compressed = unhex("7f 7c 3200 00000001 f4 1234 5678 aa");
        let datagram = decompress(
            &compressed,
            &Address::Short(1),
            &Address::Short(0xffff),
            &contexts(),
        )
        .unwrap();
        let dst: Ipv6Addr = "ff32:40:fdde:ad00:beef:0:0:1".parse().unwrap();
        assert_eq!(&datagram[24..40], &dst.octets());
        assert!(ip::parse(&datagram).is_ok());
    }

    #[test]
    fn traffic_class_flow_label_and_hop_limit_modes() {
        let src = ip::rloc(&ML_PREFIX, 0x0400);
        let dst = ip::rloc(&ML_PREFIX, 0x0800);
        let (ms, md) = (Address::Short(0x0400), Address::Short(0x0800));
        for (tc, flow, tf) in [
            (0u8, 0u32, 0b11u8),
            (0x01, 0x12345, 0b01),
            (0xb8, 0, 0b10),
            (0xb9, 0xabcde, 0b00),
        ] {
            for (hop, hlim) in [(1u8, 0b01u8), (64, 0b10), (255, 0b11), (17, 0b00)] {
                let mut packet = udp(src, 1, dst, 2, hop);
                let word = (6u32 << 28) | (u32::from(tc) << 20) | flow;
                packet[..4].copy_from_slice(&word.to_be_bytes());
                let compressed = round_trip(&packet, &ms, &md);
                assert_eq!((compressed[0] >> 3) & 3, tf);
                assert_eq!(compressed[0] & 3, hlim);
            }
        }
    }

    #[test]
    fn udp_nhc_port_modes() {
        let src = ip::rloc(&ML_PREFIX, 0x0400);
        let dst = ip::rloc(&ML_PREFIX, 0x0800);
        let (ms, md) = (Address::Short(0x0400), Address::Short(0x0800));
        // (src port, dst port, NHC bytes incl. checksum placeholder length)
        let cases = [
            (5684u16, 19788u16, "f0 1634 4d4c"),
            (49152, 0xf0bf, "f1 c000 bf"),
            (0xf0bf, 5683, "f2 bf 1633"),
            (0xf0b1, 0xf0bf, "f3 1f"),
            (0xf0bf, 0xf0b0, "f3 f0"),
            (0xf0c0, 0xf0b5, "f1 f0c0 b5"),
        ];
        for (sport, dport, nhc) in cases {
            let packet = udp(src, sport, dst, dport, 64);
            let compressed = round_trip(&packet, &ms, &md);
            let nhc = unhex(nhc);
            assert_eq!(&compressed[2..2 + nhc.len()], &nhc[..], "{sport} {dport}");
            // Checksum follows the ports inline.
            assert_eq!(
                &compressed[2 + nhc.len()..4 + nhc.len()],
                &packet[46..48],
                "{sport} {dport}"
            );
        }
    }

    #[test]
    fn udp_nhc_byte_fixtures_decode() {
        // Hand-written IPHC: 7e 77 = TF=11 NH=1 HLIM=10(64), SAC/SAM=11 DAC/DAM=11 from MAC shorts.
        let (ms, md) = (Address::Short(0x0400), Address::Short(0x0800));
        for (nhc, sport, dport) in [
            ("f0 1234 5678", 0x1234u16, 0x5678u16),
            ("f1 1234 bf", 0x1234, 0xf0bf),
            ("f2 bf 5678", 0xf0bf, 0x5678),
            ("f3 bf", 0xf0bb, 0xf0bf),
            ("f3 0f", 0xf0b0, 0xf0bf),
        ] {
            // C=1 variant: checksum elided, computed by the decompressor.
            let mut bytes = unhex("7e77");
            let mut nhc_bytes = unhex(nhc);
            nhc_bytes[0] |= 0x04;
            bytes.extend_from_slice(&nhc_bytes);
            bytes.extend_from_slice(b"hi");
            let datagram = decompress(&bytes, &ms, &md, &contexts()).unwrap();
            let packet = ip::parse(&datagram).unwrap();
            assert_eq!(
                packet.body,
                ip::Body::Udp {
                    src_port: sport,
                    dst_port: dport,
                    payload: b"hi".to_vec()
                },
                "{nhc}"
            );
            assert_eq!(packet.hop_limit, 64);
        }
    }

    #[test]
    fn extension_headers_round_trip() {
        let src = ip::rloc(&ML_PREFIX, 0x0400);
        let dst: Ipv6Addr = "ff03::1".parse().unwrap();
        let (ms, md) = (Address::Short(0x0400), Address::Short(0xffff));
        let udp = udp(src, 49152, dst, 61631, 64);
        // HBH (options padded to 16 bytes) -> destination options -> UDP.
        let mut hbh = unhex("3c01 6d04 4000 0400 0106 000000000000");
        let dest_opts = unhex("1100 0104 00000000");
        let mut packet = udp[..40].to_vec();
        packet[6] = 0;
        hbh.extend_from_slice(&dest_opts);
        hbh.extend_from_slice(&udp[40..]);
        packet[4..6].copy_from_slice(&(hbh.len() as u16).to_be_bytes());
        packet.extend_from_slice(&hbh);
        let compressed = round_trip(&packet, &ms, &md);
        assert_eq!(compressed[6], 0xe1, "HBH with NH=1");
        // HBH followed by ICMPv6 (not compressible): next header inline in the NHC.
        let echo = ip::echo_request(src, dst, 64, 1, 1, b"x");
        let mut packet = echo[..40].to_vec();
        packet[6] = 0;
        let mut body = unhex("3a00 6d04 4000 0400");
        body.extend_from_slice(&echo[40..]);
        packet[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
        packet.extend_from_slice(&body);
        let compressed = round_trip(&packet, &ms, &md);
        assert_eq!(&compressed[6..9], &[0xe0, 0x3a, 0x06]);
    }

    #[test]
    fn non_udp_next_header_inline() {
        let src = ip::rloc(&ML_PREFIX, 0x0400);
        let dst = ip::rloc(&ML_PREFIX, 0x0800);
        let packet = ip::echo_request(src, dst, 64, 1, 2, b"ping");
        let compressed = round_trip(&packet, &Address::Short(0x0400), &Address::Short(0x0800));
        assert_eq!(compressed[0] & 0x04, 0);
        assert_eq!(compressed[2], 58);
    }

    #[test]
    fn hop_by_hop_nhc_decodes_with_padding() {
        // NHC HBH (EID 0) with NH=1, 6 bytes of options (MPL option 0x6d len 4), then UDP NHC.
        let mut bytes = unhex("7e7a 03 0000fc e1 06 6d04 4000 0001 f7 2f");
        bytes.extend_from_slice(b"hello");
        let datagram = decompress_broadcast(&bytes);
        // IPv6 next header = HBH(0); HBH: next UDP(17), len 0 (8 bytes), 6 option bytes, no pad.
        assert_eq!(datagram[6], 0);
        assert_eq!(&datagram[40..48], &unhex("1100 6d04 4000 0001")[..]);
        assert_eq!(datagram[48..50], [0xf0, 0xb2]);
        assert_eq!(datagram.len(), 40 + 8 + 8 + 5);
        // UDP length covers UDP header + payload only.
        assert_eq!(&datagram[52..54], &[0, 13]);

        // 4 option bytes: the decompressor pads with PadN to 8 octets.
        let mut bytes = unhex("7e7a 03 0000fc e1 04 6d02 4000 f7 2f");
        bytes.extend_from_slice(b"hello");
        let datagram = decompress_broadcast(&bytes);
        assert_eq!(&datagram[40..48], &unhex("1100 6d02 4000 0100")[..]);
        assert_eq!(datagram.len(), 40 + 8 + 8 + 5);
    }

    /// IPv6-in-IPv6 as OpenThread sends a realm-local multicast from an ML-EID: outer RLOC ->
    /// ff03::fc with an MPL hop-by-hop option, inner ML-EID -> ff03::1 ICMPv6 echo request.
    pub(crate) fn tunnelled_echo() -> (Vec<u8>, Vec<u8>) {
        let ml: [u8; 8] = ML_PREFIX;
        let inner_src = ip::from_prefix_iid(&ml, &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]);
        let inner_dst: Ipv6Addr = "ff03::1".parse().unwrap();
        let inner = ip::echo_request(inner_src, inner_dst, 64, 0x1111, 2, b"hello");
        let mut compressed = unhex(
            "7f 7a 030000fc \
             e1 06 6d04 4000 0400 \
             ee \
             7a 5a 3a 123456789abcdef0 03000001",
        );
        compressed.extend_from_slice(&inner[40..]);
        let outer_src = ip::rloc(&ml, 0x0400);
        let outer_dst: Ipv6Addr = "ff03::fc".parse().unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&[0x60, 0, 0, 0]);
        expected.extend_from_slice(&((8 + inner.len()) as u16).to_be_bytes());
        expected.extend_from_slice(&[0, 255]);
        expected.extend_from_slice(&outer_src.octets());
        expected.extend_from_slice(&outer_dst.octets());
        expected.extend_from_slice(&unhex("29 00 6d04 4000 0400"));
        expected.extend_from_slice(&inner);
        (compressed, expected)
    }

    #[test]
    fn decompresses_ipv6_in_ipv6_with_mpl_option() {
        let (compressed, expected) = tunnelled_echo();
        let datagram = decompress_broadcast(&compressed);
        assert_eq!(hex::encode(&datagram), hex::encode(&expected));
        // Our compressor produces exactly what OpenThread sends.
        assert_eq!(
            compress(
                &expected,
                &Address::Short(0x0400),
                &Address::Short(0xffff),
                &contexts()
            )
            .unwrap(),
            compressed
        );
        // The inner packet parses on its own (its ICMPv6 checksum uses the inner addresses).
        let inner = ip::parse(&datagram[48..]).unwrap();
        assert!(matches!(
            inner.body,
            ip::Body::EchoRequest { sequence: 2, .. }
        ));

        // A tunnelled UDP datagram with an elided checksum: computed over the inner addresses.
        let mut udp_tunnel = unhex("7f 7a 030000fc ee 7e 5a 123456789abcdef0 03000001 f7 2f");
        udp_tunnel.extend_from_slice(b"abc");
        let datagram = decompress_broadcast(&udp_tunnel);
        assert_eq!(datagram[6], 41);
        let inner = ip::parse(&datagram[40..]).unwrap();
        assert_eq!(
            inner.body,
            ip::Body::Udp {
                src_port: 0xf0b2,
                dst_port: 0xf0bf,
                payload: b"abc".to_vec()
            }
        );
        // Tunnels do not nest.
        let nested =
            unhex("7f 7a 030000fc ee 7f 7a 030000fc ee 7e 5a 123456789abcdef0 03000001 f7 2f");
        assert!(decompress(&nested, &Address::Short(1), &Address::Short(2), &contexts()).is_err());
    }

    #[test]
    fn errors_instead_of_panics() {
        let cs = contexts();
        let (ms, md) = (Address::Short(1), Address::Short(2));
        assert_eq!(
            decompress(
                &unhex("7b d5 20 01 02 03 04 05 06 07 08"),
                &ms,
                &md,
                &cs[..1]
            ),
            Err(WireError::UnknownContext(2))
        );
        assert!(decompress(&unhex("7e33"), &Address::Absent, &md, &cs).is_err());
        assert!(decompress(&unhex("7a"), &ms, &md, &cs).is_err());
        assert!(decompress(&unhex("7a 34"), &ms, &md, &cs).is_err());
        for len in 0..64 {
            let data: Vec<u8> = (0..len).map(|i| (i * 29 + 0x7b) as u8).collect();
            let _ = decompress(&data, &ms, &md, &cs);
            let _ = compress(&data, &ms, &md, &cs);
        }
    }
}
