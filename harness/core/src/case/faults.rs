//! The `[faults]` table of a case: what the virtual air does to frames, and which board gets
//! which fault before which step.
//!
//! ```toml
//! [faults]
//! loss = 0.3              # probability that a delivery is lost (0..=1)
//! delay_ms = 20           # fixed delay per delivery
//! jitter_ms = 5           # extra random delay 0..=jitter (may reorder)
//! duplicate = 0.05        # probability that a delivery arrives twice
//! corrupt = 0.01          # probability that a delivered copy has a bit flipped
//! seed = 7                # RNG seed of the air (same seed + same traffic = same losses)
//! links = [["client", "server"]]   # only frames from client to server (default: every link)
//! from_step = "connect"  # the air turns bad before this step (number or id; default: at once)
//!
//! [[faults.board]]
//! node = "server"
//! step = 4                # before step 4 (1-based), or a step id; or `command = "coaps start"`
//! action = "crash"        # reboot | reset | crash | hang | close-console
//! every_attempt = false   # default: only the first attempt (a transient fault)
//! ```
//!
//! Board faults need virtual boards (they are control-socket requests to the virtual DK).

use std::time::Duration;

use ot_hil_air::FaultConfig;
use ot_hil_board::control::ControlRequest;
use serde::Deserialize;
use toml::Spanned;

use super::{Action, Location, Problem, Step};

/// Longest delay or jitter a case may ask for (longer is a dead link, not a slow one).
const MAX_DELAY_MS: f64 = 60_000.0;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFaults {
    loss: Option<Spanned<f64>>,
    delay_ms: Option<Spanned<f64>>,
    jitter_ms: Option<Spanned<f64>>,
    duplicate: Option<Spanned<f64>>,
    corrupt: Option<Spanned<f64>>,
    seed: Option<Spanned<i64>>,
    links: Option<Vec<Spanned<Vec<Spanned<String>>>>>,
    from_step: Option<Spanned<RawStepRef>>,
    #[serde(default)]
    board: Vec<Spanned<RawBoardFault>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoardFault {
    node: Spanned<String>,
    step: Option<Spanned<RawStepRef>>,
    command: Option<Spanned<String>>,
    action: Spanned<String>,
    #[serde(default)]
    every_attempt: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawStepRef {
    Number(i64),
    Id(String),
}

/// Faults of one case (empty: a perfect air and well-behaved boards).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseFaults {
    pub air: Option<AirFaults>,
    pub board: Vec<BoardFaultPlan>,
}

/// What the air does, on every link or only on the named ones.
#[derive(Debug, Clone, PartialEq)]
pub struct AirFaults {
    pub config: FaultConfig,
    pub seed: Option<u64>,
    /// Directed links `(from node, to node)`; empty = every link.
    pub links: Vec<(String, String)>,
    /// Index of the step before which the faults start (0 = before the boards are flashed).
    pub from_step: usize,
}

/// A fault a board gets before a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardFaultPlan {
    pub node: String,
    /// Index into [`super::Case::steps`]: the fault comes before this step runs.
    pub before_step: usize,
    pub action: BoardAction,
    /// Inject on every attempt, not only the first (a fault that does not go away).
    pub every_attempt: bool,
}

/// What happens to the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardAction {
    /// An unannounced reboot (watchdog, brown-out): the runner sees the boot banner mid-case.
    Reboot,
    /// A reset the case asks for: the runner waits for the prompt, then goes on.
    Reset,
    /// A Zephyr fatal error (printed with CONFIG_LOG), then reboot or halt.
    Crash,
    /// The firmware stops answering (console and radio); the process stays.
    Hang,
    /// The console port vanishes (USB re-enumeration).
    CloseConsole,
}

