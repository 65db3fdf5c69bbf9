//! The Thread Active Operational Dataset and its MeshCoP TLV encoding (`dataset active -x`).

use rand::Rng;

use crate::ot_error::OtError;

/// MeshCoP TLV types (Thread 1.3 §8.10.1).
mod tlv {
    pub const CHANNEL: u8 = 0;
    pub const PAN_ID: u8 = 1;
    pub const EXT_PAN_ID: u8 = 2;
    pub const NETWORK_NAME: u8 = 3;
    pub const PSKC: u8 = 4;
    pub const NETWORK_KEY: u8 = 5;
    pub const MESH_LOCAL_PREFIX: u8 = 7;
    pub const SECURITY_POLICY: u8 = 12;
    pub const ACTIVE_TIMESTAMP: u8 = 14;
    pub const CHANNEL_MASK: u8 = 53;
}

/// Security Policy TLV value: rotation time and the flag bytes (1 byte in Thread 1.1, 2 since 1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityPolicy {
    pub rotation_hours: u16,
    pub flags: Vec<u8>,
}

impl Default for SecurityPolicy {
    /// What OpenThread 1.3 puts in a new dataset: 672 h, flags `f7f8` (`0c0402a0f7f8`).
    fn default() -> Self {
        SecurityPolicy {
            rotation_hours: 672,
            flags: vec![0xf7, 0xf8],
        }
    }
}

/// The Active Operational Dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveDataset {
    /// Seconds part of the Active Timestamp (ticks and the U bit are kept 0).
    pub active_timestamp: u64,
    pub channel: u8,
    /// Channel page 0 mask, bit n = channel n (OpenThread prints `0x07fff800`).
    pub channel_mask: u32,
    pub pan_id: u16,
    pub ext_pan_id: [u8; 8],
    pub network_name: String,
    pub network_key: [u8; 16],
    pub mesh_local_prefix: [u8; 8],
    pub pskc: [u8; 16],
    pub security_policy: SecurityPolicy,
}

/// All 2.4 GHz channels 11..=26.
pub const DEFAULT_CHANNEL_MASK: u32 = 0x07ff_f800;

impl ActiveDataset {
    /// A new random network, as `dataset init new` makes one.
    pub fn random(rng: &mut impl Rng) -> Self {
        let pan_id = loop {
            let p: u16 = rng.random();
            // 0xffff is the broadcast PAN id.
            if p != 0xffff {
                break p;
            }
        };
        // ULA prefix: fd + 40-bit random global id + subnet 0 (RFC 4193).
        let mut mesh_local_prefix = [0u8; 8];
        mesh_local_prefix[0] = 0xfd;
        rng.fill(&mut mesh_local_prefix[1..6]);
        ActiveDataset {
            active_timestamp: 1,
            channel: rng.random_range(11..=26),
            channel_mask: DEFAULT_CHANNEL_MASK,
            pan_id,
            ext_pan_id: rng.random(),
            network_name: format!("OpenThread-{pan_id:04x}"),
            network_key: rng.random(),
            mesh_local_prefix,
            pskc: rng.random(),
            security_policy: SecurityPolicy::default(),
        }
    }

