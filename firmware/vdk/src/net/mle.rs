//! Mesh Link Establishment messages (UDP port 19788, link-local): command type and TLVs.
//!
//! As in Thread, the stack secures them at the MLE layer (security suite 0, AES-CCM* with the MLE
//! key, key id mode 2, via `ot_hil_wire::security::mle_secure`) and sends them in MAC frames
//! without MAC security. Command and TLV numbers are Thread's (Thread 1.3 §4.3, §4.4); this module
//! only encodes the command + TLVs part.

use std::net::Ipv6Addr;

use super::NetError;

/// The MLE UDP port.
pub const PORT: u16 = 19788;

/// MLE command types.
pub mod command {
    pub const ADVERTISEMENT: u8 = 4;
    pub const PARENT_REQUEST: u8 = 9;
    pub const PARENT_RESPONSE: u8 = 10;
    pub const CHILD_ID_REQUEST: u8 = 11;
    pub const CHILD_ID_RESPONSE: u8 = 12;
}

/// MLE TLV types.
pub mod tlv {
    pub const SOURCE_ADDRESS: u8 = 0;
    pub const MODE: u8 = 1;
    pub const TIMEOUT: u8 = 2;
    pub const CHALLENGE: u8 = 3;
    pub const RESPONSE: u8 = 4;
    pub const ADDRESS16: u8 = 10;
    pub const LEADER_DATA: u8 = 11;
    pub const SCAN_MASK: u8 = 14;
    pub const VERSION: u8 = 18;
    pub const ADDRESS_REGISTRATION: u8 = 19;
}

/// Mode TLV bits: receiver on when idle, full Thread device, full network data (CLI mode `rdn`).
pub const MODE_RDN: u8 = 0x08 | 0x02 | 0x01;
/// Scan Mask TLV: routers (this model's only parents are leaders).
pub const SCAN_MASK_ROUTERS: u8 = 0x80;
/// Scan Mask TLV: REEDs (end devices that could become routers) should answer too.
pub const SCAN_MASK_REEDS: u8 = 0x40;
/// Version TLV value: Thread 1.3.
pub const THREAD_VERSION: u16 = 4;

/// One MLE message: command and TLVs in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub command: u8,
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

impl Message {
    pub fn new(command: u8) -> Self {
        Message {
            command,
            tlvs: Vec::new(),
        }
    }

    pub fn with(mut self, tlv_type: u8, value: &[u8]) -> Self {
        self.tlvs.push((tlv_type, value.to_vec()));
        self
    }

