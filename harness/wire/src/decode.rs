//! A stateful decoder of sniffed Thread traffic: MAC frames in, UDP datagrams out.
//!
//! Given the network key and the mesh-local prefix it decrypts MAC frames (level 5, key id mode 1,
//! trying the keys of the neighbouring key sequences), reassembles 6LoWPAN fragments, decompresses
//! IPHC and yields every UDP datagram. Frames with a short source address need that node's
//! extended address for the nonce: the decoder learns the mapping from MLE messages (sent from
//! link-local addresses with the extended MAC source) whose Source Address / Address16 TLVs name
//! the node's RLOC16, and from frames whose extended MAC source carries an RLOC IPv6 source.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use crate::WireError;
use crate::ip::{self, AddressClass, Body};
use crate::lowpan::{Context, Reassembler, ReassemblyStats};
use crate::mac::{self, Address, ExtAddress, FrameType, SecurityHeader};
use crate::security::{self, ThreadKeys};
use crate::sniffer::SnifferFrame;

/// OpenThread's reassembly timeout.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(2);

/// MLE TLV types the decoder reads.
const MLE_TLV_SOURCE_ADDRESS: u8 = 0;
const MLE_TLV_ADDRESS16: u8 = 10;

/// One UDP datagram seen on the air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// Sniffer time of the frame that completed the datagram.
    pub timestamp_us: u64,
    pub src: SocketAddrV6,
    pub dst: SocketAddrV6,
    pub hop_limit: u8,
    pub payload: Vec<u8>,
}

/// Decoder counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeStats {
    /// Frames pushed.
    pub frames: u64,
    /// Acks, beacons and MAC commands (not decoded further).
    pub non_data: u64,
    /// Data frames without MAC security (MLE, discovery).
    pub unsecured: u64,
    /// Secured data frames decrypted.
    pub decrypted: u64,
    /// MAC retransmissions (secured: frame counter not above the last one seen from that source
    /// under that key; unsecured: same bytes as the previous frame from that source), skipped.
    pub duplicates: u64,
    /// Secured frames whose MIC did not verify with any candidate key.
    pub bad_mic: u64,
    /// Secured frames from a short address whose extended address is not known yet.
    pub unknown_source: u64,
    /// Frames or payloads that could not be parsed, decompressed or reassembled.
    pub undecodable: u64,
    /// IPv6 datagrams delivered by 6LoWPAN.
    pub datagrams: u64,
    /// Of those, UDP datagrams.
    pub udp: u64,
    /// MLE messages decrypted.
    pub mle_decrypted: u64,
    /// Short-to-extended address mappings learned (or changed).
    pub addresses_learned: u64,
    /// 6LoWPAN reassembly counters (missing fragments, overlaps, expired, ...).
    pub reassembly: ReassemblyStats,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Decoder {
    network_key: [u8; 16],
    key_sequence: u32,
    keys: HashMap<u32, ThreadKeys>,
    mesh_local_prefix: [u8; 8],
    contexts: Vec<Context>,
    neighbors: HashMap<u16, ExtAddress>,
    /// Highest frame counter seen per (source, key sequence).
    frame_counters: HashMap<(ExtAddress, u32), u32>,
    /// Last unsecured frame per source address.
    last_unsecured: HashMap<Address, Vec<u8>>,
    reassembler: Reassembler,
    /// Sniffer timestamps are mapped onto this instant for the reassembly timeout.
    epoch: Instant,
    stats: DecodeStats,
}

impl Decoder {
    /// `key_sequence`: the network's current key sequence (frames under the previous and next
    /// one decrypt too). The mesh-local prefix is 6LoWPAN context 0.
    pub fn new(network_key: [u8; 16], key_sequence: u32, mesh_local_prefix: [u8; 8]) -> Self {
        Decoder {
            network_key,
            key_sequence,
            keys: HashMap::new(),
            mesh_local_prefix,
            contexts: vec![Context {
                id: 0,
                prefix: mesh_local_prefix,
            }],
            neighbors: HashMap::new(),
            frame_counters: HashMap::new(),
            last_unsecured: HashMap::new(),
            reassembler: Reassembler::new(REASSEMBLY_TIMEOUT),
            epoch: Instant::now(),
            stats: DecodeStats::default(),
        }
    }

