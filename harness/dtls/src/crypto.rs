//! Key schedule and record protection for the AES-128-CCM-8 suites.
//!
//! * TLS 1.2 PRF with P_SHA256 (RFC 5246 §5), master secret (§8.1), key block (§6.3).
//! * AES-128-CCM-8 records (RFC 6655 §3, RFC 6347 §4.1.2.1): nonce = fixed_iv(4) || epoch(2) || seq(6),
//!   the 8 explicit nonce bytes are sent in front of the ciphertext, the AAD is
//!   epoch || seq || type || version || plaintext length (RFC 5246 §6.2.3.3).
//! * Anti-replay sliding window of 64 records (RFC 6347 §4.1.2.6).

use aes::Aes128;
use ccm::Ccm;
use ccm::aead::{Aead, KeyInit, Payload};
use ccm::consts::{U8, U12};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::codec::{put_u16, put_u48};
use crate::enums::{ContentType, ProtocolVersion};

type HmacSha256 = Hmac<Sha256>;
/// AES-128-CCM with an 8-byte tag and the 12-byte TLS nonce (RFC 6655 §3: `CCMNonce` is
/// salt(4) || nonce_explicit(8), so the CCM length field is L = 3). A 13-byte nonce type
/// (L = 2, as 802.15.4 uses) would not interoperate.
type Aes128Ccm8 = Ccm<Aes128, U8, U12>;

/// Key block length for the CCM_8 suites: two 16-byte keys, two 4-byte fixed IVs, no MAC keys.
pub const KEY_BLOCK_LEN: usize = 40;
/// Bytes a CCM_8 record adds to its plaintext: explicit nonce (8) and tag (8).
pub const RECORD_EXPANSION: usize = 16;
const EXPLICIT_NONCE_LEN: usize = 8;

/// HMAC-SHA256 over the concatenation of `parts` (the PRF, and cookies too).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("hmac accepts any key length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `PRF(secret, label, seed) = P_SHA256(secret, label || seed)` truncated to `out.len()` (RFC 5246 §5).
pub fn prf(secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    let mut a = hmac_sha256(secret, &[label, seed]);
    let mut filled = 0;
    while filled < out.len() {
        let block = hmac_sha256(secret, &[&a, label, seed]);
        let n = (out.len() - filled).min(block.len());
        out[filled..filled + n].copy_from_slice(&block[..n]);
        filled += n;
        a = hmac_sha256(secret, &[&a]);
    }
}

/// `master_secret = PRF(pre_master_secret, "master secret", client_random || server_random)[0..48]`.
pub fn master_secret(pms: &[u8], client_random: &[u8; 32], server_random: &[u8; 32]) -> [u8; 48] {
    let mut seed = [0u8; 64];
    seed[..32].copy_from_slice(client_random);
    seed[32..].copy_from_slice(server_random);
    let mut out = [0u8; 48];
    prf(pms, b"master secret", &seed, &mut out);
    out
}

/// RFC 7627 §4: `master_secret = PRF(pre_master_secret, "extended master secret",
/// session_hash)[0..48]`, the session hash covering the handshake up to the ClientKeyExchange.
pub fn extended_master_secret(pms: &[u8], session_hash: &[u8; 32]) -> [u8; 48] {
    let mut out = [0u8; 48];
    prf(pms, b"extended master secret", session_hash, &mut out);
    out
}

