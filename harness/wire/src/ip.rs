//! IPv6, UDP and ICMPv6 echo: building and parsing whole packets (through `smoltcp::wire`), Thread
//! address derivation and classification.

use std::net::{Ipv6Addr, SocketAddrV6};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
};

use crate::WireError;
use crate::mac::ExtAddress;

/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of the UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// IPv6 next-header values used here.
pub const NEXT_HEADER_UDP: u8 = 17;
pub const NEXT_HEADER_ICMPV6: u8 = 58;

/// `ff02::1` link-local all nodes.
pub const LINK_LOCAL_ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// `ff02::2` link-local all routers.
pub const LINK_LOCAL_ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// `ff03::1` realm-local all nodes.
pub const REALM_LOCAL_ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff03, 0, 0, 0, 0, 0, 0, 1);
/// `ff03::2` realm-local all routers.
pub const REALM_LOCAL_ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff03, 0, 0, 0, 0, 0, 0, 2);
/// `ff03::fc` realm-local all MPL forwarders.
pub const REALM_LOCAL_ALL_MPL_FORWARDERS: Ipv6Addr = Ipv6Addr::new(0xff03, 0, 0, 0, 0, 0, 0, 0xfc);

/// Interface identifier from an extended address: the EUI-64 with the U/L bit (0x02 of byte 0)
/// flipped (RFC 4944 §6).
pub fn iid_from_ext(ext: &ExtAddress) -> [u8; 8] {
    let mut iid = ext.0;
    iid[0] ^= 0x02;
    iid
}

/// Inverse of [`iid_from_ext`].
pub fn ext_from_iid(iid: &[u8; 8]) -> ExtAddress {
    let mut ext = *iid;
    ext[0] ^= 0x02;
    ExtAddress(ext)
}

/// Interface identifier from a short address: `0000:00ff:fe00:XXXX`.
pub fn iid_from_short(short: u16) -> [u8; 8] {
    let [hi, lo] = short.to_be_bytes();
    [0, 0, 0, 0xff, 0xfe, 0, hi, lo]
}

/// The short address of an `0000:00ff:fe00:XXXX` IID (RLOC/ALOC form), if it is one.
pub fn short_from_iid(iid: &[u8; 8]) -> Option<u16> {
    (iid[..6] == [0, 0, 0, 0xff, 0xfe, 0]).then(|| u16::from_be_bytes([iid[6], iid[7]]))
}

/// An address from a /64 prefix and an IID.
pub fn from_prefix_iid(prefix: &[u8; 8], iid: &[u8; 8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets[..8].copy_from_slice(prefix);
    octets[8..].copy_from_slice(iid);
    Ipv6Addr::from(octets)
}

/// The /64 prefix of an address.
pub fn prefix64(addr: &Ipv6Addr) -> [u8; 8] {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&addr.octets()[..8]);
    prefix
}

/// The IID (low 64 bits) of an address.
pub fn iid(addr: &Ipv6Addr) -> [u8; 8] {
    let mut iid = [0u8; 8];
    iid.copy_from_slice(&addr.octets()[8..]);
    iid
}

/// `fe80::/64`, the prefix of every link-local address Thread derives.
pub(crate) const LINK_LOCAL_PREFIX: [u8; 8] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0];

/// `fe80::` + EUI-64 with the U/L bit flipped.
pub fn link_local_from_ext(ext: &ExtAddress) -> Ipv6Addr {
    from_prefix_iid(&LINK_LOCAL_PREFIX, &iid_from_ext(ext))
}

/// `fe80::ff:fe00:XXXX` (link-local address of a short address).
pub fn link_local_from_short(short: u16) -> Ipv6Addr {
    from_prefix_iid(&LINK_LOCAL_PREFIX, &iid_from_short(short))
}

/// Routing locator: `mesh-local-prefix::ff:fe00:rloc16`.
pub fn rloc(mesh_local_prefix: &[u8; 8], rloc16: u16) -> Ipv6Addr {
    from_prefix_iid(mesh_local_prefix, &iid_from_short(rloc16))
}

/// Anycast locator: `mesh-local-prefix::ff:fe00:fcXX` (aloc16 in 0xfc00..=0xfcff; 0xfc00 = leader).
pub fn aloc(mesh_local_prefix: &[u8; 8], aloc16: u16) -> Ipv6Addr {
    rloc(mesh_local_prefix, aloc16)
}

