//! EC J-PAKE over P-256 with SHA-256, as the DTLS suite `TLS_ECJPAKE_WITH_AES_128_CCM_8`
//! (0xC0FF, hello extension 0x0100) uses it: draft-cragie-tls-ecjpake-01 in the variant that
//! mbedtls 2.28 (`library/ecjpake.c`) implements and OpenThread ships.
//!
//! Names follow the "unified" view of both roles: `xm1`/`xm2` are my two round-one private keys
//! (client x1/x2, server x3/x4), `Xp1`/`Xp2` the peer's round-one public keys, `Xp` the peer's
//! round-two public key, and `s` the password read as a big-endian integer.
//!
//! * Round one (ClientHello / ServerHello extension 0x0100): `ECJPAKEKeyKPPairList`, i.e. two
//!   `ECJPAKEKeyKP { ECPoint X; ECSchnorrZKP { ECPoint V; opaque r<1..255> } }`, proofs over the
//!   base point G.
//! * Round two: the server sends `ECParameters (03 00 17) || ECJPAKEKeyKP` in its
//!   ServerKeyExchange, the client a bare `ECJPAKEKeyKP` in its ClientKeyExchange. The generator is
//!   `Xm1 + Xp1 + Xp2` for the writer, the private key `xm2 * s`.
//! * Premaster: `K = (Xp - Xp2 * (xm2 * s)) * xm2`, `PMS = SHA-256(K.x)` (32 bytes).
//!
//! Every `ECPoint` is a 1-byte length and an uncompressed SEC1 point (`04 || x || y`, 65 bytes);
//! mbedtls rejects compressed points with "feature unavailable", so this module does too.
//! The Schnorr proof hash is
//! `SHA-256(BE32(65) || G || BE32(65) || V || BE32(65) || X || BE32(len id) || id) mod n`
//! with `id` the prover's role name, `"client"` or `"server"`; a proof is valid when
//! `V == r*G + h*X`, where `r = v - x*h mod n`.
//!
//! Parsing never panics: every length is checked against the remaining input.

use std::fmt;

use p256::elliptic_curve::Field;
use p256::elliptic_curve::group::Group;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::rand_core::CryptoRng;
use p256::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
use p256::elliptic_curve::{Generate, NonZeroScalar, PrimeField};
use p256::{AffinePoint, FieldBytes, NistP256, ProjectivePoint, Scalar, Sec1Point};
use sha2::{Digest, Sha256};

/// Length of an uncompressed P-256 point: tag 0x04, x and y.
pub const POINT_LEN: usize = 65;

/// `ECParameters` for secp256r1: curve_type named_curve (3), NamedCurve secp256r1 (23).
pub const SECP256R1_PARAMS: [u8; 3] = [0x03, 0x00, 0x17];

/// Length of the premaster secret (a SHA-256 digest).
pub const PREMASTER_LEN: usize = 32;

/// SEC1 tag of an uncompressed point.
const UNCOMPRESSED_TAG: u8 = 0x04;

/// Errors of the EC J-PAKE layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcjpakeError {
    #[error("password is empty or zero modulo the group order")]
    BadPassword,
    #[error("private key is zero or not below the group order")]
    BadPrivateKey,
    #[error("truncated {what}: need {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error(
        "ec point of {len} bytes with tag 0x{tag:02x}: only uncompressed 65-byte points are supported"
    )]
    UnsupportedPointFormat { len: usize, tag: u8 },
    #[error("ec point is not on the curve")]
    PointNotOnCurve,
    #[error("public key is the point at infinity")]
    PointAtInfinity,
    #[error("zkp scalar r ({len} bytes) is not below the group order")]
    ScalarOutOfRange { len: usize },
    #[error(
        "unsupported ec parameters {0:02x?}: only named_curve secp256r1 (03 00 17) is supported"
    )]
    UnsupportedCurve([u8; 3]),
    #[error("zero-knowledge proof for {key} does not verify")]
    ProofInvalid { key: &'static str },
    #[error("{0} bytes left over after the message")]
    TrailingBytes(usize),
    #[error("round-two generator is the point at infinity")]
    DegenerateGenerator,
    #[error("shared point is the point at infinity")]
    DegenerateSecret,
    #[error("out of order: {0}")]
    OutOfOrder(&'static str),
}

/// Which end of the handshake this context plays; it selects the identity string that goes into
/// the proof hashes (mine on write, the peer's on read) and whether round two carries the curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Server,
}

impl Role {
    /// The identity mbedtls hashes into a proof made by this role.
    pub fn id(self) -> &'static [u8] {
        match self {
            Role::Client => b"client",
            Role::Server => b"server",
        }
    }

    pub fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}

// -- Wire structures --------------------------------------------------------------------------

/// Bounds-checked reader over an untrusted message.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EcjpakeError> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or(EcjpakeError::Truncated {
                what,
                need: n,
                have: self.rest.len(),
            })?;
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, EcjpakeError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or_default())
    }

    /// TLS `ECPoint`: a 1-byte length and the SEC1 encoding, which must be uncompressed.
    fn ec_point(&mut self, what: &'static str) -> Result<[u8; POINT_LEN], EcjpakeError> {
        let len = usize::from(self.u8(what)?);
        let body = self.take(len, what)?;
        let tag = body.first().copied().unwrap_or_default();
        <[u8; POINT_LEN]>::try_from(body)
            .ok()
            .filter(|_| tag == UNCOMPRESSED_TAG)
            .ok_or(EcjpakeError::UnsupportedPointFormat { len, tag })
    }

    fn finish(self) -> Result<(), EcjpakeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(EcjpakeError::TrailingBytes(n)),
        }
    }
}

