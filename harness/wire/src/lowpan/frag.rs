//! FRAG1/FRAGN fragmentation (RFC 4944 §5.3).

use super::{FragHeader, iphc};

/// Largest datagram size the 11-bit size field can carry.
pub const MAX_DATAGRAM_SIZE: u16 = 0x07ff;

/// Split one compressed datagram into MAC payloads of at most `max_payload` bytes (FRAG1/FRAGN as
/// needed). `datagram_size` is the size of the uncompressed IPv6 datagram; fragment offsets count
/// uncompressed bytes, so FRAG1 carries all compressed headers and ends where the uncompressed
/// offset is a multiple of 8.
///
/// A datagram that fits is returned unchanged as the only element. An empty result means it cannot
/// be fragmented: `datagram_size` over 2047 or smaller than the compressed bytes, or `max_payload`
/// too small for FRAG1 to hold the compressed headers.
pub fn fragment(
    compressed: &[u8],
    datagram_size: u16,
    tag: u16,
    max_payload: usize,
) -> Vec<Vec<u8>> {
    if compressed.len() <= max_payload {
        return vec![compressed.to_vec()];
    }
    let size = usize::from(datagram_size);
    if datagram_size > MAX_DATAGRAM_SIZE || size < compressed.len() {
        return Vec::new();
    }
    // Bytes compression saved; compressed index i is uncompressed offset i + saved past the headers.
    let saved = size - compressed.len();
    let headers_len = iphc::compressed_header_len(compressed).unwrap_or(0);

    let first_room = max_payload.saturating_sub(4);
    let first_len = ((first_room + saved) / 8 * 8).saturating_sub(saved);
    let next_room = max_payload.saturating_sub(5) / 8 * 8;
    if first_len == 0 || first_len < headers_len || next_room == 0 {
        return Vec::new();
    }

    let mut fragments = Vec::new();
    let mut first = Vec::with_capacity(4 + first_len);
    FragHeader::First {
        size: datagram_size,
        tag,
    }
    .emit(&mut first);
    first.extend_from_slice(&compressed[..first_len]);
    fragments.push(first);

    let mut pos = first_len;
    while pos < compressed.len() {
        let end = (pos + next_room).min(compressed.len());
        let mut next = Vec::with_capacity(5 + end - pos);
        FragHeader::Next {
            size: datagram_size,
            tag,
            offset: (pos + saved) as u16,
        }
        .emit(&mut next);
        next.extend_from_slice(&compressed[pos..end]);
        fragments.push(next);
        pos = end;
    }
    fragments
}