/// What an address is, from a Thread node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    Unspecified,
    Loopback,
    LinkLocal,
    /// Mesh-local routing locator with its RLOC16.
    MeshLocalRloc(u16),
    /// Mesh-local anycast locator with its ALOC16 (0xfc00..=0xfcff).
    MeshLocalAloc(u16),
    /// Mesh-local endpoint identifier (any other IID in the mesh-local prefix).
    MeshLocalEid,
    /// Multicast with its 4-bit scope (2 link-local, 3 realm-local, 5 site-local, 0xe global).
    Multicast {
        scope: u8,
    },
    /// Anything else (e.g. an on-mesh global address).
    Other,
}

/// Classify `addr` against the mesh-local prefix.
pub fn classify(addr: &Ipv6Addr, mesh_local_prefix: &[u8; 8]) -> AddressClass {
    if addr.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if addr.is_loopback() {
        return AddressClass::Loopback;
    }
    if let Some(scope) = multicast_scope(addr) {
        return AddressClass::Multicast { scope };
    }
    if addr.is_unicast_link_local() {
        return AddressClass::LinkLocal;
    }
    if prefix64(addr) == *mesh_local_prefix {
        return match short_from_iid(&iid(addr)) {
            Some(aloc16 @ 0xfc00..=0xfcff) => AddressClass::MeshLocalAloc(aloc16),
            Some(rloc16) => AddressClass::MeshLocalRloc(rloc16),
            None => AddressClass::MeshLocalEid,
        };
    }
    AddressClass::Other
}

/// The scope nibble of a multicast address, `None` if unicast.
pub fn multicast_scope(addr: &Ipv6Addr) -> Option<u8> {
    let octets = addr.octets();
    (octets[0] == 0xff).then_some(octets[1] & 0x0f)
}

fn udp_checksum_caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

fn ipv6_header(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: IpProtocol,
    payload_len: usize,
    hop_limit: u8,
) -> Vec<u8> {
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header,
        payload_len,
        hop_limit,
    };
    let mut out = vec![0u8; IPV6_HEADER_LEN + payload_len];
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
    out
}

/// A full IPv6 packet carrying one UDP datagram, checksum filled in.
/// Payloads longer than 65527 bytes are cut to fit the length fields.
pub fn udp_packet(src: SocketAddrV6, dst: SocketAddrV6, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let payload = payload
        .get(..usize::from(u16::MAX) - UDP_HEADER_LEN)
        .unwrap_or(payload);
    let udp_len = UDP_HEADER_LEN + payload.len();
    let mut out = ipv6_header(*src.ip(), *dst.ip(), IpProtocol::Udp, udp_len, hop_limit);
    let repr = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let mut udp = UdpPacket::new_unchecked(&mut out[IPV6_HEADER_LEN..]);
    repr.emit(
        &mut udp,
        &IpAddress::Ipv6(*src.ip()),
        &IpAddress::Ipv6(*dst.ip()),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &udp_checksum_caps(),
    );
    out
}

fn icmpv6_packet(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, repr: &Icmpv6Repr<'_>) -> Vec<u8> {
    let len = repr.buffer_len();
    let mut out = ipv6_header(src, dst, IpProtocol::Icmpv6, len, hop_limit);
    let mut icmp = Icmpv6Packet::new_unchecked(&mut out[IPV6_HEADER_LEN..]);
    repr.emit(&src, &dst, &mut icmp, &udp_checksum_caps());
    out
}

/// A full IPv6 packet with an ICMPv6 echo request.
pub fn echo_request(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    identifier: u16,
    sequence: u16,
    data: &[u8],
) -> Vec<u8> {
    let data = data.get(..usize::from(u16::MAX) - 8).unwrap_or(data);
    icmpv6_packet(
        src,
        dst,
        hop_limit,
        &Icmpv6Repr::EchoRequest {
            ident: identifier,
            seq_no: sequence,
            data,
        },
    )
}

/// A full IPv6 packet with an ICMPv6 echo reply.
pub fn echo_reply(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    identifier: u16,
    sequence: u16,
    data: &[u8],
) -> Vec<u8> {
    let data = data.get(..usize::from(u16::MAX) - 8).unwrap_or(data);
    icmpv6_packet(
        src,
        dst,
        hop_limit,
        &Icmpv6Repr::EchoReply {
            ident: identifier,
            seq_no: sequence,
            data,
        },
    )
}