/// `ECSchnorrZKP { ECPoint V; opaque r<1..2^8-1>; }`, as bytes (not yet checked against the curve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchnorrZkp {
    pub v: [u8; POINT_LEN],
    /// Big-endian; mbedtls writes it minimal (no leading zero bytes) but reads any length.
    pub r: Vec<u8>,
}

/// `ECJPAKEKeyKP { ECPoint X; ECSchnorrZKP zkp; }`, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyKp {
    pub x: [u8; POINT_LEN],
    pub zkp: SchnorrZkp,
}

impl KeyKp {
    fn read(r: &mut Reader<'_>) -> Result<Self, EcjpakeError> {
        let x = r.ec_point("public key X")?;
        let v = r.ec_point("proof commitment V")?;
        let r_len = usize::from(r.u8("proof scalar r")?);
        let r_bytes = r.take(r_len, "proof scalar r")?.to_vec();
        Ok(Self {
            x,
            zkp: SchnorrZkp { v, r: r_bytes },
        })
    }

    /// Wire length: three length bytes, two points and r.
    pub fn buffer_len(&self) -> usize {
        1 + POINT_LEN + 1 + POINT_LEN + 1 + self.zkp.r.len()
    }

    /// Append the wire form. `r` longer than 255 bytes cannot be represented; the proofs this
    /// module makes are at most 32 bytes, so only a hand-built value could hit the truncation.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let r = self.zkp.r.get(..255).unwrap_or(&self.zkp.r);
        out.push(POINT_LEN as u8);
        out.extend_from_slice(&self.x);
        out.push(POINT_LEN as u8);
        out.extend_from_slice(&self.zkp.v);
        out.push(r.len() as u8);
        out.extend_from_slice(r);
    }
}

/// Round one: `ECJPAKEKeyKPPairList` (X1, X2 from the client or X3, X4 from the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundOne {
    pub keys: [KeyKp; 2],
}

impl RoundOne {
    /// Structural parse: lengths and point formats only, no curve or proof checks.
    pub fn parse(buf: &[u8]) -> Result<Self, EcjpakeError> {
        let mut r = Reader::new(buf);
        let first = KeyKp::read(&mut r)?;
        let second = KeyKp::read(&mut r)?;
        r.finish()?;
        Ok(Self {
            keys: [first, second],
        })
    }

    pub fn buffer_len(&self) -> usize {
        self.keys.iter().map(KeyKp::buffer_len).sum()
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        for key in &self.keys {
            key.emit(out);
        }
    }
}

/// Round two: `ServerECJPAKEParams` (with `ECParameters`) or `ClientECJPAKEParams` (without).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundTwo {
    /// The server's message carries the curve; only secp256r1 parses.
    pub with_curve_params: bool,
    pub key: KeyKp,
}

impl RoundTwo {
    /// Structural parse of the message `from` wrote: a server's has `03 00 17` in front.
    pub fn parse(buf: &[u8], from: Role) -> Result<Self, EcjpakeError> {
        let mut r = Reader::new(buf);
        let with_curve_params = from == Role::Server;
        if with_curve_params {
            let params = r.take(SECP256R1_PARAMS.len(), "ec parameters")?;
            if params != SECP256R1_PARAMS {
                let mut got = [0u8; 3];
                got.copy_from_slice(params);
                return Err(EcjpakeError::UnsupportedCurve(got));
            }
        }
        let key = KeyKp::read(&mut r)?;
        r.finish()?;
        Ok(Self {
            with_curve_params,
            key,
        })
    }

    pub fn buffer_len(&self) -> usize {
        let params = if self.with_curve_params {
            SECP256R1_PARAMS.len()
        } else {
            0
        };
        params + self.key.buffer_len()
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        if self.with_curve_params {
            out.extend_from_slice(&SECP256R1_PARAMS);
        }
        self.key.emit(out);
    }
}

// -- Group helpers ----------------------------------------------------------------------------

fn decode_point(bytes: &[u8; POINT_LEN]) -> Result<ProjectivePoint, EcjpakeError> {
    let sec1 = Sec1Point::from_bytes(bytes).map_err(|_| EcjpakeError::PointNotOnCurve)?;
    Option::<AffinePoint>::from(AffinePoint::from_sec1_point(&sec1))
        .map(ProjectivePoint::from)
        .ok_or(EcjpakeError::PointNotOnCurve)
}

fn encode_point(point: &ProjectivePoint) -> Option<[u8; POINT_LEN]> {
    let sec1 = point.to_affine().to_sec1_point(false);
    <[u8; POINT_LEN]>::try_from(sec1.as_bytes()).ok()
}

/// A uniformly random scalar in [1, n-1], as `mbedtls_ecp_gen_keypair_base` draws keys.
fn random_nonzero(rng: &mut (impl CryptoRng + ?Sized)) -> Scalar {
    *NonZeroScalar::<NistP256>::generate_from_rng(rng)
}

