//! IPHC (RFC 6282 §3) and UDP NHC (§4.3).

use crate::WireError;
use crate::mac::Address;

use super::Context;

/// Compress a full IPv6 packet (header + payload) into IPHC (+UDP NHC when next header is UDP).
pub fn compress(
    _ipv6: &[u8],
    _mac_src: &Address,
    _mac_dst: &Address,
    _contexts: &[Context],
) -> Result<Vec<u8>, WireError> {
    Err(WireError::unsupported(
        "iphc",
        "compression not available yet",
    ))
}

/// Inverse: IPHC(+NHC)-compressed bytes -> full IPv6 packet (UDP length/checksum restored).
pub fn decompress(
    _lowpan: &[u8],
    _mac_src: &Address,
    _mac_dst: &Address,
    _contexts: &[Context],
) -> Result<Vec<u8>, WireError> {
    Err(WireError::unsupported(
        "iphc",
        "decompression not available yet",
    ))
}

pub(crate) struct FirstFragment {
    pub(crate) bytes: Vec<u8>,
    pub(crate) udp_checksum_elided: bool,
}

pub(crate) fn decompress_first_fragment(
    _lowpan: &[u8],
    _mac_src: &Address,
    _mac_dst: &Address,
    _contexts: &[Context],
    _datagram_size: usize,
) -> Result<FirstFragment, WireError> {
    Err(WireError::unsupported(
        "iphc",
        "decompression not available yet",
    ))
}
