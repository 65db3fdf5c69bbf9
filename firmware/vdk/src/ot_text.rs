//! Values as the OpenThread CLI prints them, shared by the CLI and the CoAP(S) applications that
//! report on it.

use std::fmt::Write as _;
use std::net::Ipv6Addr;

/// IPv6 address as OpenThread prints it: eight groups in lowercase hex without `::` compression
/// (`OutputIp6Address`), e.g. `fdde:ad00:beef:0:0:ff:fe00:800`.
pub fn ot_ip6(a: &Ipv6Addr) -> String {
    let mut out = String::with_capacity(39);
    for (i, seg) in a.segments().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{seg:x}");
    }
    out
}
