//! 6LoWPAN as Thread uses it (RFC 4944, RFC 6282): mesh header, FRAG1/FRAGN fragmentation and
//! reassembly, IPHC header compression with contexts, UDP next-header compression.
//!
//! Order of headers inside a MAC payload: Mesh -> [FRAG1/FRAGN] -> IPHC (+ NHC).

mod frag;
mod iphc;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::WireError;
use crate::mac::Address;
use crate::reader::Reader;

pub use frag::fragment;
pub use iphc::{compress, decompress};

/// A 6LoWPAN address context. Thread puts the mesh-local prefix in context 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Context {
    pub id: u8,
    pub prefix: [u8; 8],
}

/// What the first byte of a 6LoWPAN payload announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// `10xxxxxx`
    Mesh,
    /// `11000xxx`
    Frag1,
    /// `11100xxx`
    FragN,
    /// `011xxxxx`
    Iphc,
    /// Anything else (NALP, uncompressed IPv6 `0x41`, reserved).
    Other(u8),
}

impl Dispatch {
    pub fn of(first_byte: u8) -> Self {
        match first_byte {
            b if b & 0xc0 == 0x80 => Dispatch::Mesh,
            b if b & 0xf8 == 0xc0 => Dispatch::Frag1,
            b if b & 0xf8 == 0xe0 => Dispatch::FragN,
            b if b & 0xe0 == 0x60 => Dispatch::Iphc,
            b => Dispatch::Other(b),
        }
    }
}

/// Mesh addressing header as Thread sends it: V=1, F=1 (16-bit originator and final destination),
/// hops left, with the "deep hops left" byte when hops_left >= 15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MeshHeader {
    pub hops_left: u8,
    pub originator: u16,
    pub final_dest: u16,
}

impl MeshHeader {
    /// Parse; returns the header and its length. Extended (V=0/F=0) addresses are rejected as
    /// Thread does.
    pub fn parse(data: &[u8]) -> Result<(Self, usize), WireError> {
        let mut reader = Reader::new(data, "mesh header");
        let first = reader.u8()?;
        if first & 0xc0 != 0x80 {
            return Err(WireError::malformed(
                "mesh header",
                "dispatch is not 10xxxxxx",
            ));
        }
        if first & 0x30 != 0x30 {
            return Err(WireError::unsupported(
                "mesh header",
                "extended originator or final address",
            ));
        }
        let hops_left = match first & 0x0f {
            0x0f => reader.u8()?,
            hops => hops,
        };
        let originator = reader.u16_be()?;
        let final_dest = reader.u16_be()?;
        Ok((
            MeshHeader {
                hops_left,
                originator,
                final_dest,
            },
            reader.pos(),
        ))
    }

    pub fn buffer_len(&self) -> usize {
        if self.hops_left >= 0x0f { 6 } else { 5 }
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        if self.hops_left >= 0x0f {
            out.push(0xbf);
            out.push(self.hops_left);
        } else {
            out.push(0xb0 | self.hops_left);
        }
        out.extend_from_slice(&self.originator.to_be_bytes());
        out.extend_from_slice(&self.final_dest.to_be_bytes());
    }
}

/// FRAG1 / FRAGN header. `size` is the size of the whole *uncompressed* IPv6 datagram (11 bits);
/// `offset` is in bytes (a multiple of 8) of that uncompressed datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FragHeader {
    First { size: u16, tag: u16 },
    Next { size: u16, tag: u16, offset: u16 },
}

impl FragHeader {
    /// Parse; returns the header and its length (4 or 5).
    pub fn parse(data: &[u8]) -> Result<(Self, usize), WireError> {
        let mut reader = Reader::new(data, "fragment header");
        let word = reader.u16_be()?;
        let size = word & 0x07ff;
        let tag = reader.u16_be()?;
        match Dispatch::of((word >> 8) as u8) {
            Dispatch::Frag1 => Ok((FragHeader::First { size, tag }, 4)),
            Dispatch::FragN => {
                let offset = u16::from(reader.u8()?) * 8;
                Ok((FragHeader::Next { size, tag, offset }, 5))
            }
            _ => Err(WireError::malformed(
                "fragment header",
                "dispatch is not FRAG1/FRAGN",
            )),
        }
    }