/// Finished `verify_data = PRF(master, label, SHA-256(handshake_messages))[0..12]` (RFC 5246 §7.4.9).
pub fn verify_data(master: &[u8; 48], label: &[u8], handshake_hash: &[u8; 32]) -> [u8; 12] {
    let mut out = [0u8; 12];
    prf(master, label, handshake_hash, &mut out);
    out
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The 40-byte key block, split (RFC 5246 §6.3).
#[derive(Clone)]
pub struct KeyBlock {
    pub client_key: [u8; 16],
    pub server_key: [u8; 16],
    pub client_iv: [u8; 4],
    pub server_iv: [u8; 4],
    /// The whole block; Thread derives its KEK as SHA-256 of it.
    pub raw: [u8; KEY_BLOCK_LEN],
}

impl KeyBlock {
    /// `key_block = PRF(master, "key expansion", server_random || client_random)`.
    pub fn derive(master: &[u8; 48], client_random: &[u8; 32], server_random: &[u8; 32]) -> Self {
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(server_random);
        seed[32..].copy_from_slice(client_random);
        let mut raw = [0u8; KEY_BLOCK_LEN];
        prf(master, b"key expansion", &seed, &mut raw);
        let mut kb = KeyBlock {
            client_key: [0; 16],
            server_key: [0; 16],
            client_iv: [0; 4],
            server_iv: [0; 4],
            raw,
        };
        kb.client_key.copy_from_slice(&raw[0..16]);
        kb.server_key.copy_from_slice(&raw[16..32]);
        kb.client_iv.copy_from_slice(&raw[32..36]);
        kb.server_iv.copy_from_slice(&raw[36..40]);
        kb
    }
}

/// Protection failed: the record is dropped (RFC 6347 §4.1.2.7), or counted as a bad MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtectError {
    #[error("record too short for ccm_8")]
    TooShort,
    #[error("explicit nonce does not match the record header")]
    NonceMismatch,
    #[error("record authentication failed")]
    BadMac,
}

/// AES-128-CCM-8 for one direction of one epoch.
#[derive(Clone)]
pub struct RecordCipher {
    cipher: Aes128Ccm8,
    fixed_iv: [u8; 4],
}

impl RecordCipher {
    pub fn new(key: &[u8; 16], fixed_iv: &[u8; 4]) -> Self {
        RecordCipher {
            cipher: Aes128Ccm8::new(key.into()),
            fixed_iv: *fixed_iv,
        }
    }

    fn nonce(&self, explicit: &[u8; 8]) -> ccm::Nonce<U12> {
        let mut n = ccm::Nonce::<U12>::default();
        n[..4].copy_from_slice(&self.fixed_iv);
        n[4..].copy_from_slice(explicit);
        n
    }

    fn aad(
        epoch: u16,
        seq: u64,
        typ: ContentType,
        version: ProtocolVersion,
        len: usize,
    ) -> Vec<u8> {
        let mut aad = Vec::with_capacity(13);
        put_u16(&mut aad, epoch);
        put_u48(&mut aad, seq);
        aad.push(typ.0);
        put_u16(&mut aad, version.0);
        put_u16(&mut aad, len as u16);
        aad
    }

    /// `epoch(2) || seq(6)`, the sequence number's low 48 bits.
    fn explicit(epoch: u16, seq: u64) -> [u8; 8] {
        ((u64::from(epoch) << 48) | (seq & 0xffff_ffff_ffff)).to_be_bytes()
    }

    /// Encrypt a record fragment: returns `explicit_nonce(8) || ciphertext || tag(8)`.
    pub fn seal(
        &self,
        epoch: u16,
        seq: u64,
        typ: ContentType,
        version: ProtocolVersion,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let explicit = Self::explicit(epoch, seq);
        let aad = Self::aad(epoch, seq, typ, version, plaintext.len());
        let mut out = explicit.to_vec();
        match self.cipher.encrypt(
            &self.nonce(&explicit),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        ) {
            Ok(ct) => out.extend_from_slice(&ct),
            // CCM only fails for messages longer than its length field allows (2^16 with L=3 is
            // far above a record), which the record layer never produces.
            Err(_) => unreachable!("record plaintext within ccm limits"),
        }
        out
    }

    /// Decrypt and authenticate a record fragment.
    pub fn open(
        &self,
        epoch: u16,
        seq: u64,
        typ: ContentType,
        version: ProtocolVersion,
        fragment: &[u8],
    ) -> Result<Vec<u8>, ProtectError> {
        if fragment.len() < RECORD_EXPANSION {
            return Err(ProtectError::TooShort);
        }
        let (explicit, ct) = fragment.split_at(EXPLICIT_NONCE_LEN);
        let mut ex = [0u8; 8];
        ex.copy_from_slice(explicit);
        // mbedtls and OpenSSL both put epoch||seq here; we use it as sent (RFC 6655 allows any
        // unique value), the AAD carries the header's epoch and sequence.
        let aad = Self::aad(epoch, seq, typ, version, ct.len() - 8);
        self.cipher
            .decrypt(&self.nonce(&ex), Payload { msg: ct, aad: &aad })
            .map_err(|_| ProtectError::BadMac)
    }
}

