//! ot-hil: the runner library (package `ot-hil-runner`).
//!
//! Cases ([`case`]) are loaded and validated once, before any board is touched; each board gets a
//! console ([`console`]: framing, line buffer, transports) driven by the step executor
//! ([`exec`]); the [`runner`] takes each case's boards from a [`boards::BoardSource`] (virtual
//! DKs on the case's own air, host processes on PTYs, boards of a hardware map), classifies the
//! result against the variant's expectation and emits typed [`events`] (steps, boards, the air's
//! counters and capture, snapshot comparisons; infrastructure problems as typed [`infra`]
//! errors) that the reporters ([`report`]) turn into progress lines, JUnit XML, a JSON results
//! file and `report.html`.
//!
//! Must not depend on: the virtual DK (`ot-hil-vdk`): it starts virtual DKs as processes and
//! speaks to them through `ot-hil-board`'s control protocol; nor on the command line.

pub mod air;
pub mod attach;
pub mod bench;
pub mod board_process;
pub mod boards;
pub mod case;
pub mod check;
pub mod console;
pub mod error_text;
pub mod events;
pub mod exec;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod infra;
pub mod otsim;
pub mod out_dir;
pub mod panics;
pub mod profile;
pub mod report;
pub mod resilience;
pub mod run_clock;
pub mod runner;
pub mod scratch;
pub mod select;
pub mod step_clock;
pub mod variants;
pub mod vdk_server;
pub mod virtual_lab;