    /// Add (or replace) a 6LoWPAN context, e.g. an on-mesh prefix from network data.
    pub fn add_context(&mut self, context: Context) {
        self.contexts.retain(|c| c.id != context.id);
        self.contexts.push(context);
    }

    /// Tell the decoder the extended address behind a short address.
    pub fn learn(&mut self, short: u16, ext: ExtAddress) {
        if short >= 0xfffe {
            return;
        }
        if self.neighbors.insert(short, ext) != Some(ext) {
            self.stats.addresses_learned += 1;
        }
    }

    /// The short -> extended mappings known so far.
    pub fn neighbors(&self) -> &HashMap<u16, ExtAddress> {
        &self.neighbors
    }

    /// The key sequence currently assumed (it follows frames secured with the next one).
    pub fn key_sequence(&self) -> u32 {
        self.key_sequence
    }

    pub fn stats(&self) -> DecodeStats {
        DecodeStats {
            reassembly: self.reassembler.stats(),
            ..self.stats
        }
    }

    fn keys(&mut self, sequence: u32) -> ThreadKeys {
        let network_key = self.network_key;
        *self
            .keys
            .entry(sequence)
            .or_insert_with(|| security::derive_keys(&network_key, sequence))
    }

    /// Decode one sniffed frame.
    pub fn push(&mut self, frame: &SnifferFrame) -> Option<UdpDatagram> {
        self.push_psdu(frame.timestamp_us, &frame.psdu)
    }

    /// Decode one frame read back from a pcap capture (see [`crate::pcap::read_frames`]).
    pub fn push_captured(&mut self, frame: &crate::pcap::CapturedFrame) -> Option<UdpDatagram> {
        let timestamp_us = u64::try_from(frame.timestamp.as_micros()).unwrap_or(u64::MAX);
        self.push_psdu(timestamp_us, &frame.psdu)
    }

    /// Decode one PSDU (without FCS) captured at `timestamp_us`; yields UDP datagrams only.
    pub fn push_psdu(&mut self, timestamp_us: u64, psdu: &[u8]) -> Option<UdpDatagram> {
        let packet = self.push_packet(timestamp_us, psdu)?;
        let Body::Udp {
            src_port,
            dst_port,
            payload,
        } = packet.body
        else {
            return None;
        };
        Some(UdpDatagram {
            timestamp_us,
            src: SocketAddrV6::new(packet.src, src_port, 0, 0),
            dst: SocketAddrV6::new(packet.dst, dst_port, 0, 0),
            hop_limit: packet.hop_limit,
            payload,
        })
    }