/// What an IPv6 packet carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: Vec<u8>,
    },
    EchoRequest {
        identifier: u16,
        sequence: u16,
        data: Vec<u8>,
    },
    EchoReply {
        identifier: u16,
        sequence: u16,
        data: Vec<u8>,
    },
    /// Any other next header, or ICMPv6 other than echo; `payload` is the IPv6 payload.
    Other { next_header: u8, payload: Vec<u8> },
}

/// A parsed IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub body: Body,
}

/// Parse a full IPv6 packet; UDP and ICMPv6 checksums are verified. Extension headers are not
/// followed (the packet is reported as [`Body::Other`]).
pub fn parse(ipv6: &[u8]) -> Result<Packet, WireError> {
    let packet = Ipv6Packet::new_checked(ipv6)
        .map_err(|_| WireError::truncated("ipv6 packet", IPV6_HEADER_LEN, ipv6.len()))?;
    if packet.version() != 6 {
        return Err(WireError::malformed("ipv6 header", "version is not 6"));
    }
    let src = packet.src_addr();
    let dst = packet.dst_addr();
    let payload = packet.payload();
    let next_header = u8::from(packet.next_header());
    let body = match next_header {
        NEXT_HEADER_UDP => {
            let udp = UdpPacket::new_checked(payload)
                .map_err(|_| WireError::truncated("udp header", UDP_HEADER_LEN, payload.len()))?;
            if usize::from(udp.len()) != payload.len() {
                return Err(WireError::malformed(
                    "udp header",
                    "length does not match ipv6 payload",
                ));
            }
            if !udp.verify_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst)) {
                return Err(WireError::BadChecksum("udp"));
            }
            Body::Udp {
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
                payload: udp.payload().to_vec(),
            }
        }
        NEXT_HEADER_ICMPV6 => {
            let icmp = Icmpv6Packet::new_checked(payload)
                .map_err(|_| WireError::truncated("icmpv6 header", 8, payload.len()))?;
            if !icmp.verify_checksum(&src, &dst) {
                return Err(WireError::BadChecksum("icmpv6"));
            }
            match Icmpv6Repr::parse(&src, &dst, &icmp, &udp_checksum_caps()) {
                Ok(Icmpv6Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                }) => Body::EchoRequest {
                    identifier: ident,
                    sequence: seq_no,
                    data: data.to_vec(),
                },
                Ok(Icmpv6Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                }) => Body::EchoReply {
                    identifier: ident,
                    sequence: seq_no,
                    data: data.to_vec(),
                },
                _ => Body::Other {
                    next_header,
                    payload: payload.to_vec(),
                },
            }
        }
        _ => Body::Other {
            next_header,
            payload: payload.to_vec(),
        },
    };
    Ok(Packet {
        src,
        dst,
        hop_limit: packet.hop_limit(),
        body,
    })
}

/// Fill in the UDP checksum of a full IPv6+UDP packet (used after 6LoWPAN decompression of a
/// datagram whose checksum was elided).
/// `ip_offset` is where the IPv6 header whose addresses go into the pseudo-header starts (0, or
/// the inner header of a tunnel), `udp_offset` where the UDP header starts.
pub(crate) fn fill_udp_checksum(ipv6: &mut [u8], ip_offset: usize, udp_offset: usize) {
    if udp_offset < ip_offset + IPV6_HEADER_LEN || ipv6.len() < udp_offset + UDP_HEADER_LEN {
        return;
    }
    let (header, rest) = ipv6.split_at_mut(udp_offset);
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&header[ip_offset + 8..ip_offset + 24]);
    dst.copy_from_slice(&header[ip_offset + 24..ip_offset + 40]);
    let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
    let available = rest.len();
    let mut udp = UdpPacket::new_unchecked(rest);
    if usize::from(udp.len()) > available || usize::from(udp.len()) < UDP_HEADER_LEN {
        return;
    }
    udp.set_checksum(0);
    udp.fill_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst));
}

