//! The board's source of randomness (the nRF52840's RNG peripheral, for the model): the host's
//! entropy, or, with `--seed`, a generator seeded from it so that a virtual DK on a case clock
//! behaves the same in every run of a case (MLE jitter, trickle intervals, CoAP tokens and
//! message ids, DTLS randoms and keys).

use std::sync::{Mutex, MutexGuard, OnceLock};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

static BOARD_RNG: OnceLock<Mutex<StdRng>> = OnceLock::new();
static SEEDED: OnceLock<()> = OnceLock::new();

fn board_rng() -> MutexGuard<'static, StdRng> {
    BOARD_RNG
        .get_or_init(|| Mutex::new(StdRng::from_os_rng()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Draw everything random from `seed` from now on (once, at start-up, before the board runs).
pub fn seed(seed: u64) {
    let _ = SEEDED.set(());
    *board_rng() = StdRng::seed_from_u64(seed);
}

/// Run `f` with the board's generator.
pub fn with<R>(f: impl FnOnce(&mut StdRng) -> R) -> R {
    f(&mut board_rng())
}

/// A generator for one DTLS connection: the host's entropy, or drawn from the seeded board
/// generator (reproducible, so only for boards started with `--seed`).
pub fn dtls_rng() -> ot_hil_dtls::rng::BoxedRng {
    if SEEDED.get().is_some() {
        ot_hil_dtls::rng::SeededRng::boxed(with(|r| r.random()))
    } else {
        ot_hil_dtls::rng::system_rng()
    }
}
