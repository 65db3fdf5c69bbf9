//! One clock for every board log of a run: lines are stamped with their offset from the run's
//! start (the same origin for every board, so lines of different boards compare), and each log's
//! header gives that start as wall-clock time.
//!
//! The origin is set once per process (the runner sets it when a run starts; a console opened
//! outside a run sets it at its first use), so runs in one process share it.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

static ORIGIN: OnceLock<(Instant, SystemTime)> = OnceLock::new();

/// The run's origin: the monotonic instant log offsets count from, and the wall-clock time of it.
pub fn origin() -> (Instant, SystemTime) {
    *ORIGIN.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// Wall-clock time now, on the run's clock: the origin's wall-clock time plus the monotonic time
/// since (a clock step during the run moves neither logs nor captures).
pub fn wall_now() -> SystemTime {
    let (at, wall) = origin();
    wall + at.elapsed()
}

/// Time since the origin: now on the board logs' time axis.
pub fn elapsed() -> std::time::Duration {
    origin().0.elapsed()
}

/// Seconds from the origin to `at`.
pub fn offset(at: Instant) -> f64 {
    at.saturating_duration_since(origin().0).as_secs_f64()
}

/// The first line of a board log.
pub fn log_header(board: &str) -> String {
    format!(
        "# board log of {board}; [seconds] since the run started at {}",
        humantime::format_rfc3339_millis(origin().1)
    )
}
