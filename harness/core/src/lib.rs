//! ot-hil: the runner library.
//!
//! Cases ([`case`]) are loaded and validated before any board is touched; each board gets a
//! console ([`console`]: framing, line buffer, transports) driven by the step executor
//! ([`exec`]); the [`runner`] gives each case its boards (virtual DKs on the run's own air,
//! host processes on PTYs), classifies the result against the variant's expectation and emits
//! typed [`events`] that the reporters ([`report`]) turn into progress lines, JUnit XML and a JSON
//! results file.

pub mod air;
pub mod case;
pub mod check;
pub mod console;
pub mod events;
pub mod exec;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod otsim;
pub mod profile;
pub mod report;
pub mod resilience;
pub mod runner;
pub mod variants;
pub mod virtual_lab;