    /// The TLVs in the order OpenThread prints them for `dataset active -x`.
    pub fn to_tlvs(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |t: u8, v: &[u8]| {
            out.push(t);
            // Every value here is shorter than 256 bytes: the network name is capped at 16 on set.
            out.push(u8::try_from(v.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(v.get(..255).unwrap_or(v));
        };
        put(
            tlv::ACTIVE_TIMESTAMP,
            &(self.active_timestamp << 16).to_be_bytes(),
        );
        let mut channel = vec![0u8];
        channel.extend_from_slice(&u16::from(self.channel).to_be_bytes());
        put(tlv::CHANNEL, &channel);
        let mut mask = vec![0u8, 4];
        // On the wire channel 0 is the most significant bit (Thread §8.10.1.18).
        mask.extend_from_slice(&self.channel_mask.reverse_bits().to_be_bytes());
        put(tlv::CHANNEL_MASK, &mask);
        put(tlv::EXT_PAN_ID, &self.ext_pan_id);
        put(tlv::MESH_LOCAL_PREFIX, &self.mesh_local_prefix);
        put(tlv::NETWORK_KEY, &self.network_key);
        put(tlv::NETWORK_NAME, self.network_name.as_bytes());
        put(tlv::PAN_ID, &self.pan_id.to_be_bytes());
        put(tlv::PSKC, &self.pskc);
        let mut policy = self.security_policy.rotation_hours.to_be_bytes().to_vec();
        policy.extend_from_slice(&self.security_policy.flags);
        put(tlv::SECURITY_POLICY, &policy);
        out
    }

    /// Parse `dataset set active <hex>` input. Every field of the dataset must be present; unknown
    /// TLVs are skipped (OpenThread keeps them, this model does not use them).
    pub fn from_tlvs(bytes: &[u8]) -> Result<Self, OtError> {
        let mut timestamp = None;
        let mut channel = None;
        let mut channel_mask = None;
        let mut pan_id = None;
        let mut ext_pan_id = None;
        let mut network_name = None;
        let mut network_key = None;
        let mut mesh_local_prefix = None;
        let mut pskc = None;
        let mut security_policy = None;
        for tlv in super::tlvs(bytes) {
            let (t, value) = tlv.map_err(|_| OtError::Parse)?;
            match t {
                tlv::ACTIVE_TIMESTAMP => {
                    let raw = u64::from_be_bytes(fixed(value)?);
                    timestamp = Some(raw >> 16);
                }
                tlv::CHANNEL => {
                    let [page, hi, lo] = fixed::<3>(value)?;
                    let ch = u16::from_be_bytes([hi, lo]);
                    if page != 0 || !(11..=26).contains(&ch) {
                        return Err(OtError::InvalidArgs);
                    }
                    channel = Some(ch as u8);
                }
                tlv::CHANNEL_MASK => {
                    // Entries: page, mask length, mask. Only page 0 with a 4-byte mask is used.
                    let mut entries = value;
                    while let [page, mlen, more @ ..] = entries {
                        let mlen = usize::from(*mlen);
                        let mask = more.get(..mlen).ok_or(OtError::Parse)?;
                        if *page == 0 && mlen == 4 {
                            channel_mask = Some(u32::from_be_bytes(fixed(mask)?).reverse_bits());
                        }
                        entries = more.get(mlen..).ok_or(OtError::Parse)?;
                    }
                    if !entries.is_empty() {
                        return Err(OtError::Parse);
                    }
                }
                tlv::PAN_ID => pan_id = Some(u16::from_be_bytes(fixed(value)?)),
                tlv::EXT_PAN_ID => ext_pan_id = Some(fixed(value)?),
                tlv::NETWORK_NAME => {
                    if value.len() > 16 {
                        return Err(OtError::InvalidArgs);
                    }
                    network_name =
                        Some(String::from_utf8(value.to_vec()).map_err(|_| OtError::Parse)?);
                }
                tlv::NETWORK_KEY => network_key = Some(fixed(value)?),
                tlv::MESH_LOCAL_PREFIX => mesh_local_prefix = Some(fixed(value)?),
                tlv::PSKC => pskc = Some(fixed(value)?),
                tlv::SECURITY_POLICY => {
                    let [hi, lo, flags @ ..] = value else {
                        return Err(OtError::Parse);
                    };
                    security_policy = Some(SecurityPolicy {
                        rotation_hours: u16::from_be_bytes([*hi, *lo]),
                        flags: flags.to_vec(),
                    });
                }
                _ => {}
            }
        }
        Ok(ActiveDataset {
            active_timestamp: need(timestamp)?,
            channel: need(channel)?,
            channel_mask: channel_mask.unwrap_or(DEFAULT_CHANNEL_MASK),
            pan_id: need(pan_id)?,
            ext_pan_id: need(ext_pan_id)?,
            network_name: need(network_name)?,
            network_key: need(network_key)?,
            mesh_local_prefix: need(mesh_local_prefix)?,
            pskc: pskc.unwrap_or_default(),
            security_policy: security_policy.unwrap_or_default(),
        })
    }
}

fn need<T>(field: Option<T>) -> Result<T, OtError> {
    field.ok_or(OtError::InvalidArgs)
}

fn fixed<const N: usize>(value: &[u8]) -> Result<[u8; N], OtError> {
    value.try_into().map_err(|_| OtError::Parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A dataset laid out as OpenThread's `dataset active -x` prints it (TLV order, channel mask
    /// with channel 0 in the most significant bit).
    const OT_DOC_HEX: &str = concat!(
        "0e080000000000010000",
        "000300000f",
        "35060004001fffe0",
        "0208dead00beef00cafe",
        "0708fddead00beef0000",
        "051000112233445566778899aabbccddeeff",
        "030a4f70656e546872656164",
        "01021234",
        "0410fc98d2e5da61a8b5ed49c6e3a1d5ab75",
        "0c0402a0f7f8",
    );

    fn unhex(s: &str) -> Vec<u8> {
        crate::cli::parse_hex(s).expect("test vector is hex")
    }

    #[test]
    fn parses_and_re_emits_openthread_dataset() {
        let bytes = unhex(OT_DOC_HEX);
        let ds = ActiveDataset::from_tlvs(&bytes).unwrap();
        assert_eq!(ds.active_timestamp, 1);
        assert_eq!(ds.channel, 15);
        assert_eq!(ds.channel_mask, 0x07ff_f800);
        assert_eq!(ds.pan_id, 0x1234);
        assert_eq!(
            ds.ext_pan_id,
            [0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0xca, 0xfe]
        );
        assert_eq!(ds.network_name, "OpenThread");
        assert_eq!(
            ds.mesh_local_prefix,
            [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0, 0]
        );
        assert_eq!(ds.security_policy.rotation_hours, 672);
        assert_eq!(ds.to_tlvs(), bytes);
    }

    #[test]
    fn random_datasets_round_trip_and_differ() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = ActiveDataset::random(&mut rng);
        let b = ActiveDataset::random(&mut rng);
        assert_ne!(a, b);
        assert!((11..=26).contains(&a.channel));
        assert_eq!(a.mesh_local_prefix[0], 0xfd);
        assert_eq!(ActiveDataset::from_tlvs(&a.to_tlvs()).unwrap(), a);
    }

    #[test]
    fn rejects_truncated_and_incomplete() {
        let bytes = unhex(OT_DOC_HEX);
        assert_eq!(
            ActiveDataset::from_tlvs(&bytes[..bytes.len() - 1]),
            Err(OtError::Parse)
        );
        assert_eq!(
            ActiveDataset::from_tlvs(&bytes[..10]),
            Err(OtError::InvalidArgs)
        );
        assert_eq!(ActiveDataset::from_tlvs(&[0x0e]), Err(OtError::Parse));
    }
}