    pub fn size(&self) -> u16 {
        match *self {
            FragHeader::First { size, .. } | FragHeader::Next { size, .. } => size,
        }
    }

    pub fn tag(&self) -> u16 {
        match *self {
            FragHeader::First { tag, .. } | FragHeader::Next { tag, .. } => tag,
        }
    }

    /// Offset in bytes of the uncompressed datagram (0 for FRAG1).
    pub fn offset(&self) -> u16 {
        match *self {
            FragHeader::First { .. } => 0,
            FragHeader::Next { offset, .. } => offset,
        }
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            FragHeader::First { .. } => 4,
            FragHeader::Next { .. } => 5,
        }
    }

    /// Write the header; `size` is cut to 11 bits and `offset` to 8-byte units.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let (dispatch, size, tag) = match *self {
            FragHeader::First { size, tag } => (0xc000u16, size, tag),
            FragHeader::Next { size, tag, .. } => (0xe000u16, size, tag),
        };
        out.extend_from_slice(&(dispatch | (size & 0x07ff)).to_be_bytes());
        out.extend_from_slice(&tag.to_be_bytes());
        if let FragHeader::Next { offset, .. } = *self {
            out.push((offset / 8) as u8);
        }
    }
}

/// Reassembly counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReassemblyStats {
    /// Datagrams delivered (fragmented or not).
    pub completed: u64,
    /// Of those, datagrams that arrived in fragments.
    pub reassembled: u64,
    /// Fragments received.
    pub fragments: u64,
    /// Fragments identical to one already held (link-layer retransmissions), ignored.
    pub duplicates: u64,
    /// Fragments that overlapped held data inconsistently; the datagram was dropped.
    pub overlaps: u64,
    /// Partial datagrams dropped at the timeout.
    pub expired: u64,
    /// Holes in the datagrams dropped at the timeout: each is at least one missing fragment.
    pub missing_fragments: u64,
    /// Payloads that could not be decoded (bad headers, unknown contexts, inconsistent sizes).
    pub errors: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    src: Address,
    dst: Address,
    size: u16,
    tag: u16,
}

#[derive(Debug)]
struct Partial {
    started: Instant,
    /// The uncompressed datagram being filled.
    buffer: Vec<u8>,
    /// Byte ranges `[start, end)` of `buffer` received, kept sorted and disjoint.
    received: Vec<(usize, usize)>,
    /// Whether FRAG1 arrived and its UDP checksum was elided (to be computed at the end).
    first_seen: bool,
    udp_checksum_offset: Option<(usize, usize)>,
}

/// 6LoWPAN reassembly keyed by (link-layer source, destination, datagram size, tag), with a
/// timeout. Link-layer addresses are those of the mesh header when there is one.
#[derive(Debug)]
pub struct Reassembler {
    timeout: Duration,
    partial: HashMap<Key, Partial>,
    stats: ReassemblyStats,
}

