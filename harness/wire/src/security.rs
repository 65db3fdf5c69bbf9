//! Thread MAC security: key derivation from the network key, and IEEE 802.15.4 CCM* frame
//! protection (AES-128, 13-byte nonce, 4/8/16-byte MIC).
//!
//! Thread secures MAC frames with level 5 (ENC-MIC-32) and key id mode 1 (key index =
//! `(key_sequence & 0x7f) + 1`). The nonce is `source EUI-64 (canonical order) || BE32(frame counter)
//! || level`; the AAD is the MAC header including the aux security header and header IEs.

use aes::Aes128;
use ccm::Ccm;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U4, U8, U13, U16};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use std::net::Ipv6Addr;

use crate::WireError;
use crate::ip;
use crate::mac::{self, ExtAddress, FCS_LEN, FrameRepr, MAX_PSDU_LEN, SecurityHeader};
use crate::reader::Reader;

// The key index a security header carries; kept here too, with the keys it is derived from.
pub use crate::mac::{key_index, key_sequence_for_index};

/// The per-key-sequence keys derived from the network key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ThreadKeys {
    pub mle_key: [u8; 16],
    pub mac_key: [u8; 16],
}

impl std::fmt::Debug for ThreadKeys {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadKeys { .. }")
    }
}

/// `HMAC-SHA256(network_key, BE32(key_sequence) || "Thread")`: bytes 0..16 are the MLE key,
/// bytes 16..32 the MAC key (OpenThread `KeyManager::ComputeKeys`).
pub fn derive_keys(network_key: &[u8; 16], key_sequence: u32) -> ThreadKeys {
    // HMAC pads short keys with zeros to the block size; doing it here keeps the call infallible.
    let mut block_key = [0u8; 64];
    block_key[..16].copy_from_slice(network_key);
    let mut hmac = <Hmac<Sha256> as KeyInit>::new(&block_key.into());
    hmac.update(&key_sequence.to_be_bytes());
    hmac.update(b"Thread");
    let hash = hmac.finalize().into_bytes();
    let mut keys = ThreadKeys {
        mle_key: [0; 16],
        mac_key: [0; 16],
    };
    keys.mle_key.copy_from_slice(&hash[..16]);
    keys.mac_key.copy_from_slice(&hash[16..32]);
    keys
}

/// The 13-byte CCM* nonce: source EUI-64 (canonical order) || BE32(frame counter) || level.
pub fn nonce(src_ext: &ExtAddress, frame_counter: u32, level: u8) -> [u8; 13] {
    let mut nonce = [0u8; 13];
    nonce[..8].copy_from_slice(&src_ext.0);
    nonce[8..12].copy_from_slice(&frame_counter.to_be_bytes());
    nonce[12] = level;
    nonce
}

/// The 3-bit security level, or an error for level 4 (encryption without MIC), which CCM* as
/// implemented here does not support.
fn supported_level(level: u8) -> Result<u8, WireError> {
    match level & 0x07 {
        4 => Err(WireError::unsupported(
            "security level",
            "4 (ENC without MIC)",
        )),
        level => Ok(level),
    }
}

