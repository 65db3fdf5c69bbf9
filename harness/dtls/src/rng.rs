//! Random number sources: the system RNG for real use, a seeded one for reproducible tests.

use std::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};
use sha2::{Digest, Sha256};

/// The RNG type the engine holds.
pub type BoxedRng = Box<dyn rand_core::CryptoRng + Send>;

/// The operating system's RNG. It panics only if the OS cannot supply randomness at all.
pub fn system_rng() -> BoxedRng {
    Box::new(rand_core::UnwrapErr(getrandom::SysRng))
}

/// Deterministic RNG for tests: SHA-256(seed || counter) blocks. Not for real keys.
#[derive(Debug, Clone)]
pub struct SeededRng {
    seed: [u8; 32],
    counter: u64,
    buf: [u8; 32],
    used: usize,
}

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_be_bytes());
        SeededRng {
            seed: s,
            counter: 0,
            buf: [0; 32],
            used: 32,
        }
    }

    pub fn boxed(seed: u64) -> BoxedRng {
        Box::new(Self::new(seed))
    }
}

impl TryRng for SeededRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst.iter_mut() {
            if self.used == self.buf.len() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.buf = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *d = self.buf[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

impl TryCryptoRng for SeededRng {}