fn is_identity(point: &ProjectivePoint) -> bool {
    bool::from(point.is_identity())
}

/// A scalar from big-endian bytes of any length; `None` if the value is not below n.
fn scalar_from_be(bytes: &[u8]) -> Option<Scalar> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let significant = bytes.get(start..)?;
    let pad = 32usize.checked_sub(significant.len())?;
    let mut repr = FieldBytes::default();
    repr.get_mut(pad..)?.copy_from_slice(significant);
    Option::from(Scalar::from_repr(repr))
}

/// Minimal big-endian form, as mbedtls writes an MPI (`mbedtls_mpi_size` bytes; zero is empty).
fn scalar_to_minimal_be(scalar: &Scalar) -> Vec<u8> {
    let repr = scalar.to_repr();
    let start = repr.iter().position(|&b| b != 0).unwrap_or(repr.len());
    repr.get(start..).unwrap_or_default().to_vec()
}

/// The password as a big-endian integer, reduced mod n. Horner's rule in the scalar field gives
/// the same residue mbedtls gets from its multiplications mod n, for passwords of any length.
fn password_scalar(password: &[u8]) -> Scalar {
    let base = Scalar::from(256u64);
    password.iter().fold(Scalar::ZERO, |acc, &b| {
        acc * base + Scalar::from(u64::from(b))
    })
}

/// `ecjpake_hash`: the Schnorr challenge for a proof made by `prover`.
fn zkp_hash(g: &[u8; POINT_LEN], v: &[u8; POINT_LEN], x: &[u8; POINT_LEN], prover: Role) -> Scalar {
    let id = prover.id();
    let mut hasher = Sha256::new();
    for point in [g, v, x] {
        hasher.update((POINT_LEN as u32).to_be_bytes());
        hasher.update(point);
    }
    hasher.update((id.len() as u32).to_be_bytes());
    hasher.update(id);
    let digest: [u8; 32] = hasher.finalize().into();
    <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(digest))
}

/// Make `KeyKp` for the public key `X = x*G` with a fresh commitment.
fn make_key_kp(
    g: &ProjectivePoint,
    x: &Scalar,
    prover: Role,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<(ProjectivePoint, KeyKp), EcjpakeError> {
    let g_bytes = encode_point(g).ok_or(EcjpakeError::DegenerateGenerator)?;
    let public = *g * x;
    let x_bytes = encode_point(&public).ok_or(EcjpakeError::PointAtInfinity)?;
    let v = random_nonzero(rng);
    let commitment = *g * v;
    let v_bytes = encode_point(&commitment).ok_or(EcjpakeError::PointAtInfinity)?;
    let h = zkp_hash(&g_bytes, &v_bytes, &x_bytes, prover);
    let r = v - *x * h;
    let kp = KeyKp {
        x: x_bytes,
        zkp: SchnorrZkp {
            v: v_bytes,
            r: scalar_to_minimal_be(&r),
        },
    };
    Ok((public, kp))
}

/// Check a `KeyKp` made by `prover` over generator `g`; returns the verified public key.
fn verify_key_kp(
    g: &ProjectivePoint,
    kp: &KeyKp,
    prover: Role,
    key: &'static str,
) -> Result<ProjectivePoint, EcjpakeError> {
    let g_bytes = encode_point(g).ok_or(EcjpakeError::DegenerateGenerator)?;
    let public = decode_point(&kp.x)?;
    let commitment = decode_point(&kp.zkp.v)?;
    let r = scalar_from_be(&kp.zkp.r).ok_or(EcjpakeError::ScalarOutOfRange {
        len: kp.zkp.r.len(),
    })?;
    let h = zkp_hash(&g_bytes, &kp.zkp.v, &kp.x, prover);
    if *g * r + public * h == commitment {
        Ok(public)
    } else {
        Err(EcjpakeError::ProofInvalid { key })
    }
}

// -- The exchange -----------------------------------------------------------------------------

#[derive(Clone)]
struct MyKeys {
    xm1: Scalar,
    xm2: Scalar,
    big_xm1: ProjectivePoint,
    big_xm2: ProjectivePoint,
}

#[derive(Clone)]
struct PeerKeys {
    big_xp1: ProjectivePoint,
    big_xp2: ProjectivePoint,
}

/// One side of an EC J-PAKE exchange, driven in the order the DTLS handshake needs it:
/// write/read round one (either order), write/read round two (either order), derive.
#[derive(Clone)]
pub struct EcjpakeContext {
    role: Role,
    s: Scalar,
    mine: Option<MyKeys>,
    peer: Option<PeerKeys>,
    /// `Xp`, the peer's round-two public key.
    peer_round_two: Option<ProjectivePoint>,
}

impl fmt::Debug for EcjpakeContext {
    // Secrets stay out of logs: show progress only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcjpakeContext")
            .field("role", &self.role)
            .field("round_one_written", &self.mine.is_some())
            .field("round_one_read", &self.peer.is_some())
            .field("round_two_read", &self.peer_round_two.is_some())
            .finish_non_exhaustive()
    }
}