/// Sliding anti-replay window (RFC 6347 §4.1.2.6), 64 records wide.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// Highest sequence number accepted so far, if any.
    top: Option<u64>,
    /// Bit i set = `top - i` was accepted.
    bits: u64,
}

impl ReplayWindow {
    /// Whether `seq` is new and inside the window (check before decrypting).
    pub fn check(&self, seq: u64) -> bool {
        match self.top {
            None => true,
            Some(top) if seq > top => true,
            Some(top) => {
                let d = top - seq;
                d < 64 && self.bits & (1u64 << d) == 0
            }
        }
    }

    /// Mark `seq` as received (only after the record authenticated).
    pub fn mark(&mut self, seq: u64) {
        match self.top {
            None => {
                self.top = Some(seq);
                self.bits = 1;
            }
            Some(top) if seq > top => {
                let shift = seq - top;
                self.bits = if shift >= 64 { 0 } else { self.bits << shift };
                self.bits |= 1;
                self.top = Some(seq);
            }
            Some(top) => {
                let d = top - seq;
                if d < 64 {
                    self.bits |= 1u64 << d;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::unhex as hex;

    /// The widely used TLS 1.2 PRF-SHA256 test vector (IETF TLS WG list, 2009).
    #[test]
    fn prf_sha256_vector() {
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let seed = hex("a0ba9f936cda311827a6f796ffd5198c");
        let mut out = [0u8; 100];
        prf(&secret, b"test label", &seed, &mut out);
        let expect = hex(
            "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af
             0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701
             87347b66",
        );
        assert_eq!(out.to_vec(), expect);
    }

    #[test]
    fn ccm8_seal_open_and_tamper() {
        let c = RecordCipher::new(&[0x11; 16], &[1, 2, 3, 4]);
        let ct = c.seal(
            1,
            5,
            ContentType::APPLICATION_DATA,
            ProtocolVersion::DTLS1_2,
            b"hello",
        );
        assert_eq!(ct.len(), 5 + RECORD_EXPANSION);
        assert_eq!(&ct[..8], &[0, 1, 0, 0, 0, 0, 0, 5]);
        let pt = c
            .open(
                1,
                5,
                ContentType::APPLICATION_DATA,
                ProtocolVersion::DTLS1_2,
                &ct,
            )
            .unwrap();
        assert_eq!(pt, b"hello");
        // Wrong sequence in the AAD, flipped ciphertext byte, truncation: all rejected.
        assert_eq!(
            c.open(
                1,
                6,
                ContentType::APPLICATION_DATA,
                ProtocolVersion::DTLS1_2,
                &ct
            ),
            Err(ProtectError::BadMac)
        );
        let mut bad = ct.clone();
        bad[9] ^= 1;
        assert_eq!(
            c.open(
                1,
                5,
                ContentType::APPLICATION_DATA,
                ProtocolVersion::DTLS1_2,
                &bad
            ),
            Err(ProtectError::BadMac)
        );
        assert_eq!(
            c.open(
                1,
                5,
                ContentType::APPLICATION_DATA,
                ProtocolVersion::DTLS1_2,
                &ct[..15]
            ),
            Err(ProtectError::TooShort)
        );
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(w.check(10));
        w.mark(10);
        assert!(!w.check(10));
        assert!(w.check(9));
        w.mark(9);
        assert!(!w.check(9));
        w.mark(80);
        assert!(!w.check(10), "fell out of the window");
        assert!(w.check(79));
        assert!(!w.check(16));
        assert!(w.check(17));
    }

    #[test]
    fn key_block_split() {
        let kb = KeyBlock::derive(&[7; 48], &[1; 32], &[2; 32]);
        assert_eq!(&kb.raw[..16], &kb.client_key);
        assert_eq!(&kb.raw[36..], &kb.server_iv);
        let kb2 = KeyBlock::derive(&[7; 48], &[2; 32], &[1; 32]);
        assert_ne!(kb.raw, kb2.raw, "randoms order matters");
    }
}