    /// Decode one PSDU (without FCS) captured at `timestamp_us`; yields every IPv6 packet (UDP,
    /// ICMPv6 echo, others) once complete.
    pub fn push_packet(&mut self, timestamp_us: u64, psdu: &[u8]) -> Option<ip::Packet> {
        self.stats.frames += 1;
        let now = self
            .epoch
            .checked_add(Duration::from_micros(timestamp_us))
            .unwrap_or(self.epoch);
        // Sniffer time drives the reassembly timeout, whatever kind of frame brings it.
        self.reassembler.expire(now);
        let parsed = match mac::parse(psdu) {
            Ok(parsed) => parsed,
            Err(_) => {
                self.stats.undecodable += 1;
                return None;
            }
        };
        if parsed.repr.frame_type != FrameType::Data {
            self.stats.non_data += 1;
            return None;
        }
        let repr = parsed.repr.clone();
        let payload = match repr.security {
            None => {
                if self
                    .last_unsecured
                    .get(&repr.src)
                    .is_some_and(|last| last == psdu)
                {
                    self.stats.duplicates += 1;
                    return None;
                }
                self.last_unsecured.insert(repr.src, psdu.to_vec());
                self.stats.unsecured += 1;
                parsed.payload.to_vec()
            }
            Some(security) => self.decrypt(psdu, &parsed, security)?,
        };
        let datagram =
            match self
                .reassembler
                .push(now, &repr.src, &repr.dst, &payload, &self.contexts)
            {
                Ok(Some(datagram)) => datagram,
                Ok(None) => return None,
                Err(_) => {
                    self.stats.undecodable += 1;
                    return None;
                }
            };
        self.stats.datagrams += 1;
        let Ok(packet) = ip::parse(&datagram) else {
            self.stats.undecodable += 1;
            return None;
        };
        if let Address::Extended(ext) = repr.src
            && let AddressClass::MeshLocalRloc(rloc16) =
                ip::classify(&packet.src, &self.mesh_local_prefix)
            && ip::iid(&packet.src) == ip::iid_from_short(rloc16)
            && rloc16 < 0xfc00
        {
            self.learn(rloc16, ext);
        }
        if let Body::Udp {
            src_port,
            dst_port,
            payload,
        } = &packet.body
        {
            if *src_port == security::MLE_PORT && *dst_port == security::MLE_PORT {
                self.learn_from_mle(&packet.src, &packet.dst, payload);
            }
            self.stats.udp += 1;
        }
        Some(packet)
    }

    /// `parsed`, `security`: `psdu` and its auxiliary security header, as
    /// [`Decoder::push_packet`] parsed them.
    fn decrypt(
        &mut self,
        psdu: &[u8],
        parsed: &mac::ParsedFrame<'_>,
        security: SecurityHeader,
    ) -> Option<Vec<u8>> {
        let ext = match &parsed.repr.src {
            Address::Extended(ext) => *ext,
            Address::Short(short) => match self.neighbors.get(short) {
                Some(ext) => *ext,
                None => {
                    self.stats.unknown_source += 1;
                    return None;
                }
            },
            Address::Absent => {
                self.stats.unknown_source += 1;
                return None;
            }
        };
        let sequence = match (security.key_id_mode, security.key_index) {
            (1, Some(index)) => security::key_sequence_for_index(self.key_sequence, index),
            _ => None,
        };
        let Some(sequence) = sequence else {
            self.stats.undecodable += 1;
            return None;
        };
        let keys = self.keys(sequence);
        match security::unsecure_parsed(parsed, psdu, &keys.mac_key, &ext) {
            Ok(plaintext) => {
                // Checked after authentication, so a forged counter cannot mask real frames.
                let key = (ext, sequence);
                if self
                    .frame_counters
                    .get(&key)
                    .is_some_and(|&last| security.frame_counter <= last)
                {
                    self.stats.duplicates += 1;
                    return None;
                }
                self.frame_counters.insert(key, security.frame_counter);
                self.stats.decrypted += 1;
                if sequence == self.key_sequence.wrapping_add(1) {
                    // The network switched keys (OpenThread switches on the first frame secured
                    // with the next key sequence).
                    self.key_sequence = sequence;
                }
                Some(plaintext)
            }
            Err(WireError::BadMic) => {
                self.stats.bad_mic += 1;
                None
            }
            Err(_) => {
                self.stats.undecodable += 1;
                None
            }
        }
    }