impl BoardAction {
    pub fn parse(s: &str) -> Option<BoardAction> {
        Some(match s {
            "reboot" => BoardAction::Reboot,
            "reset" => BoardAction::Reset,
            "crash" => BoardAction::Crash,
            "hang" => BoardAction::Hang,
            "close-console" => BoardAction::CloseConsole,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            BoardAction::Reboot => "reboot",
            BoardAction::Reset => "reset",
            BoardAction::Crash => "crash",
            BoardAction::Hang => "hang",
            BoardAction::CloseConsole => "close-console",
        }
    }

    /// The virtual DK's control request (`reset` for both kinds of reboot: the board cannot
    /// tell them apart, only the runner's expectation differs).
    pub fn control_request(self) -> ControlRequest {
        match self {
            BoardAction::Reboot | BoardAction::Reset => ControlRequest::Reset,
            BoardAction::Crash => ControlRequest::Crash { reason: 0 },
            BoardAction::Hang => ControlRequest::Hang,
            BoardAction::CloseConsole => ControlRequest::CloseConsole,
        }
    }
}

/// Validate the raw table against the case's nodes and (expanded) steps.
pub(super) fn validate(
    raw: RawFaults,
    at: &dyn Fn(usize) -> Location,
    nodes: &[String],
    steps: &[Step],
    problems: &mut Vec<Problem>,
) -> CaseFaults {
    let mut problem = |offset: usize, message: String| {
        problems.push(Problem {
            location: at(offset),
            message,
        })
    };
    let mut probability = |v: &Option<Spanned<f64>>, name: &str| -> f64 {
        match v {
            Some(p) if !(0.0..=1.0).contains(p.get_ref()) => {
                problem(
                    p.span().start,
                    format!("{name} must be a probability between 0 and 1"),
                );
                0.0
            }
            Some(p) => *p.get_ref(),
            None => 0.0,
        }
    };
    let loss = probability(&raw.loss, "loss");
    let duplicate = probability(&raw.duplicate, "duplicate");
    let corrupt = probability(&raw.corrupt, "corrupt");
    let mut millis = |v: &Option<Spanned<f64>>, name: &str| -> Duration {
        match v {
            Some(ms) if !(0.0..=MAX_DELAY_MS).contains(ms.get_ref()) => {
                problem(
                    ms.span().start,
                    format!("{name} must be between 0 and {MAX_DELAY_MS} ms"),
                );
                Duration::ZERO
            }
            Some(ms) => Duration::from_secs_f64(ms.get_ref() / 1000.0),
            None => Duration::ZERO,
        }
    };
    let delay = millis(&raw.delay_ms, "delay_ms");
    let jitter = millis(&raw.jitter_ms, "jitter_ms");
    let seed = match &raw.seed {
        Some(s) => match u64::try_from(*s.get_ref()) {
            Ok(v) => Some(v),
            Err(_) => {
                problem(s.span().start, "seed must not be negative".into());
                None
            }
        },
        None => None,
    };
    let mut links = Vec::new();
    for link in raw.links.iter().flatten() {
        match link.get_ref().as_slice() {
            [from, to] => {
                for n in [from, to] {
                    if !nodes.contains(n.get_ref()) {
                        problem(
                            n.span().start,
                            format!("link names unknown node `{}`", n.get_ref()),
                        );
                    }
                }
                if from.get_ref() == to.get_ref() {
                    problem(link.span().start, "a link joins two different nodes".into());
                }
                links.push((from.get_ref().clone(), to.get_ref().clone()));
            }
            _ => problem(
                link.span().start,
                "a link is [\"from node\", \"to node\"]".into(),
            ),
        }
    }
    let config = FaultConfig {
        loss,
        delay,
        jitter,
        duplicate,
        corrupt,
    };
    let from_step = match &raw.from_step {
        Some(s) => match step_index(s.get_ref(), steps) {
            Ok(i) => i,
            Err(message) => {
                problem(s.span().start, message);
                0
            }
        },
        None => 0,
    };
    let air = if config.is_none() && links.is_empty() && seed.is_none() {
        None
    } else {
        Some(AirFaults {
            config,
            seed,
            links,
            from_step,
        })
    };

    let mut board = Vec::new();
    for entry in &raw.board {
        let f = entry.get_ref();
        let node = f.node.get_ref();
        if !nodes.contains(node) {
            problem(f.node.span().start, format!("unknown node `{node}`"));
            continue;
        }
        let Some(action) = BoardAction::parse(f.action.get_ref()) else {
            problem(
                f.action.span().start,
                format!(
                    "unknown action {:?} (reboot, reset, crash, hang, close-console)",
                    f.action.get_ref()
                ),
            );
            continue;
        };
        let before_step = match (&f.step, &f.command) {
            (Some(_), Some(_)) | (None, None) => {
                problem(
                    entry.span().start,
                    "a board fault names either `step` or `command`".into(),
                );
                continue;
            }
            (Some(s), None) => match step_index(s.get_ref(), steps) {
                Ok(i) => i,
                Err(message) => {
                    problem(s.span().start, message);
                    continue;
                }
            },
            (None, Some(c)) => {
                let found = steps.iter().position(|st| {
                    st.node == *node
                        && matches!(&st.action, Action::Command { command, .. }
                            if command.to_string().contains(c.get_ref().as_str()))
                });
                match found {
                    Some(i) => i,
                    None => {
                        problem(
                            c.span().start,
                            format!("no command step of `{node}` contains {:?}", c.get_ref()),
                        );
                        continue;
                    }
                }
            }
        };
        board.push(BoardFaultPlan {
            node: node.clone(),
            before_step,
            action,
            every_attempt: f.every_attempt,
        });
    }
    CaseFaults { air, board }
}

/// A 1-based step number or a step id -> index into the steps.
fn step_index(r: &RawStepRef, steps: &[Step]) -> Result<usize, String> {
    match r {
        RawStepRef::Number(n) => match usize::try_from(*n) {
            Ok(n) if (1..=steps.len()).contains(&n) => Ok(n - 1),
            _ => Err(format!("step {n} does not exist (1..={})", steps.len())),
        },
        RawStepRef::Id(id) => steps
            .iter()
            .position(|st| st.id.as_deref() == Some(id))
            .ok_or_else(|| format!("no step has id `{id}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip() {
        for a in [
            BoardAction::Reboot,
            BoardAction::Reset,
            BoardAction::Crash,
            BoardAction::Hang,
            BoardAction::CloseConsole,
        ] {
            assert_eq!(BoardAction::parse(a.name()), Some(a));
        }
        assert_eq!(BoardAction::parse("explode"), None);
    }
}