impl Reassembler {
    pub fn new(timeout: Duration) -> Self {
        Reassembler {
            timeout,
            partial: HashMap::new(),
            stats: ReassemblyStats::default(),
        }
    }

    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Datagrams waiting for fragments.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// When the oldest partial datagram expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.partial
            .values()
            .map(|p| p.started + self.timeout)
            .min()
    }

    /// Feed one MAC payload (after decryption). Returns the IPv6 datagram once complete; `Ok(None)`
    /// while fragments are missing. Expires old partial datagrams first.
    pub fn push(
        &mut self,
        now: Instant,
        mac_src: &Address,
        mac_dst: &Address,
        lowpan_payload: &[u8],
        contexts: &[Context],
    ) -> Result<Option<Vec<u8>>, WireError> {
        self.expire(now);
        let result = self.push_inner(now, mac_src, mac_dst, lowpan_payload, contexts);
        if result.is_err() {
            self.stats.errors += 1;
        }
        result
    }

    fn push_inner(
        &mut self,
        now: Instant,
        mac_src: &Address,
        mac_dst: &Address,
        lowpan_payload: &[u8],
        contexts: &[Context],
    ) -> Result<Option<Vec<u8>>, WireError> {
        let mut data = lowpan_payload;
        let (mut src, mut dst) = (*mac_src, *mac_dst);
        if let Some(&first) = data.first()
            && Dispatch::of(first) == Dispatch::Mesh
        {
            let (mesh, len) = MeshHeader::parse(data)?;
            src = Address::Short(mesh.originator);
            dst = Address::Short(mesh.final_dest);
            data = data.get(len..).unwrap_or(&[]);
        }
        let Some(&first) = data.first() else {
            return Err(WireError::truncated("6lowpan payload", 1, 0));
        };
        match Dispatch::of(first) {
            Dispatch::Iphc => {
                let datagram = decompress(data, &src, &dst, contexts)?;
                self.stats.completed += 1;
                Ok(Some(datagram))
            }
            Dispatch::Frag1 | Dispatch::FragN => {
                let (header, len) = FragHeader::parse(data)?;
                let body = data.get(len..).unwrap_or(&[]);
                self.stats.fragments += 1;
                self.push_fragment(now, src, dst, header, body, contexts)
            }
            Dispatch::Mesh => Err(WireError::malformed(
                "6lowpan payload",
                "nested mesh header",
            )),
            Dispatch::Other(_) => Err(WireError::unsupported(
                "6lowpan dispatch",
                "only mesh, fragment and IPHC dispatches",
            )),
        }
    }

    fn push_fragment(
        &mut self,
        now: Instant,
        src: Address,
        dst: Address,
        header: FragHeader,
        body: &[u8],
        contexts: &[Context],
    ) -> Result<Option<Vec<u8>>, WireError> {
        let size = usize::from(header.size());
        // Decode before touching state so that a bad fragment does not disturb its datagram.
        let (start, bytes, udp_checksum_offset) = match header {
            FragHeader::First { .. } => {
                let decoded = iphc::decompress_first_fragment(body, &src, &dst, contexts, size)?;
                (0, decoded.bytes, decoded.udp_checksum_offset)
            }
            FragHeader::Next { offset, .. } => (usize::from(offset), body.to_vec(), None),
        };
        let end = start + bytes.len();
        if end > size || bytes.is_empty() {
            return Err(WireError::malformed(
                "fragment",
                "empty or beyond the datagram size",
            ));
        }
        let key = Key {
            src,
            dst,
            size: header.size(),
            tag: header.tag(),
        };
        let partial = self.partial.entry(key.clone()).or_insert_with(|| Partial {
            started: now,
            buffer: vec![0; size],
            received: Vec::new(),
            first_seen: false,
            udp_checksum_offset: None,
        });
        let mut overlaps = false;
        for &(s, e) in &partial.received {
            if s < end && start < e {
                if (s, e) == (start, end) && partial.buffer.get(s..e) == Some(&bytes[..]) {
                    self.stats.duplicates += 1;
                    return Ok(None);
                }
                overlaps = true;
            }
        }
        if overlaps {
            self.stats.overlaps += 1;
            self.partial.remove(&key);
            return Ok(None);
        }
        if let Some(slot) = partial.buffer.get_mut(start..end) {
            slot.copy_from_slice(&bytes);
        }
        if matches!(header, FragHeader::First { .. }) {
            partial.first_seen = true;
            partial.udp_checksum_offset = udp_checksum_offset;
        }
        partial.received.push((start, end));
        partial.received.sort_unstable();
        let covered = partial.received.iter().map(|&(s, e)| e - s).sum::<usize>();
        if covered < size || !partial.first_seen {
            return Ok(None);
        }
        let Some(done) = self.partial.remove(&key) else {
            return Ok(None);
        };
        let mut datagram = done.buffer;
        if let Some((ip_offset, udp_offset)) = done.udp_checksum_offset {
            crate::ip::fill_udp_checksum(&mut datagram, ip_offset, udp_offset);
        }
        self.stats.completed += 1;
        self.stats.reassembled += 1;
        Ok(Some(datagram))
    }

    /// Drop partial datagrams older than the timeout, counting them and their holes.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        let mut expired = 0;
        let mut holes = 0;
        self.partial.retain(|_, partial| {
            if now.saturating_duration_since(partial.started) < timeout {
                return true;
            }
            expired += 1;
            holes += count_holes(&partial.received, partial.buffer.len());
            false
        });
        self.stats.expired += expired;
        self.stats.missing_fragments += holes;
    }
}