    /// Learn RLOC16 -> extended address from an MLE message: the Source Address TLV names the
    /// sender's RLOC16 and its link-local source carries its extended address; the Address16 TLV
    /// (Child ID Response) names the receiver's new RLOC16.
    fn learn_from_mle(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr, udp_payload: &[u8]) {
        let Ok(Some(header)) = security::mle_security_header(udp_payload) else {
            return;
        };
        let Some(sequence) = security::mle_key_sequence(&header) else {
            return;
        };
        let keys = self.keys(sequence);
        let Ok((_, message)) = security::mle_unsecure(udp_payload, src, dst, &keys.mle_key) else {
            return;
        };
        self.stats.mle_decrypted += 1;
        // Command type, then TLVs (type, length, value).
        let mut tlvs = message.get(1..).unwrap_or(&[]);
        while let [tlv_type, len, rest @ ..] = tlvs {
            let len = usize::from(*len);
            let Some(value) = rest.get(..len) else {
                break;
            };
            let rloc16 = match value {
                [hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
                _ => None,
            };
            match (*tlv_type, rloc16) {
                (MLE_TLV_SOURCE_ADDRESS, Some(rloc16)) if src.is_unicast_link_local() => {
                    self.learn(rloc16, ip::ext_from_iid(&ip::iid(src)));
                }
                (MLE_TLV_ADDRESS16, Some(rloc16)) if dst.is_unicast_link_local() => {
                    self.learn(rloc16, ip::ext_from_iid(&ip::iid(dst)));
                }
                _ => {}
            }
            tlvs = rest.get(len..).unwrap_or(&[]);
        }
    }
}

/// Fuzzing entry point: feed `data` split at 0x7e bytes as PSDUs.
pub fn fuzz_decoder(data: &[u8]) {
    let mut decoder = Decoder::new([0; 16], 0, [0xfd, 0, 0, 0, 0, 0, 0, 0]);
    for (i, psdu) in data.split(|&b| b == 0x7e).enumerate() {
        let _ = decoder.push_psdu(i as u64 * 1000, psdu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lowpan;
    use crate::mac::{FrameRepr, SecurityHeader};

    const NETWORK_KEY: [u8; 16] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];
    /// Mesh-local prefix of OpenThread's test network (fd00:db8::/64).
    const ML_PREFIX: [u8; 8] = [0xfd, 0x00, 0x0d, 0xb8, 0, 0, 0, 0];
    /// The mesh-local prefix as 6LoWPAN context 0.
    const ML_CONTEXT: Context = Context {
        id: 0,
        prefix: ML_PREFIX,
    };

    use crate::unhex;

    /// protocols.md §2: the secured data frame from 0x2001 (ext 166e0a0000000007).
    const THREAD_FRAME: &str = "699868cefa00200120 0d0000000001 \
        b55a0d8e185cb106c46f7d6bb54a8714aedd8eb737622748c9530c4431598ba28359a143 74e02af6";

    /// A data frame (PAN 0xface) secured as Thread does under `key_sequence`, from `mac_src`
    /// whose extended address (the nonce source) is `ext`.
    fn secured_frame(
        sequence: u8,
        mac_src: Address,
        mac_dst: Address,
        ext: &ExtAddress,
        frame_counter: u32,
        key_sequence: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let keys = security::derive_keys(&NETWORK_KEY, key_sequence);
        let repr = FrameRepr::data(
            sequence,
            0xface,
            mac_dst,
            mac_src,
            Some(SecurityHeader::thread_mac(
                frame_counter,
                security::key_index(key_sequence),
            )),
        );
        security::secure(&repr, payload, &keys.mac_key, ext).unwrap()
    }

    #[test]
    fn needs_the_source_extended_address_then_decodes() {
        let mut decoder = Decoder::new(NETWORK_KEY, 0, ML_PREFIX);
        let frame = unhex(THREAD_FRAME);
        assert_eq!(decoder.push_psdu(1, &frame), None);
        assert_eq!(decoder.stats().unknown_source, 1);

        decoder.learn(0x2001, "166e0a0000000007".parse().unwrap());
        // Through a capture file and back.
        let mut writer =
            crate::pcap::PcapWriter::new(Vec::new(), crate::pcap::LinkType::Tap).unwrap();
        let sniffed = SnifferFrame {
            psdu: frame.clone(),
            rssi_dbm: -60,
            lqi: 100,
            timestamp_us: 2,
        };
        writer.write_frame(&sniffed, 11).unwrap();
        let captured = crate::pcap::read_frames(&writer.into_inner()[..]).unwrap();
        let datagram = decoder.push_captured(&captured[0]).unwrap();
        assert_eq!(datagram.timestamp_us, 2);
        assert_eq!(
            datagram.src,
            SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x2001), 19789, 0, 0)
        );
        assert_eq!(
            datagram.dst,
            SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x2000), 19789, 0, 0)
        );
        let coap = crate::coap::decode(&datagram.payload).unwrap();
        assert_eq!(crate::coap::uri_path(&coap), "a/as");
        let stats = decoder.stats();
        assert_eq!((stats.decrypted, stats.udp, stats.bad_mic), (1, 1, 0));

        // A wrong mapping gives a bad MIC, not garbage.
        decoder.learn(0x2001, "166e0a0000000008".parse().unwrap());
        assert_eq!(decoder.push_psdu(3, &frame), None);
        assert_eq!(decoder.stats().bad_mic, 1);
    }

    /// An MLE Advertisement from OpenThread's test_crypto.py vector, carried in an unsecured MAC
    /// data frame from the sender's extended address to broadcast: its Source Address TLV (0x0000)
    /// teaches the decoder the mapping.
    fn mle_advertisement_frame() -> Vec<u8> {
        let src: Ipv6Addr = "fe80::235:cc94:d77a:07e8".parse().unwrap();
        let dst: Ipv6Addr = "ff02::2".parse().unwrap();
        let mle = unhex(
            "00 15 15000400 00000000 01 \
             9a5a9a5bba259c5e58a27e7574ef79bc4fa3f9aea834f6f237219360 e1b5a253",
        );
        let ipv6 = ip::udp_packet(
            SocketAddrV6::new(src, 19788, 0, 0),
            SocketAddrV6::new(dst, 19788, 0, 0),
            255,
            &mle,
        );
        let ext = ip::ext_from_iid(&ip::iid(&src));
        let mac_src = Address::Extended(ext);
        let mac_dst = Address::Short(0xffff);
        let compressed = lowpan::compress(&ipv6, &mac_src, &mac_dst, &[ML_CONTEXT]).unwrap();
        FrameRepr::data(1, 0xface, mac_dst, mac_src, None).emit(&compressed)
    }

    #[test]
    fn learns_rloc16_from_mle_and_decrypts_later_frames() {
        let mut decoder = Decoder::new(NETWORK_KEY, 0, ML_PREFIX);
        let datagram = decoder.push_psdu(10, &mle_advertisement_frame()).unwrap();
        assert_eq!(datagram.dst.port(), 19788);
        let ext: ExtAddress = "0035cc94d77a07e8".parse().unwrap();
        assert_eq!(decoder.neighbors().get(&0x0000), Some(&ext));
        let stats = decoder.stats();
        assert_eq!((stats.unsecured, stats.mle_decrypted), (1, 1));

        // Now a secured frame from short 0x0000 decrypts with the learned nonce source.
        let ipv6 = ip::udp_packet(
            SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x0000), 5684, 0, 0),
            SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x0400), 5684, 0, 0),
            64,
            b"dtls record",
        );
        let (mac_src, mac_dst) = (Address::Short(0x0000), Address::Short(0x0400));
        let compressed = lowpan::compress(&ipv6, &mac_src, &mac_dst, &[ML_CONTEXT]).unwrap();
        let frame = secured_frame(2, mac_src, mac_dst, &ext, 7, 0, &compressed);
        let datagram = decoder.push_psdu(20, &frame).unwrap();
        assert_eq!(datagram.payload, b"dtls record");
        assert_eq!(datagram.src.port(), 5684);
    }

    #[test]
    fn follows_key_switch_and_reassembles() {
        let mut decoder = Decoder::new(NETWORK_KEY, 4, ML_PREFIX);
        let ext: ExtAddress = "1122334455667788".parse().unwrap();
        decoder.learn(0x0c00, ext);
        let payload: Vec<u8> = (0..300).map(|i| i as u8).collect();
        let ipv6 = ip::udp_packet(
            SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x0c00), 49153, 0, 0),
            SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x0400), 5684, 0, 0),
            64,
            &payload,
        );
        let (mac_src, mac_dst) = (Address::Short(0x0c00), Address::Short(0x0400));
        let compressed = lowpan::compress(&ipv6, &mac_src, &mac_dst, &[ML_CONTEXT]).unwrap();
        let fragments = lowpan::fragment(&compressed, ipv6.len() as u16, 77, 90);
        assert!(fragments.len() >= 4);
        // Key sequence 5: the next one.
        let mut out = None;
        for (i, fragment) in fragments.iter().enumerate() {
            let frame = secured_frame(i as u8, mac_src, mac_dst, &ext, 100 + i as u32, 5, fragment);
            out = decoder.push_psdu(1000 * i as u64, &frame);
        }
        assert_eq!(out.unwrap().payload, payload);
        assert_eq!(decoder.key_sequence(), 5);
        assert_eq!(decoder.stats().reassembly.reassembled, 1);

        // A lost fragment shows up as a missing fragment once the timeout passes.
        for (i, fragment) in fragments.iter().enumerate().skip(1) {
            let frame = secured_frame(i as u8, mac_src, mac_dst, &ext, 200 + i as u32, 5, fragment);
            assert_eq!(decoder.push_psdu(10_000_000 + i as u64, &frame), None);
        }
        decoder.push_psdu(20_000_000, &[0x02, 0x00, 0x01]); // an ack, later
        let stats = decoder.stats();
        assert_eq!(stats.reassembly.expired, 1);
        assert_eq!(stats.reassembly.missing_fragments, 1);
        assert_eq!(stats.non_data, 1);
    }

    #[test]
    fn yields_echo_requests_as_packets() {
        let mut decoder = Decoder::new(NETWORK_KEY, 0, ML_PREFIX);
        let ext: ExtAddress = "1122334455667788".parse().unwrap();
        let (src, dst) = (
            ip::link_local_from_ext(&ext),
            ip::link_local_from_short(0x0400),
        );
        let ipv6 = ip::echo_request(src, dst, 64, 0x77, 3, b"ping");
        let mac_src = Address::Extended(ext);
        let mac_dst = Address::Short(0x0400);
        let compressed = lowpan::compress(&ipv6, &mac_src, &mac_dst, &[]).unwrap();
        let frame = secured_frame(9, mac_src, mac_dst, &ext, 1, 0, &compressed);
        let packet = decoder.push_packet(5, &frame).unwrap();
        assert_eq!((packet.src, packet.dst), (src, dst));
        assert_eq!(
            packet.body,
            Body::EchoRequest {
                identifier: 0x77,
                sequence: 3,
                data: b"ping".to_vec()
            }
        );
        // A retransmission of the same frame is skipped.
        assert_eq!(decoder.push_packet(6, &frame), None);
        let stats = decoder.stats();
        assert_eq!((stats.datagrams, stats.udp, stats.duplicates), (1, 0, 1));
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut decoder = Decoder::new(NETWORK_KEY, 0, ML_PREFIX);
        assert_eq!(decoder.push_psdu(0, &[]), None);
        assert_eq!(decoder.push_psdu(0, &[0x41, 0xd8, 0x01]), None);
        assert_eq!(decoder.stats().undecodable, 2);
        for len in 0..100 {
            let data: Vec<u8> = (0..len).map(|i| (i * 89 + 0x41) as u8).collect();
            fuzz_decoder(&data);
        }
    }
}