/// CCM* as 802.15.4 uses it. Levels 5..=7 encrypt `plaintext` and append the MIC; levels 1..=3 only
/// authenticate, so `plaintext` is returned unchanged followed by a MIC over `aad || plaintext`.
/// Level 0 returns `plaintext`. Level 4 (encryption without MIC) is not supported.
pub fn ccm_star_encrypt(
    key: &[u8; 16],
    nonce: &[u8; 13],
    level: u8,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, WireError> {
    let level = supported_level(level)?;
    if level == 0 {
        return Ok(plaintext.to_vec());
    }
    let mut buffer = Vec::with_capacity(plaintext.len() + 16);
    if level < 4 {
        // MIC only: everything is authenticated data, nothing is encrypted.
        let mut all_aad = Vec::with_capacity(aad.len() + plaintext.len());
        all_aad.extend_from_slice(aad);
        all_aad.extend_from_slice(plaintext);
        seal(key, nonce, level, &all_aad, &mut buffer)?;
        let mut out = plaintext.to_vec();
        out.extend_from_slice(&buffer);
        return Ok(out);
    }
    buffer.extend_from_slice(plaintext);
    seal(key, nonce, level, aad, &mut buffer)?;
    Ok(buffer)
}

/// Inverse of [`ccm_star_encrypt`]: checks the MIC and returns the plaintext (without MIC).
pub fn ccm_star_decrypt(
    key: &[u8; 16],
    nonce: &[u8; 13],
    level: u8,
    aad: &[u8],
    ciphertext_and_mic: &[u8],
) -> Result<Vec<u8>, WireError> {
    let level = supported_level(level)?;
    if level == 0 {
        return Ok(ciphertext_and_mic.to_vec());
    }
    let mic = mac::mic_len(level);
    let Some(body_len) = ciphertext_and_mic.len().checked_sub(mic) else {
        return Err(WireError::truncated("mic", mic, ciphertext_and_mic.len()));
    };
    let (body, tag) = ciphertext_and_mic.split_at(body_len);
    if level < 4 {
        let mut all_aad = Vec::with_capacity(aad.len() + body.len());
        all_aad.extend_from_slice(aad);
        all_aad.extend_from_slice(body);
        let mut buffer = tag.to_vec();
        open(key, nonce, level, &all_aad, &mut buffer)?;
        return Ok(body.to_vec());
    }
    let mut buffer = ciphertext_and_mic.to_vec();
    open(key, nonce, level, aad, &mut buffer)?;
    Ok(buffer)
}

fn seal(
    key: &[u8; 16],
    nonce: &[u8; 13],
    level: u8,
    aad: &[u8],
    buffer: &mut Vec<u8>,
) -> Result<(), WireError> {
    let nonce = (*nonce).into();
    let key = (*key).into();
    let sealed = match mac::mic_len(level) {
        4 => Ccm::<Aes128, U4, U13>::new(&key).encrypt_in_place(&nonce, aad, buffer),
        8 => Ccm::<Aes128, U8, U13>::new(&key).encrypt_in_place(&nonce, aad, buffer),
        _ => Ccm::<Aes128, U16, U13>::new(&key).encrypt_in_place(&nonce, aad, buffer),
    };
    // CCM with L=2 only fails for messages over 64 KiB.
    sealed.map_err(|_| WireError::TooLong {
        what: "ccm* message",
        len: buffer.len(),
        max: 0xffff,
    })
}

fn open(
    key: &[u8; 16],
    nonce: &[u8; 13],
    level: u8,
    aad: &[u8],
    buffer: &mut Vec<u8>,
) -> Result<(), WireError> {
    let nonce = (*nonce).into();
    let key = (*key).into();
    let opened = match mac::mic_len(level) {
        4 => Ccm::<Aes128, U4, U13>::new(&key).decrypt_in_place(&nonce, aad, buffer),
        8 => Ccm::<Aes128, U8, U13>::new(&key).decrypt_in_place(&nonce, aad, buffer),
        _ => Ccm::<Aes128, U16, U13>::new(&key).decrypt_in_place(&nonce, aad, buffer),
    };
    opened.map_err(|_| WireError::BadMic)
}

/// Build a secured frame: `repr.security` must be `Some` (level 5, key id mode 1 for Thread).
/// `plaintext_payload` is the MAC payload (a command frame's starts with its command identifier).
/// Returns the PSDU without FCS.
pub fn secure(
    repr: &FrameRepr,
    plaintext_payload: &[u8],
    mac_key: &[u8; 16],
    src_ext: &ExtAddress,
) -> Result<Vec<u8>, WireError> {
    let security = repr.security.ok_or(WireError::NotSecured)?;
    let mut frame = repr.emit_header();
    let open_len = repr.open_payload_len().min(plaintext_payload.len());
    let (open_part, private_part) = plaintext_payload.split_at(open_len);
    frame.extend_from_slice(open_part);
    let nonce = nonce(src_ext, security.frame_counter, security.level);
    let protected = ccm_star_encrypt(mac_key, &nonce, security.level, &frame, private_part)?;
    frame.extend_from_slice(&protected);
    let max = MAX_PSDU_LEN - FCS_LEN;
    if frame.len() > max {
        return Err(WireError::TooLong {
            what: "mac frame",
            len: frame.len(),
            max,
        });
    }
    Ok(frame)
}

/// Decrypt and authenticate a secured PSDU (without FCS); returns the repr and the plaintext MAC
/// payload (MIC removed). `Err(WireError::BadMic)` on authentication failure.
pub fn unsecure(
    psdu: &[u8],
    mac_key: &[u8; 16],
    src_ext: &ExtAddress,
) -> Result<(FrameRepr, Vec<u8>), WireError> {
    let parsed = mac::parse(psdu)?;
    let plaintext = unsecure_parsed(&parsed, psdu, mac_key, src_ext)?;
    Ok((parsed.repr, plaintext))
}

/// [`unsecure`] for a frame a receiver already parsed from `psdu` (it needs the header first to
/// find the sender's key), so the frame is not parsed twice.
pub fn unsecure_parsed(
    parsed: &mac::ParsedFrame<'_>,
    psdu: &[u8],
    mac_key: &[u8; 16],
    src_ext: &ExtAddress,
) -> Result<Vec<u8>, WireError> {
    let security = parsed.repr.security.ok_or(WireError::NotSecured)?;
    let open_len = parsed.repr.open_payload_len().min(parsed.payload.len());
    let (open_part, protected) = parsed.payload.split_at(open_len);
    let aad_len = parsed.header.len() + open_len;
    let aad = psdu.get(..aad_len).unwrap_or(parsed.header);
    let nonce = nonce(src_ext, security.frame_counter, security.level);
    let private = ccm_star_decrypt(mac_key, &nonce, security.level, aad, protected)?;
    let mut plaintext = Vec::with_capacity(open_len + private.len());
    plaintext.extend_from_slice(open_part);
    plaintext.extend_from_slice(&private);
    Ok(plaintext)
}

/// UDP port of MLE.
pub const MLE_PORT: u16 = 19788;
/// First byte of an MLE UDP payload: secured with 802.15.4 security (0) or not at all (255,
/// discovery only).
pub const MLE_SUITE_SECURED: u8 = 0;
pub const MLE_SUITE_UNSECURED: u8 = 255;

/// The key sequence an MLE security header names (key id mode 2: key source = BE32(sequence)).
pub fn mle_key_sequence(security: &SecurityHeader) -> Option<u32> {
    (security.key_id_mode == 2)
        .then_some(security.key_source)
        .flatten()
        .map(u32::from_be_bytes)
}

/// The security header of a secured MLE message, `None` for an unsecured one.
pub fn mle_security_header(udp_payload: &[u8]) -> Result<Option<SecurityHeader>, WireError> {
    let mut reader = Reader::new(udp_payload, "mle security header");
    match reader.u8()? {
        MLE_SUITE_SECURED => Ok(Some(SecurityHeader::parse(&mut reader)?)),
        MLE_SUITE_UNSECURED => Ok(None),
        _ => Err(WireError::malformed("mle", "unknown security suite")),
    }
}

/// MLE CCM* nonce source: the sender's EUI-64, from the IID of its (link-local) source address.
fn mle_nonce(src: &Ipv6Addr, security: &SecurityHeader) -> [u8; 13] {
    nonce(
        &ip::ext_from_iid(&ip::iid(src)),
        security.frame_counter,
        security.level,
    )
}

fn mle_aad(src: &Ipv6Addr, dst: &Ipv6Addr, aux: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + aux.len());
    aad.extend_from_slice(&src.octets());
    aad.extend_from_slice(&dst.octets());
    aad.extend_from_slice(aux);
    aad
}