/// Number of gaps in the sorted, disjoint ranges over `[0, size)`.
fn count_holes(received: &[(usize, usize)], size: usize) -> u64 {
    let mut holes = 0;
    let mut cursor = 0;
    for &(start, end) in received {
        if start > cursor {
            holes += 1;
        }
        cursor = cursor.max(end);
    }
    if cursor < size {
        holes += 1;
    }
    holes
}

/// Fuzzing entry point: decompress and reassemble arbitrary payloads.
pub fn fuzz_decode(data: &[u8]) {
    let contexts = [Context {
        id: 0,
        prefix: [0xfd, 0, 0, 0, 0, 0, 0, 0],
    }];
    let src = Address::Short(0x0400);
    let dst = Address::Short(0x0800);
    let _ = decompress(data, &src, &dst, &contexts);
    let mut reassembler = Reassembler::new(Duration::from_secs(1));
    let now = Instant::now();
    for chunk in data.split(|&b| b == 0xff) {
        let _ = reassembler.push(now, &src, &dst, chunk, &contexts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip;
    use std::net::SocketAddrV6;

    const ML_PREFIX: [u8; 8] = [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0x00];
    const CONTEXTS: [Context; 1] = [Context {
        id: 0,
        prefix: ML_PREFIX,
    }];
    const SRC: Address = Address::Short(0x0400);
    const DST: Address = Address::Short(0x0800);

    #[test]
    fn dispatch_values() {
        assert_eq!(Dispatch::of(0xbf), Dispatch::Mesh);
        assert_eq!(Dispatch::of(0xc4), Dispatch::Frag1);
        assert_eq!(Dispatch::of(0xe4), Dispatch::FragN);
        assert_eq!(Dispatch::of(0x7a), Dispatch::Iphc);
        assert_eq!(Dispatch::of(0x41), Dispatch::Other(0x41));
    }

    #[test]
    fn mesh_header_round_trip() {
        for (mesh, bytes) in [
            (
                MeshHeader {
                    hops_left: 14,
                    originator: 0x0400,
                    final_dest: 0x0c01,
                },
                vec![0xbe, 0x04, 0x00, 0x0c, 0x01],
            ),
            (
                MeshHeader {
                    hops_left: 32,
                    originator: 0x0400,
                    final_dest: 0xfffe,
                },
                vec![0xbf, 0x20, 0x04, 0x00, 0xff, 0xfe],
            ),
        ] {
            let mut out = Vec::new();
            mesh.emit(&mut out);
            assert_eq!(out, bytes);
            assert_eq!(mesh.buffer_len(), bytes.len());
            assert_eq!(MeshHeader::parse(&bytes).unwrap(), (mesh, bytes.len()));
        }
        // V=0 or F=0 (extended addresses) is rejected as OpenThread does; truncation is an error.
        assert!(
            MeshHeader::parse(&[0x8e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err()
        );
        assert!(MeshHeader::parse(&[0xbf, 0x20, 0x04]).is_err());
    }

    #[test]
    fn frag_header_round_trip() {
        for (header, bytes) in [
            (
                FragHeader::First {
                    size: 1280,
                    tag: 0xbeef,
                },
                vec![0xc5, 0x00, 0xbe, 0xef],
            ),
            (
                FragHeader::Next {
                    size: 1280,
                    tag: 0xbeef,
                    offset: 96,
                },
                vec![0xe5, 0x00, 0xbe, 0xef, 12],
            ),
        ] {
            let mut out = Vec::new();
            header.emit(&mut out);
            assert_eq!(out, bytes);
            assert_eq!(FragHeader::parse(&bytes).unwrap(), (header, bytes.len()));
        }
        assert!(FragHeader::parse(&[0xe5, 0x00, 0xbe, 0xef]).is_err());
        assert!(FragHeader::parse(&[0x7a, 0x00, 0xbe, 0xef]).is_err());
    }

    fn big_udp(len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        ip::udp_packet(
            SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x0400), 5684, 0, 0),
            SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x0800), 49152, 0, 0),
            64,
            &payload,
        )
    }

    fn fragments_of(datagram: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
        let compressed = compress(datagram, &SRC, &DST, &CONTEXTS).unwrap();
        fragment(&compressed, datagram.len() as u16, 0x1234, max_payload)
    }

    #[test]
    fn fragments_reassemble_in_any_order() {
        let datagram = big_udp(300);
        let frags = fragments_of(&datagram, 80);
        assert!(frags.len() > 3);
        assert!(frags.iter().all(|f| f.len() <= 80));
        // FRAGN offsets are multiples of 8 and continuous in uncompressed bytes.
        for pair in frags.windows(2) {
            let (a, _) = FragHeader::parse(&pair[0]).unwrap();
            let (b, b_len) = FragHeader::parse(&pair[1]).unwrap();
            assert_eq!(b.offset() % 8, 0);
            if let FragHeader::Next { .. } = a {
                assert_eq!(b.offset() - a.offset(), (pair[0].len() - 5) as u16);
            }
            assert!(b_len == 5);
        }
        let now = Instant::now();
        let orders: [Vec<usize>; 3] = [
            (0..frags.len()).collect(),
            (0..frags.len()).rev().collect(),
            (1..frags.len()).chain([0]).collect(),
        ];
        for order in orders {
            let mut reassembler = Reassembler::new(Duration::from_secs(2));
            let mut result = None;
            for (n, &i) in order.iter().enumerate() {
                let out = reassembler
                    .push(now, &SRC, &DST, &frags[i], &CONTEXTS)
                    .unwrap();
                if n + 1 < order.len() {
                    assert_eq!(out, None);
                } else {
                    result = out;
                }
            }
            assert_eq!(result.as_deref(), Some(&datagram[..]));
            assert_eq!(reassembler.pending(), 0);
            assert_eq!(reassembler.stats().reassembled, 1);
        }
    }

    #[test]
    fn unfragmented_and_mesh_headers() {
        let datagram = big_udp(20);
        let compressed = compress(&datagram, &SRC, &DST, &CONTEXTS).unwrap();
        let mut reassembler = Reassembler::new(Duration::from_secs(2));
        let now = Instant::now();
        assert_eq!(
            reassembler
                .push(now, &SRC, &DST, &compressed, &CONTEXTS)
                .unwrap(),
            Some(datagram.clone())
        );
        // Through a mesh header: the IPHC addresses come from originator/final destination,
        // not from the MAC addresses of the hop.
        let mut meshed = Vec::new();
        MeshHeader {
            hops_left: 3,
            originator: 0x0400,
            final_dest: 0x0800,
        }
        .emit(&mut meshed);
        meshed.extend_from_slice(&compressed);
        let hop_src = Address::Short(0x0c00);
        let hop_dst = Address::Short(0x1000);
        assert_eq!(
            reassembler
                .push(now, &hop_src, &hop_dst, &meshed, &CONTEXTS)
                .unwrap(),
            Some(datagram.clone())
        );
        // Mesh + fragments.
        let big = big_udp(200);
        let frags = fragments_of(&big, 70);
        let mut out = None;
        for frag in &frags {
            let mut m = Vec::new();
            MeshHeader {
                hops_left: 20,
                originator: 0x0400,
                final_dest: 0x0800,
            }
            .emit(&mut m);
            m.extend_from_slice(frag);
            out = reassembler
                .push(now, &hop_src, &hop_dst, &m, &CONTEXTS)
                .unwrap();
        }
        assert_eq!(out, Some(big));
        assert_eq!(reassembler.stats().completed, 3);
    }

    #[test]
    fn duplicates_overlaps_and_expiry_are_counted() {
        let datagram = big_udp(250);
        let frags = fragments_of(&datagram, 60);
        let now = Instant::now();
        let mut reassembler = Reassembler::new(Duration::from_secs(2));
        // A retransmitted fragment is a duplicate, not an error.
        reassembler
            .push(now, &SRC, &DST, &frags[0], &CONTEXTS)
            .unwrap();
        reassembler
            .push(now, &SRC, &DST, &frags[0], &CONTEXTS)
            .unwrap();
        assert_eq!(reassembler.stats().duplicates, 1);
        // An inconsistent overlap drops the datagram.
        let mut bad = frags[1].clone();
        bad[4] = bad[4].saturating_sub(1);
        reassembler
            .push(now, &SRC, &DST, &frags[1], &CONTEXTS)
            .unwrap();
        reassembler.push(now, &SRC, &DST, &bad, &CONTEXTS).unwrap();
        assert_eq!(reassembler.stats().overlaps, 1);
        assert_eq!(reassembler.pending(), 0);

        // Missing fragments 1 and 3: at the timeout, one expired datagram with two holes.
        for (i, frag) in frags.iter().enumerate() {
            if i != 1 && i != 3 {
                assert_eq!(
                    reassembler.push(now, &SRC, &DST, frag, &CONTEXTS).unwrap(),
                    None
                );
            }
        }
        assert_eq!(reassembler.pending(), 1);
        assert_eq!(
            reassembler.next_deadline(),
            Some(now + Duration::from_secs(2))
        );
        reassembler.expire(now + Duration::from_millis(1999));
        assert_eq!(reassembler.pending(), 1);
        reassembler.expire(now + Duration::from_secs(2));
        assert_eq!(reassembler.pending(), 0);
        let stats = reassembler.stats();
        assert_eq!((stats.expired, stats.missing_fragments), (1, 2));
        assert_eq!(stats.completed, 0);
    }

    #[test]
    fn elided_checksum_is_computed_after_reassembly() {
        let datagram = big_udp(150);
        let mut compressed = compress(&datagram, &SRC, &DST, &CONTEXTS).unwrap();
        // IPHC is 2 bytes here, then UDP NHC P=00 (f0 + 4 port bytes) + 2 checksum bytes: elide it.
        assert_eq!(compressed[2], 0xf0);
        compressed[2] |= 0x04;
        compressed.drain(7..9);
        let frags = fragment(&compressed, datagram.len() as u16, 9, 64);
        assert!(frags.len() > 2);
        let mut reassembler = Reassembler::new(Duration::from_secs(2));
        let now = Instant::now();
        let mut out = None;
        for frag in frags.iter().rev() {
            out = reassembler.push(now, &SRC, &DST, frag, &CONTEXTS).unwrap();
        }
        assert_eq!(out, Some(datagram));
    }

    #[test]
    fn fragment_edge_cases() {
        let datagram = big_udp(100);
        let compressed = compress(&datagram, &SRC, &DST, &CONTEXTS).unwrap();
        let size = datagram.len() as u16;
        assert_eq!(
            fragment(&compressed, size, 1, 200),
            vec![compressed.clone()]
        );
        assert!(fragment(&compressed, size, 1, 8).is_empty());
        assert!(fragment(&compressed, 3000, 1, 50).is_empty());
        assert!(fragment(&compressed, 10, 1, 50).is_empty());
    }

    #[test]
    fn bad_fragments_are_errors() {
        let mut reassembler = Reassembler::new(Duration::from_secs(2));
        let now = Instant::now();
        // FRAGN beyond the datagram size.
        let mut frag = Vec::new();
        FragHeader::Next {
            size: 64,
            tag: 1,
            offset: 64,
        }
        .emit(&mut frag);
        frag.extend_from_slice(&[0; 8]);
        assert!(reassembler.push(now, &SRC, &DST, &frag, &CONTEXTS).is_err());
        assert!(reassembler.push(now, &SRC, &DST, &[], &CONTEXTS).is_err());
        assert!(
            reassembler
                .push(now, &SRC, &DST, &[0x41, 0x60], &CONTEXTS)
                .is_err()
        );
        assert_eq!(reassembler.stats().errors, 3);
        for len in 0..80 {
            let data: Vec<u8> = (0..len).map(|i| (i * 41 + 0xc0) as u8).collect();
            fuzz_decode(&data);
        }
    }
}
