//! Fault injection on the virtual air.

use std::time::Duration;

/// What the hub does to frames on a link (or on every link). Probabilities are per delivery, drawn
/// from the hub's seeded RNG, so a run with the same seed and traffic order loses the same frames.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Probability that a delivery is lost (0.0..=1.0).
    pub loss: f64,
    /// Fixed delay added to each delivery.
    pub delay: Duration,
    /// Extra random delay, uniform in 0..=jitter (may reorder frames).
    pub jitter: Duration,
    /// Probability that a delivery arrives twice.
    pub duplicate: f64,
    /// Probability that a delivered copy has one random bit flipped.
    pub corrupt: f64,
}

impl FaultConfig {
    /// A perfect link.
    pub fn none() -> Self {
        FaultConfig::default()
    }

    /// A link that loses each delivery with probability `loss`.
    pub fn lossy(loss: f64) -> Self {
        FaultConfig {
            loss,
            ..FaultConfig::default()
        }
    }

    /// True when the link does nothing to frames.
    pub fn is_none(&self) -> bool {
        self.loss <= 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.duplicate <= 0.0
            && self.corrupt <= 0.0
    }
}