/// Fuzzing entry point.
pub fn fuzz_parse(data: &[u8]) {
    let _ = parse(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ML_PREFIX: [u8; 8] = [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0x00];

    #[test]
    fn thread_addresses() {
        let ext: ExtAddress = "166e0a0000000007".parse().unwrap();
        assert_eq!(
            link_local_from_ext(&ext),
            "fe80::146e:a00:0:7".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(ext_from_iid(&iid_from_ext(&ext)), ext);
        assert_eq!(
            rloc(&ML_PREFIX, 0x2001),
            "fdde:ad00:beef:0:0:ff:fe00:2001"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        assert_eq!(
            aloc(&ML_PREFIX, 0xfc00),
            "fdde:ad00:beef:0:0:ff:fe00:fc00"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        assert_eq!(short_from_iid(&iid_from_short(0xabcd)), Some(0xabcd));
        assert_eq!(short_from_iid(&iid_from_ext(&ext)), None);
    }

    #[test]
    fn classification() {
        let ext: ExtAddress = "166e0a0000000007".parse().unwrap();
        let cases = [
            (Ipv6Addr::UNSPECIFIED, AddressClass::Unspecified),
            (Ipv6Addr::LOCALHOST, AddressClass::Loopback),
            (link_local_from_ext(&ext), AddressClass::LinkLocal),
            (
                rloc(&ML_PREFIX, 0x0400),
                AddressClass::MeshLocalRloc(0x0400),
            ),
            (
                aloc(&ML_PREFIX, 0xfc01),
                AddressClass::MeshLocalAloc(0xfc01),
            ),
            (
                from_prefix_iid(&ML_PREFIX, &[1, 2, 3, 4, 5, 6, 7, 8]),
                AddressClass::MeshLocalEid,
            ),
            (LINK_LOCAL_ALL_NODES, AddressClass::Multicast { scope: 2 }),
            (
                REALM_LOCAL_ALL_MPL_FORWARDERS,
                AddressClass::Multicast { scope: 3 },
            ),
            ("2001:db8::1".parse().unwrap(), AddressClass::Other),
        ];
        for (addr, class) in cases {
            assert_eq!(classify(&addr, &ML_PREFIX), class, "{addr}");
        }
    }

    #[test]
    fn udp_round_trip_and_checksum() {
        let src = SocketAddrV6::new(rloc(&ML_PREFIX, 0x2001), 19789, 0, 0);
        let dst = SocketAddrV6::new(rloc(&ML_PREFIX, 0x2000), 5684, 0, 0);
        let packet = udp_packet(src, dst, 64, b"hello");
        assert_eq!(packet.len(), 40 + 8 + 5);
        let parsed = parse(&packet).unwrap();
        assert_eq!(
            (parsed.src, parsed.dst, parsed.hop_limit),
            (*src.ip(), *dst.ip(), 64)
        );
        assert_eq!(
            parsed.body,
            Body::Udp {
                src_port: 19789,
                dst_port: 5684,
                payload: b"hello".to_vec()
            }
        );
        let mut corrupted = packet.clone();
        corrupted[50] ^= 0x20;
        assert_eq!(parse(&corrupted), Err(WireError::BadChecksum("udp")));
        // Zeroed checksum restored by fill_udp_checksum.
        let mut zeroed = packet.clone();
        zeroed[46] = 0;
        zeroed[47] = 0;
        fill_udp_checksum(&mut zeroed, 0, IPV6_HEADER_LEN);
        assert_eq!(zeroed, packet);
    }

    #[test]
    fn echo_round_trip() {
        let a = link_local_from_short(1);
        let b = link_local_from_short(2);
        let request = echo_request(a, b, 255, 0x1234, 7, &[0xaa; 10]);
        assert_eq!(
            parse(&request).unwrap().body,
            Body::EchoRequest {
                identifier: 0x1234,
                sequence: 7,
                data: vec![0xaa; 10]
            }
        );
        let reply = echo_reply(b, a, 64, 0x1234, 7, &[0xaa; 10]);
        let parsed = parse(&reply).unwrap();
        assert_eq!(parsed.src, b);
        assert!(matches!(parsed.body, Body::EchoReply { sequence: 7, .. }));
        let mut corrupted = reply.clone();
        corrupted[45] ^= 1;
        assert_eq!(parse(&corrupted), Err(WireError::BadChecksum("icmpv6")));
    }

    #[test]
    fn garbage_does_not_panic() {
        for len in 0..60 {
            let data: Vec<u8> = (0..len).map(|i| (i * 53 + 0x60) as u8).collect();
            fuzz_parse(&data);
        }
        assert!(parse(&[0x60; 39]).is_err());
    }
}