impl EcjpakeContext {
    /// A context for `role` with the shared password (PSKc for a commissioner, PSKd for a
    /// joiner, the `ecjpake_pw` of mbedtls's test programs).
    pub fn new(role: Role, password: &[u8]) -> Result<Self, EcjpakeError> {
        let s = password_scalar(password);
        // mbedtls refuses an empty password (`ecjpake_check`) and cannot multiply by s = 0.
        if password.is_empty() || bool::from(s.is_zero()) {
            return Err(EcjpakeError::BadPassword);
        }
        Ok(Self {
            role,
            s,
            mine: None,
            peer: None,
            peer_round_two: None,
        })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Install fixed round-one private keys (big-endian, below n, non-zero) instead of random
    /// ones, for known-answer tests against mbedtls's self-test vectors.
    #[doc(hidden)]
    pub fn set_round_one_private_keys(
        &mut self,
        xm1: &[u8],
        xm2: &[u8],
    ) -> Result<(), EcjpakeError> {
        let parse = |bytes: &[u8]| {
            scalar_from_be(bytes)
                .filter(|x| !bool::from(x.is_zero()))
                .ok_or(EcjpakeError::BadPrivateKey)
        };
        let (xm1, xm2) = (parse(xm1)?, parse(xm2)?);
        self.mine = Some(MyKeys {
            xm1,
            xm2,
            big_xm1: ProjectivePoint::GENERATOR * xm1,
            big_xm2: ProjectivePoint::GENERATOR * xm2,
        });
        Ok(())
    }

    /// My round-one message: two public keys with their proofs over the base point.
    /// The private keys are drawn on the first call and kept, so a ClientHello resent after a
    /// HelloVerifyRequest carries the same keys (with fresh proofs).
    pub fn write_round_one(&mut self, rng: &mut (impl CryptoRng + ?Sized)) -> Vec<u8> {
        let role = self.role;
        let mine = self.mine.get_or_insert_with(|| {
            let xm1 = random_nonzero(rng);
            let xm2 = random_nonzero(rng);
            MyKeys {
                xm1,
                xm2,
                big_xm1: ProjectivePoint::GENERATOR * xm1,
                big_xm2: ProjectivePoint::GENERATOR * xm2,
            }
        });
        let g = ProjectivePoint::GENERATOR;
        let mut out = Vec::with_capacity(2 * (3 + 2 * POINT_LEN + 32));
        for x in [mine.xm1, mine.xm2] {
            // x is non-zero and G is the base point, so neither step can fail.
            if let Ok((_, kp)) = make_key_kp(&g, &x, role, rng) {
                kp.emit(&mut out);
            }
        }
        out
    }

    /// Parse the peer's round one and verify both proofs (over the base point, peer identity).
    pub fn read_round_one(&mut self, peer: &[u8]) -> Result<(), EcjpakeError> {
        let msg = RoundOne::parse(peer)?;
        let g = ProjectivePoint::GENERATOR;
        let from = self.role.peer();
        let [first, second] = &msg.keys;
        let big_xp1 = verify_key_kp(&g, first, from, "round-one key 1")?;
        let big_xp2 = verify_key_kp(&g, second, from, "round-one key 2")?;
        if is_identity(&big_xp1) || is_identity(&big_xp2) {
            return Err(EcjpakeError::PointAtInfinity);
        }
        self.peer = Some(PeerKeys { big_xp1, big_xp2 });
        Ok(())
    }

    fn round_one_done(&self, step: &'static str) -> Result<(&MyKeys, &PeerKeys), EcjpakeError> {
        match (&self.mine, &self.peer) {
            (Some(mine), Some(peer)) => Ok((mine, peer)),
            _ => Err(EcjpakeError::OutOfOrder(step)),
        }
    }

    /// My round-two message: server `03 00 17 || KeyKp`, client `KeyKp`, with generator
    /// `Xm1 + Xp1 + Xp2` and private key `xm2 * s`.
    pub fn write_round_two(
        &mut self,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Vec<u8>, EcjpakeError> {
        let (mine, peer) = self.round_one_done("round two written before round one completed")?;
        let g = mine.big_xm1 + peer.big_xp1 + peer.big_xp2;
        if is_identity(&g) {
            return Err(EcjpakeError::DegenerateGenerator);
        }
        let xm = mine.xm2 * self.s;
        let (_, key) = make_key_kp(&g, &xm, self.role, rng)?;
        let msg = RoundTwo {
            with_curve_params: self.role == Role::Server,
            key,
        };
        let mut out = Vec::with_capacity(msg.buffer_len());
        msg.emit(&mut out);
        Ok(out)
    }

    /// Parse the peer's round two and verify its proof over `Xm1 + Xm2 + Xp1`.
    pub fn read_round_two(&mut self, peer_msg: &[u8]) -> Result<(), EcjpakeError> {
        let (mine, peer) = self.round_one_done("round two read before round one completed")?;
        let g = mine.big_xm1 + mine.big_xm2 + peer.big_xp1;
        if is_identity(&g) {
            return Err(EcjpakeError::DegenerateGenerator);
        }
        let from = self.role.peer();
        let msg = RoundTwo::parse(peer_msg, from)?;
        let xp = verify_key_kp(&g, &msg.key, from, "round-two key")?;
        if is_identity(&xp) {
            return Err(EcjpakeError::PointAtInfinity);
        }
        self.peer_round_two = Some(xp);
        Ok(())
    }

    /// `PMS = SHA-256(K.x)` with `K = (Xp - Xp2 * (xm2 * s)) * xm2`.
    pub fn derive_premaster(&self) -> Result<[u8; PREMASTER_LEN], EcjpakeError> {
        let (mine, peer) = self.round_one_done("premaster derived before round one completed")?;
        let xp = self.peer_round_two.ok_or(EcjpakeError::OutOfOrder(
            "premaster derived before round two was read",
        ))?;
        let k = (xp - peer.big_xp2 * (mine.xm2 * self.s)) * mine.xm2;
        if is_identity(&k) {
            return Err(EcjpakeError::DegenerateSecret);
        }
        let kx = k.to_affine().x();
        Ok(Sha256::digest(kx.as_slice()).into())
    }
}

/// Known answers from mbedtls 2.28 `library/ecjpake.c` (`ecjpake_test_*`): the password, the
/// fixed private keys x1..x4 and the four messages of its reference handshake, in hex. The proofs
/// in the messages were made with mbedtls's deterministic test RNG, so they serve to check
/// parsing and verification; the premaster follows from the keys and the password alone.
/// Shared with the integration tests and fuzz targets.
#[doc(hidden)]
pub mod test_vectors {
    pub const PASSWORD: &[u8] = b"threadjpaketest";
    pub const X1: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f21";
    pub const X2: &str = "6162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f81";
    pub const X3: &str = "6162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f81";
    pub const X4: &str = "c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe1";
    pub const CLI_ONE: &str = concat!(
        "4104accf0106ef858fa2d919331346805a78b58bbad0b844e5c7892879146187dd2666ada781bb7f11137225",
        "1a8910621f634df128ac48e381fd6ef9060731f694a441041dd0bd5d4566c9bed9ce7de701b5e82e08e84b73",
        "0466018ab903c79eb982172236c0c1728ae4bf73610d34de44246ef3d9c05a2236fb66a6583d7449308babce",
        "2072fe16662992e9235c25002f11b15087b82738e03c945bf7a2995dda1e98345841047ea6e3a4487037a9e0",
        "dbd79262b2cc273e779930fc18409ac5361c5fe669d702e147790aeb4ce7fd6575ab0f6c7fd1c335939aa863",
        "ba37ec91b7e32bb013bb2b4104a49558d32ed1ebfc1816af4ff09b55fcb4ca47b2a02d1e7caf1179ea3fe139",
        "5b22b861964016fabaf72c975695d93d4df0e5197fe9f040634ed59764937787be20bc4deebbf9b8d60a335f",
        "046ca3aa941e45864c7cadef9cf75b3d8b010e443ef0",
    );
    pub const SRV_ONE: &str = concat!(
        "41047ea6e3a4487037a9e0dbd79262b2cc273e779930fc18409ac5361c5fe669d702e147790aeb4ce7fd6575",
        "ab0f6c7fd1c335939aa863ba37ec91b7e32bb013bb2b410409f85b3d20ebd7885ce464c08d056d6428fe4dd9",
        "287aa365f131f4360ff386d846898bc4b41583c2a5197f65d78742746c12a5ec0a4ffe2f270a750a1d8fb516",
        "20934d74eb43e54df424fd96306c0117bf131afabf90a9d33d1198d905193735144104190a07700ffa4be6ae",
        "1d79ee0f06aeb544cd5addaabedf70f8623321332c54f355f0fbfec783ed359e5d0bf7377a0fc4ea7ace473c",
        "9c112b41ccd41ac56a56124104360a1cea33fce641156458e0a4eac219e96831e6aebc88b3f3752f93a0281d",
        "1bf1fb106051db9694a8d6e862a5ef1324a3d9e27894f1ee4f7c59199965a8dd4a2091847d2d22df3ee55faa",
        "2a3fb33fd2d1e055a07a7c61ecfb8d80ec00c2c9eb12",
    );
    pub const SRV_TWO: &str = concat!(
        "03001741040fb22b1d5d1123e0ef9feb9d8a2e590a1f4d7ced2c2b06586e8f2a16d4eb2fda4328a20b07d8fd",
        "667654ca18c54e32a333a0845451e926ee8804fd7af0aaa7a641045516ea3e54a0d5d8b2ce786b38d3833700",
        "29a5dbe4459c9dd601b408a24ae6465c8ac905b9eb03b5d3691c139ef83f1cd4200f6c9cd4ec392218a59ed2",
        "43d3c820ff724a9a70b88cb86f20b434c6865aa1cd7906dd7c9bce3525f508276f26836c",
    );
    pub const CLI_TWO: &str = concat!(
        "410469d54ee85e90ce3f1246742de507e939e81d1dc1c5cb988b58c310c9fdd9524d93720b45541c83ee8841",
        "191da7ced86e3312d43623c1d63e74989aba4affd1ee4104077e8c31e20e6bedb760c13593e69f15be85c27d",
        "68cd09ccb8c4183608917c5c3d409fac39fefee82f7292d36f0d23e055913f45a52b85dd8a2052e9e129bb4d",
        "200f011f19483535a6e89a580c9b0003baf21462ece91a82cc38dbdcae60d9c54c",
    );
    pub const PMS: &str = "f3d47f599844db92a569bbe7981e39d931fd743bf22e98f9b438f719d3c4f351";
}

#[cfg(test)]
mod tests {
    use super::test_vectors::*;
    use super::*;
    use p256::elliptic_curve::rand_core::{Rng, TryCryptoRng, TryRng};
    use std::convert::Infallible;

    use crate::unhex;

    /// Deterministic test generator: SHA-256 in counter mode over a seed. Reproducible runs;
    /// not for anything but tests.
    struct TestRng {
        seed: u64,
        counter: u64,
    }

    impl TestRng {
        fn new(seed: u64) -> Self {
            Self { seed, counter: 0 }
        }
    }

    impl TryRng for TestRng {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            for chunk in dst.chunks_mut(32) {
                let mut h = Sha256::new();
                h.update(self.seed.to_le_bytes());
                h.update(self.counter.to_le_bytes());
                self.counter += 1;
                let block = h.finalize();
                chunk.copy_from_slice(&block[..chunk.len()]);
            }
            Ok(())
        }
    }

    impl TryCryptoRng for TestRng {}

    /// Client and server loaded with the self-test private keys.
    fn reference_pair() -> (EcjpakeContext, EcjpakeContext) {
        let mut cli = EcjpakeContext::new(Role::Client, PASSWORD).unwrap();
        let mut srv = EcjpakeContext::new(Role::Server, PASSWORD).unwrap();
        cli.set_round_one_private_keys(&unhex(X1), &unhex(X2))
            .unwrap();
        srv.set_round_one_private_keys(&unhex(X3), &unhex(X4))
            .unwrap();
        (cli, srv)
    }

    #[test]
    fn vectors_parse_to_the_documented_layout() {
        let one = RoundOne::parse(&unhex(CLI_ONE)).unwrap();
        assert_eq!(one.buffer_len(), 330);
        assert!(one.keys.iter().all(|k| k.zkp.r.len() == 32));
        let two = RoundTwo::parse(&unhex(SRV_TWO), Role::Server).unwrap();
        assert!(two.with_curve_params);
        assert_eq!(two.buffer_len(), 168);
        let cli_two = RoundTwo::parse(&unhex(CLI_TWO), Role::Client).unwrap();
        assert!(!cli_two.with_curve_params);
        // Emit is the exact inverse of parse.
        for (hex_msg, from) in [(SRV_TWO, Role::Server), (CLI_TWO, Role::Client)] {
            let msg = RoundTwo::parse(&unhex(hex_msg), from).unwrap();
            let mut out = Vec::new();
            msg.emit(&mut out);
            assert_eq!(out, unhex(hex_msg));
        }
        let mut out = Vec::new();
        RoundOne::parse(&unhex(SRV_ONE)).unwrap().emit(&mut out);
        assert_eq!(out, unhex(SRV_ONE));
    }

    #[test]
    fn mbedtls_reference_handshake_gives_reference_premaster() {
        let (mut cli, mut srv) = reference_pair();
        srv.read_round_one(&unhex(CLI_ONE)).unwrap();
        cli.read_round_one(&unhex(SRV_ONE)).unwrap();
        cli.read_round_two(&unhex(SRV_TWO)).unwrap();
        srv.read_round_two(&unhex(CLI_TWO)).unwrap();
        assert_eq!(srv.derive_premaster().unwrap().to_vec(), unhex(PMS));
        assert_eq!(cli.derive_premaster().unwrap().to_vec(), unhex(PMS));
    }

    #[test]
    fn fixed_keys_give_the_reference_public_keys() {
        // The X points of mbedtls's round-one vectors are x*G for the fixed keys; only V and r
        // depend on mbedtls's test RNG.
        let (mut cli, mut srv) = reference_pair();
        let mut rng = TestRng::new(1);
        let ours = RoundOne::parse(&cli.write_round_one(&mut rng)).unwrap();
        let theirs = RoundOne::parse(&unhex(CLI_ONE)).unwrap();
        assert_eq!(ours.keys[0].x, theirs.keys[0].x);
        assert_eq!(ours.keys[1].x, theirs.keys[1].x);
        assert_ne!(ours.keys[0].zkp.v, theirs.keys[0].zkp.v);
        let ours = RoundOne::parse(&srv.write_round_one(&mut rng)).unwrap();
        let theirs = RoundOne::parse(&unhex(SRV_ONE)).unwrap();
        assert_eq!(ours.keys[0].x, theirs.keys[0].x);
        assert_eq!(ours.keys[1].x, theirs.keys[1].x);
    }

    #[test]
    fn our_round_two_against_reference_round_one_gives_reference_premaster() {
        // Server side reads mbedtls's client messages and writes its own round two; the client
        // (fixed keys) reads our round two. Both must agree with mbedtls's PMS since the PMS only
        // depends on the private keys and the password.
        let (mut cli, mut srv) = reference_pair();
        let mut rng = TestRng::new(2);
        srv.read_round_one(&unhex(CLI_ONE)).unwrap();
        cli.read_round_one(&unhex(SRV_ONE)).unwrap();
        let srv_two = srv.write_round_two(&mut rng).unwrap();
        assert_eq!(srv_two.get(..5), Some(&[0x03, 0x00, 0x17, 0x41, 0x04][..]));
        // Xs depends only on keys and password, so it equals the reference bytes.
        assert_eq!(srv_two.get(..68), unhex(SRV_TWO).get(..68));
        cli.read_round_two(&srv_two).unwrap();
        let cli_two = cli.write_round_two(&mut rng).unwrap();
        assert_eq!(cli_two.get(..66), unhex(CLI_TWO).get(..66));
        srv.read_round_two(&cli_two).unwrap();
        assert_eq!(cli.derive_premaster().unwrap().to_vec(), unhex(PMS));
        assert_eq!(srv.derive_premaster().unwrap().to_vec(), unhex(PMS));
    }

    fn exchange(
        cli_pw: &[u8],
        srv_pw: &[u8],
        seed: u64,
    ) -> Result<([u8; 32], [u8; 32]), EcjpakeError> {
        let mut rng = TestRng::new(seed);
        let mut cli = EcjpakeContext::new(Role::Client, cli_pw)?;
        let mut srv = EcjpakeContext::new(Role::Server, srv_pw)?;
        srv.read_round_one(&cli.write_round_one(&mut rng))?;
        cli.read_round_one(&srv.write_round_one(&mut rng))?;
        cli.read_round_two(&srv.write_round_two(&mut rng)?)?;
        srv.read_round_two(&cli.write_round_two(&mut rng)?)?;
        Ok((cli.derive_premaster()?, srv.derive_premaster()?))
    }

    #[test]
    fn random_exchange_agrees() {
        for seed in 0..4 {
            let (c, s) = exchange(b"J01NME", b"J01NME", seed).unwrap();
            assert_eq!(c, s);
        }
        let (a, _) = exchange(b"J01NME", b"J01NME", 10).unwrap();
        let (b, _) = exchange(b"J01NME", b"J01NME", 11).unwrap();
        assert_ne!(a, b, "fresh keys must give a fresh premaster");
    }

    #[test]
    fn wrong_password_disagrees() {
        // The proofs still verify (they do not involve the password); only the PMS differs,
        // which the handshake notices at Finished.
        let (c, s) = exchange(b"J01NME", b"J01NMF", 3).unwrap();
        assert_ne!(c, s);
    }

    #[test]
    fn long_password_is_reduced_like_an_integer() {
        // 40 bytes > 32: s is reduced mod n; both sides must still agree.
        let pw = [0xffu8; 40];
        let (c, s) = exchange(&pw, &pw, 5).unwrap();
        assert_eq!(c, s);
        // A leading zero byte does not change the integer, hence not the key.
        let (c1, s1) = exchange(b"\x00J01NME", b"J01NME", 6).unwrap();
        assert_eq!(c1, s1);
    }

    #[test]
    fn bad_passwords_are_refused() {
        assert_eq!(
            EcjpakeContext::new(Role::Client, b"").unwrap_err(),
            EcjpakeError::BadPassword
        );
        assert_eq!(
            EcjpakeContext::new(Role::Client, &[0, 0]).unwrap_err(),
            EcjpakeError::BadPassword
        );
    }

    #[test]
    fn out_of_order_calls_are_errors() {
        let mut rng = TestRng::new(7);
        let mut cli = EcjpakeContext::new(Role::Client, PASSWORD).unwrap();
        assert!(matches!(
            cli.write_round_two(&mut rng),
            Err(EcjpakeError::OutOfOrder(_))
        ));
        assert!(matches!(
            cli.read_round_two(&unhex(SRV_TWO)),
            Err(EcjpakeError::OutOfOrder(_))
        ));
        assert!(matches!(
            cli.derive_premaster(),
            Err(EcjpakeError::OutOfOrder(_))
        ));
    }

    #[test]
    fn round_one_keeps_keys_across_calls() {
        let mut rng = TestRng::new(8);
        let mut cli = EcjpakeContext::new(Role::Client, PASSWORD).unwrap();
        let a = RoundOne::parse(&cli.write_round_one(&mut rng)).unwrap();
        let b = RoundOne::parse(&cli.write_round_one(&mut rng)).unwrap();
        assert_eq!(a.keys[0].x, b.keys[0].x);
        assert_ne!(a.keys[0].zkp.v, b.keys[0].zkp.v);
    }

    fn srv_reading_cli_one(msg: &[u8]) -> Result<(), EcjpakeError> {
        // A failed read leaves the context as it was, so one context serves every case.
        thread_local! {
            static SRV: std::cell::RefCell<EcjpakeContext> =
                std::cell::RefCell::new(reference_pair().1);
        }
        SRV.with(|srv| srv.borrow_mut().read_round_one(msg))
    }

    #[test]
    fn tampered_round_one_is_rejected() {
        let good = unhex(CLI_ONE);
        assert!(srv_reading_cli_one(&good).is_ok());

        // Flip a bit of r of the first proof (r is bytes 133..165: 1+65 for X, 1+65 for V, 1 length).
        let mut bad = good.clone();
        bad[133 + 5] ^= 0x01;
        assert_eq!(
            srv_reading_cli_one(&bad),
            Err(EcjpakeError::ProofInvalid {
                key: "round-one key 1"
            })
        );

        // Identity: a client's message read by a client (expects "server" proofs).
        let (mut cli, _) = reference_pair();
        assert_eq!(
            cli.read_round_one(&good),
            Err(EcjpakeError::ProofInvalid {
                key: "round-one key 1"
            })
        );

        // X not on the curve: change the last byte of y.
        let mut bad = good.clone();
        bad[65] ^= 0x01;
        assert_eq!(
            srv_reading_cli_one(&bad),
            Err(EcjpakeError::PointNotOnCurve)
        );

        // Compressed point tag.
        let mut bad = good.clone();
        bad[1] = 0x02;
        assert!(matches!(
            srv_reading_cli_one(&bad),
            Err(EcjpakeError::UnsupportedPointFormat { .. })
        ));

        // r not below n: 32 bytes of 0xff.
        let mut bad = good.clone();
        bad[133..165].fill(0xff);
        assert_eq!(
            srv_reading_cli_one(&bad),
            Err(EcjpakeError::ScalarOutOfRange { len: 32 })
        );

        // Every truncation is an error, and so is a trailing byte.
        for len in 0..good.len() {
            assert!(srv_reading_cli_one(&good[..len]).is_err(), "len {len}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            srv_reading_cli_one(&long),
            Err(EcjpakeError::TrailingBytes(1))
        );
    }

    #[test]
    fn tampered_round_two_is_rejected() {
        let (mut cli, mut srv) = reference_pair();
        cli.read_round_one(&unhex(SRV_ONE)).unwrap();
        srv.read_round_one(&unhex(CLI_ONE)).unwrap();
        let good = unhex(SRV_TWO);

        let mut bad = good.clone();
        bad[2] = 0x18; // secp384r1
        assert_eq!(
            cli.read_round_two(&bad),
            Err(EcjpakeError::UnsupportedCurve([0x03, 0x00, 0x18]))
        );
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x80;
        assert_eq!(
            cli.read_round_two(&bad),
            Err(EcjpakeError::ProofInvalid {
                key: "round-two key"
            })
        );
        // The client's round two lacks the curve parameters: wrong reader fails cleanly.
        assert!(cli.read_round_two(&unhex(CLI_TWO)).is_err());
        assert!(srv.read_round_two(&good).is_err());
        for len in 0..good.len() {
            assert!(cli.read_round_two(&good[..len]).is_err(), "len {len}");
        }
        // A failed read leaves the context usable.
        cli.read_round_two(&good).unwrap();
        assert_eq!(cli.derive_premaster().unwrap().to_vec(), unhex(PMS));
    }

    #[test]
    fn any_single_byte_corruption_is_rejected() {
        // Every byte of a message is either framing (parse error), curve parameters, or input
        // to a proof (verification error), so no corruption may pass. Positions and masks come
        // from a seeded generator: the same cases every run.
        let (mut cli, mut srv) = reference_pair();
        cli.read_round_one(&unhex(SRV_ONE)).unwrap();
        srv.read_round_one(&unhex(CLI_ONE)).unwrap();
        let mut rng = TestRng::new(42);
        type Read = fn(&mut EcjpakeContext, &mut EcjpakeContext, &[u8]) -> Result<(), EcjpakeError>;
        let cases: [(&str, Read); 3] = [
            (CLI_ONE, |_, srv, m| srv.read_round_one(m)),
            (SRV_TWO, |cli, _, m| cli.read_round_two(m)),
            (CLI_TWO, |_, srv, m| srv.read_round_two(m)),
        ];
        for (hex_msg, read) in cases {
            let good = unhex(hex_msg);
            for _ in 0..60 {
                let pos = (rng.next_u32() as usize) % good.len();
                let mask = (rng.next_u32() % 255 + 1) as u8;
                let mut bad = good.clone();
                bad[pos] ^= mask;
                assert!(
                    read(&mut cli, &mut srv, &bad).is_err(),
                    "byte {pos} ^ {mask:#04x} accepted"
                );
            }
            // Random garbage of random length: an error, never a panic.
            for _ in 0..60 {
                let mut junk = vec![0u8; (rng.next_u32() % 400) as usize];
                rng.fill_bytes(&mut junk);
                assert!(read(&mut cli, &mut srv, &junk).is_err());
            }
        }
        // The contexts are still intact after all the failures.
        cli.read_round_two(&unhex(SRV_TWO)).unwrap();
        srv.read_round_two(&unhex(CLI_TWO)).unwrap();
        assert_eq!(srv.derive_premaster().unwrap().to_vec(), unhex(PMS));
    }

    #[test]
    fn r_with_leading_zeros_or_short_form_is_accepted() {
        // mbedtls reads r with mbedtls_mpi_read_binary: leading zero bytes do not matter.
        let msg = RoundOne::parse(&unhex(CLI_ONE)).unwrap();
        let mut padded = msg.clone();
        for key in &mut padded.keys {
            key.zkp.r.insert(0, 0);
        }
        let mut out = Vec::new();
        padded.emit(&mut out);
        assert_eq!(out.len(), 332);
        assert!(srv_reading_cli_one(&out).is_ok());
    }

    #[test]
    fn scalar_helpers() {
        assert_eq!(scalar_from_be(&[]), Some(Scalar::ZERO));
        assert_eq!(scalar_from_be(&[0; 40]), Some(Scalar::ZERO));
        assert_eq!(scalar_from_be(&[1; 33]), None);
        assert_eq!(scalar_to_minimal_be(&Scalar::from(0x0102u64)), vec![1, 2]);
        assert!(scalar_to_minimal_be(&Scalar::ZERO).is_empty());
        assert_eq!(password_scalar(b"\x01\x00"), Scalar::from(256u64));
    }
}
