//! The clock a case run's steps are timed on: the host's (`--clock real`, and always for boards
//! that are not simulated), or the case clock of the run's air (`--clock virtual`, the default
//! for virtual DKs).
//!
//! On the case clock the runner's waits (a command's reply, an `expect`, a poll interval, a
//! quiet window, a prompt after a reset) are waits on the air hub's scheduler
//! ([`ot_hil_air::CaseClock::wait`]): time moves only while the runner waits and every board is
//! idle, straight to the next thing due. A timeout of 8 s costs no 8 s of wall time, and a run
//! depends on the case and its seed, not on how busy the machine is. A real-time watchdog
//! ([`CLOCK_WATCHDOG`]) still ends a wait whose boards stop answering.

use std::time::{Duration, Instant};

use ot_hil_air::{CaseClock, Wake};
use tokio::sync::watch;

/// Real time a wait on the case clock may go without the clock moving or a console changing
/// before the case run ends as an infrastructure error: far longer than any board needs to
/// handle one input, short enough that a hung board does not hold a CI job.
pub const CLOCK_WATCHDOG: Duration = Duration::from_secs(30);

/// Which clock to time simulated boards on (`--clock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClockMode {
    /// The case clock of the air (virtual time).
    #[default]
    Virtual,
    /// The host's clock, as with real boards.
    Real,
}

/// The clock one case run's steps are timed on.
#[derive(Debug, Clone, Default)]
pub enum StepClock {
    #[default]
    Real,
    Virtual {
        clock: CaseClock,
        /// The host instant standing for instant 0 of the case clock.
        origin: Instant,
    },
}

/// A wait ended because the boards stopped answering: which hold the clock, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the case clock stalled for {}: {}", humantime::format_duration(CLOCK_WATCHDOG), holding.join("; "))]
pub struct ClockStalled {
    pub holding: Vec<String>,
}

/// What the consoles looked like when a waiter last checked them (see [`StepClock::observe`]).
#[derive(Debug, Clone, Copy)]
pub struct Observed(u64);

impl StepClock {
    pub fn on(clock: CaseClock) -> StepClock {
        StepClock::Virtual {
            clock,
            origin: Instant::now(),
        }
    }

    pub fn is_virtual(&self) -> bool {
        matches!(self, StepClock::Virtual { .. })
    }

    /// Now, on this clock (an `Instant` offset from the origin by the case clock's instant).
    pub fn now(&self) -> Instant {
        match self {
            StepClock::Real => Instant::now(),
            StepClock::Virtual { clock, origin } => *origin + Duration::from_micros(clock.now_us()),
        }
    }

    /// The case clock's instant (µs), on a case clock.
    pub fn case_us(&self) -> Option<u64> {
        match self {
            StepClock::Real => None,
            StepClock::Virtual { clock, .. } => Some(clock.now_us()),
        }
    }

    /// Take before looking at a console; pass to [`StepClock::wait`] after.
    pub fn observe(&self) -> Observed {
        match self {
            StepClock::Real => Observed(0),
            StepClock::Virtual { clock, .. } => Observed(clock.generation()),
        }
    }

    /// Wait until a console changes (`changed` on the host's clock; any console newer than
    /// `seen` on the case clock) or `deadline` comes.
    pub async fn wait(
        &self,
        seen: Observed,
        changed: &mut watch::Receiver<()>,
        deadline: Instant,
    ) -> Result<(), ClockStalled> {
        match self {
            StepClock::Real => {
                let _ = tokio::time::timeout_at(deadline.into(), changed.changed()).await;
                Ok(())
            }
            StepClock::Virtual { clock, origin } => {
                let after = deadline.saturating_duration_since(*origin);
                let mut us = u64::try_from(after.as_micros()).unwrap_or(u64::MAX);
                if Duration::from_micros(us) < after {
                    us = us.saturating_add(1);
                }
                match clock.wait(us, seen.0, CLOCK_WATCHDOG).await {
                    Wake::Changed | Wake::Deadline => Ok(()),
                    Wake::Stalled => Err(ClockStalled {
                        holding: clock.holding(),
                    }),
                }
            }
        }
    }

    /// On a case clock: wait until every board has handled what it was sent (and the frames of
    /// this instant are delivered), without moving time, so what a step looks at next is the
    /// same from run to run. On the host's clock there is nothing to wait for.
    pub async fn settle(&self) -> Result<(), ClockStalled> {
        match self {
            StepClock::Real => Ok(()),
            StepClock::Virtual { clock, .. } => {
                match clock
                    .wait(clock.now_us(), clock.generation(), CLOCK_WATCHDOG)
                    .await
                {
                    Wake::Changed | Wake::Deadline => Ok(()),
                    Wake::Stalled => Err(ClockStalled {
                        holding: clock.holding(),
                    }),
                }
            }
        }
    }

    /// Sleep until `deadline` on this clock (consoles may change meanwhile).
    pub async fn sleep_until(&self, deadline: Instant) -> Result<(), ClockStalled> {
        let (_keep, mut never) = watch::channel(());
        while self.now() < deadline {
            let seen = self.observe();
            match self {
                StepClock::Real => {
                    tokio::time::sleep_until(deadline.into()).await;
                    return Ok(());
                }
                StepClock::Virtual { .. } => self.wait(seen, &mut never, deadline).await?,
            }
        }
        Ok(())
    }
}