    /// The first TLV of `tlv_type`.
    pub fn get(&self, tlv_type: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(t, _)| *t == tlv_type)
            .map(|(_, v)| v.as_slice())
    }

    /// Command type and TLVs (what MLE security protects).
    pub fn emit(&self) -> Vec<u8> {
        let mut out = vec![self.command];
        for (t, v) in &self.tlvs {
            out.push(*t);
            out.push(u8::try_from(v.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(v.get(..255).unwrap_or(v));
        }
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, NetError> {
        let [command, tlv_bytes @ ..] = bytes else {
            return Err(NetError::Mle("empty message"));
        };
        let tlvs = super::tlvs(tlv_bytes)
            .map(|tlv| {
                tlv.map(|(t, value)| (t, value.to_vec()))
                    .map_err(NetError::Mle)
            })
            .collect::<Result<_, _>>()?;
        Ok(Message {
            command: *command,
            tlvs,
        })
    }
}

/// Leader Data TLV value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderData {
    pub partition_id: u32,
    pub weighting: u8,
    pub data_version: u8,
    pub stable_data_version: u8,
    pub leader_router_id: u8,
}

impl LeaderData {
    pub fn emit(&self) -> [u8; 8] {
        let p = self.partition_id.to_be_bytes();
        [
            p[0],
            p[1],
            p[2],
            p[3],
            self.weighting,
            self.data_version,
            self.stable_data_version,
            self.leader_router_id,
        ]
    }

    pub fn parse(value: &[u8]) -> Result<Self, NetError> {
        let [
            a,
            b,
            c,
            d,
            weighting,
            data_version,
            stable_data_version,
            leader_router_id,
        ] = value
        else {
            return Err(NetError::Mle("leader data is not 8 bytes"));
        };
        Ok(LeaderData {
            partition_id: u32::from_be_bytes([*a, *b, *c, *d]),
            weighting: *weighting,
            data_version: *data_version,
            stable_data_version: *stable_data_version,
            leader_router_id: *leader_router_id,
        })
    }
}

/// Address Registration TLV: entries compressed against context 0 (the mesh-local prefix) when
/// they can be, inline otherwise.
pub fn emit_address_registration(addresses: &[Ipv6Addr], mesh_local_prefix: &[u8; 8]) -> Vec<u8> {
    let mut out = Vec::new();
    for addr in addresses {
        let o = addr.octets();
        if o.get(..8) == Some(mesh_local_prefix.as_slice()) {
            // C=1, context id 0, then the IID.
            out.push(0x80);
            out.extend_from_slice(o.get(8..).unwrap_or_default());
        } else {
            out.push(0x00);
            out.extend_from_slice(&o);
        }
    }
    out
}

pub fn parse_address_registration(
    value: &[u8],
    mesh_local_prefix: &[u8; 8],
) -> Result<Vec<Ipv6Addr>, NetError> {
    let mut out = Vec::new();
    let mut rest = value;
    while let [control, tail @ ..] = rest {
        if control & 0x80 != 0 {
            if control & 0x0f != 0 {
                return Err(NetError::Mle(
                    "address registration uses an unknown context",
                ));
            }
            let iid = tail
                .get(..8)
                .ok_or(NetError::Mle("truncated registration"))?;
            let mut o = [0u8; 16];
            o[..8].copy_from_slice(mesh_local_prefix);
            o[8..].copy_from_slice(iid);
            out.push(Ipv6Addr::from(o));
            rest = tail.get(8..).unwrap_or_default();
        } else {
            let a: [u8; 16] = tail
                .get(..16)
                .and_then(|a| a.try_into().ok())
                .ok_or(NetError::Mle("truncated registration"))?;
            out.push(Ipv6Addr::from(a));
            rest = tail.get(16..).unwrap_or_default();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip_and_layout() {
        let m = Message::new(command::PARENT_REQUEST)
            .with(tlv::MODE, &[MODE_RDN])
            .with(tlv::CHALLENGE, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let bytes = m.emit();
        assert_eq!(&bytes[..4], &[9, 1, 1, 0x0b]);
        assert_eq!(Message::parse(&bytes).unwrap(), m);
        assert_eq!(m.get(tlv::CHALLENGE), Some(&[1, 2, 3, 4, 5, 6, 7, 8][..]));
        assert!(Message::parse(&bytes[..bytes.len() - 1]).is_err());
        assert!(Message::parse(&[9, 3]).is_err());
        assert!(Message::parse(&[]).is_err());
    }

    #[test]
    fn leader_data_and_registration_round_trip() {
        let ld = LeaderData {
            partition_id: 0x1234_5678,
            weighting: 64,
            data_version: 1,
            stable_data_version: 2,
            leader_router_id: 33,
        };
        assert_eq!(LeaderData::parse(&ld.emit()).unwrap(), ld);
        let prefix = [0xfd, 0xde, 0xad, 0, 0xbe, 0xef, 0, 0];
        let ml: Ipv6Addr = "fdde:ad00:beef:0:1:2:3:4".parse().unwrap();
        let other: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let v = emit_address_registration(&[ml, other], &prefix);
        assert_eq!(v.len(), 9 + 17);
        assert_eq!(
            parse_address_registration(&v, &prefix).unwrap(),
            vec![ml, other]
        );
        assert!(parse_address_registration(&v[..5], &prefix).is_err());
    }
}