/// Secure an MLE message (command type + TLVs) into a UDP payload:
/// `0 || aux security header || encrypted message || MIC`, AAD = src IPv6 || dst IPv6 || aux header.
pub fn mle_secure(
    security: &SecurityHeader,
    message: &[u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    mle_key: &[u8; 16],
) -> Result<Vec<u8>, WireError> {
    let mut out = vec![MLE_SUITE_SECURED];
    security.emit(&mut out);
    let aad = mle_aad(src, dst, &out[1..]);
    let protected = ccm_star_encrypt(
        mle_key,
        &mle_nonce(src, security),
        security.level,
        &aad,
        message,
    )?;
    out.extend_from_slice(&protected);
    Ok(out)
}

/// Inverse of [`mle_secure`]: returns the security header and the MLE message (command type +
/// TLVs). `mle_key` must be the MLE key of [`mle_key_sequence`] of the header.
pub fn mle_unsecure(
    udp_payload: &[u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    mle_key: &[u8; 16],
) -> Result<(SecurityHeader, Vec<u8>), WireError> {
    let mut reader = Reader::new(udp_payload, "mle security header");
    if reader.u8()? != MLE_SUITE_SECURED {
        return Err(WireError::NotSecured);
    }
    let security = SecurityHeader::parse(&mut reader)?;
    let aux_end = reader.pos();
    let aad = mle_aad(src, dst, udp_payload.get(1..aux_end).unwrap_or(&[]));
    let message = ccm_star_decrypt(
        mle_key,
        &mle_nonce(src, &security),
        security.level,
        &aad,
        reader.rest(),
    )?;
    Ok((security, message))
}

/// Fuzzing entry point: `data` = 16-byte key, 8-byte source address, then a PSDU.
pub fn fuzz_unsecure(data: &[u8]) {
    let (Some(key), Some(ext), Some(psdu)) = (data.get(..16), data.get(16..24), data.get(24..))
    else {
        return;
    };
    let mut key_bytes = [0u8; 16];
    key_bytes.copy_from_slice(key);
    let mut ext_bytes = [0u8; 8];
    ext_bytes.copy_from_slice(ext);
    let _ = unsecure(psdu, &key_bytes, &ExtAddress(ext_bytes));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::Address;

    use crate::unhex;

    fn key16(s: &str) -> [u8; 16] {
        unhex(s).try_into().unwrap()
    }

    const NETWORK_KEY: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn thread_key_table() {
        // Thread 1.1 spec 7.1.4 (quoted in OpenThread test_crypto.py).
        let table = [
            (
                0,
                "5445f4158fd75912175809f8b57a66a4",
                "de89c53af382b421e0fde5a9bae3bef0",
            ),
            (
                1,
                "8f4cd1a27d95c07d12db8974bd615c13",
                "9be0d1af7bd87350deabcdd07febb9d5",
            ),
            (
                2,
                "016e2ab8ec88879687a72e0a357ecf2a",
                "564109e9d2aad7f723ec3b96110eefa3",
            ),
        ];
        for (seq, mle, mac) in table {
            let keys = derive_keys(&key16(NETWORK_KEY), seq);
            assert_eq!(keys.mle_key, key16(mle), "mle key seq {seq}");
            assert_eq!(keys.mac_key, key16(mac), "mac key seq {seq}");
        }
    }

    #[test]
    fn key_index_and_back() {
        assert_eq!(key_index(0), 1);
        assert_eq!(key_index(0x7f), 0x80);
        assert_eq!(key_index(0x80), 1);
        for current in [0u32, 5, 0x7f, 0x80, 0x1234_5678] {
            for seq in [current.saturating_sub(1), current, current + 1] {
                assert_eq!(key_sequence_for_index(current, key_index(seq)), Some(seq));
            }
        }
        assert_eq!(key_sequence_for_index(3, 0), None);
    }

    const FRAME: &str = "699868cefa00200120 0d0000000001 \
        b55a0d8e185cb106c46f7d6bb54a8714aedd8eb737622748c9530c4431598ba28359a143 74e02af6";
    const PLAINTEXT: &str =
        "7c7780f04d4d4d4de004440244 66135f2280b16102617311 2aff0108166e0a0000000007";
    const SOURCE: &str = "166e0a0000000007";

    #[test]
    fn decrypts_openthread_data_frame() {
        let keys = derive_keys(&key16(NETWORK_KEY), 0);
        let src: ExtAddress = SOURCE.parse().unwrap();
        let (repr, plaintext) = unsecure(&unhex(FRAME), &keys.mac_key, &src).unwrap();
        assert_eq!(plaintext, unhex(PLAINTEXT));
        assert_eq!(repr.src, Address::Short(0x2001));
        assert_eq!(
            nonce(&src, 0, 5).to_vec(),
            unhex("166e0a0000000007 00000000 05")
        );
    }

    #[test]
    fn encrypts_openthread_data_frame() {
        let keys = derive_keys(&key16(NETWORK_KEY), 0);
        let src: ExtAddress = SOURCE.parse().unwrap();
        let repr = FrameRepr::data(
            0x68,
            0xface,
            Address::Short(0x2000),
            Address::Short(0x2001),
            Some(SecurityHeader::thread_mac(0, key_index(0))),
        );
        let frame = secure(&repr, &unhex(PLAINTEXT), &keys.mac_key, &src).unwrap();
        assert_eq!(frame, unhex(FRAME));
    }

    #[test]
    fn rejects_tampering_and_wrong_keys() {
        let keys = derive_keys(&key16(NETWORK_KEY), 0);
        let src: ExtAddress = SOURCE.parse().unwrap();
        let frame = unhex(FRAME);
        for index in [0, 5, 14, 20, frame.len() - 1] {
            let mut bad = frame.clone();
            bad[index] ^= 0x01;
            assert!(unsecure(&bad, &keys.mac_key, &src).is_err(), "byte {index}");
        }
        assert_eq!(
            unsecure(&frame, &derive_keys(&key16(NETWORK_KEY), 1).mac_key, &src),
            Err(WireError::BadMic)
        );
        assert_eq!(
            unsecure(&frame, &keys.mac_key, &ExtAddress([0; 8])),
            Err(WireError::BadMic)
        );
        let plain = FrameRepr::data(1, 1, Address::Short(1), Address::Short(2), None).emit(b"x");
        assert_eq!(
            unsecure(&plain, &keys.mac_key, &src),
            Err(WireError::NotSecured)
        );
    }

    const ANNEX_C_KEY: &str = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf";

    #[test]
    fn annex_c_beacon_mic64() {
        // 802.15.4-2006 C.2.1: level 2 (MIC-64), all authenticated, nothing encrypted.
        let header = unhex("08d0842143010000000048deac020500000055cf000051525354");
        let nonce = unhex("acde480000000001 00000005 02");
        let nonce: [u8; 13] = nonce.try_into().unwrap();
        let out = ccm_star_encrypt(&key16(ANNEX_C_KEY), &nonce, 2, &header, &[]).unwrap();
        assert_eq!(out, unhex("223bc1ec841ab553"));
        assert_eq!(
            ccm_star_decrypt(&key16(ANNEX_C_KEY), &nonce, 2, &header, &out).unwrap(),
            Vec::<u8>::new()
        );

        // The same through the frame API: the whole beacon is the "plaintext" of level 2.
        let parsed = mac::parse(&header).unwrap();
        let src: ExtAddress = "acde480000000001".parse().unwrap();
        let frame = secure(&parsed.repr, parsed.payload, &key16(ANNEX_C_KEY), &src).unwrap();
        assert_eq!(&frame[..header.len()], &header[..]);
        assert_eq!(&frame[header.len()..], &unhex("223bc1ec841ab553")[..]);
        let (_, payload) = unsecure(&frame, &key16(ANNEX_C_KEY), &src).unwrap();
        assert_eq!(payload, parsed.payload);
    }

    #[test]
    fn annex_c_command_enc_mic64() {
        // 802.15.4-2006 C.2.3: level 6, the command id (0x01) is open and part of the AAD.
        let frame = unhex(
            "2bdc842143020000000048deacffff010000000048deac0605000000 01 d8 4fde529061f9c6f1",
        );
        let src: ExtAddress = "acde480000000001".parse().unwrap();
        let (repr, payload) = unsecure(&frame, &key16(ANNEX_C_KEY), &src).unwrap();
        assert_eq!(payload, [0x01, 0xce]);
        assert_eq!(
            secure(&repr, &payload, &key16(ANNEX_C_KEY), &src).unwrap(),
            frame
        );
    }

    #[test]
    fn mle_vector_from_openthread() {
        // OpenThread tests/scripts/thread-cert/test_crypto.py: an MLE Advertisement sent to ff02::2.
        let src: Ipv6Addr = "fe80::235:cc94:d77a:07e8".parse().unwrap();
        let dst: Ipv6Addr = "ff02::2".parse().unwrap();
        let keys = derive_keys(&key16(NETWORK_KEY), 0);
        let security = SecurityHeader {
            level: 5,
            key_id_mode: 2,
            frame_counter: 262_165,
            key_index: Some(1),
            key_source: Some([0, 0, 0, 0]),
        };
        assert_eq!(security, SecurityHeader::thread_mle(262_165, 0));
        let message = unhex("0400020000090b8f80000000000040 0001f10b08655e0f8340c78331");
        let secured = unhex(
            "00 15 15000400 00000000 01 \
             9a5a9a5bba259c5e58a27e7574ef79bc4fa3f9aea834f6f237219360 e1b5a253",
        );
        assert_eq!(
            mle_secure(&security, &message, &src, &dst, &keys.mle_key).unwrap(),
            secured
        );
        let (parsed, plain) = mle_unsecure(&secured, &src, &dst, &keys.mle_key).unwrap();
        assert_eq!((parsed, plain), (security, message));
        assert_eq!(mle_key_sequence(&parsed), Some(0));
        assert_eq!(mle_security_header(&secured).unwrap(), Some(security));
        let other_dst: Ipv6Addr = "ff02::1".parse().unwrap();
        assert_eq!(
            mle_unsecure(&secured, &src, &other_dst, &keys.mle_key),
            Err(WireError::BadMic)
        );
        assert_eq!(mle_security_header(&[255, 1, 2]).unwrap(), None);
        assert!(mle_unsecure(&[0, 0x15], &src, &dst, &keys.mle_key).is_err());
    }
}
