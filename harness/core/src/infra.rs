//! Infrastructure problems: why a case run could not reach a verdict on the firmware (a board
//! gone, a prompt that never came, a busy lab, a lost sniffer). The error is typed so its kind
//! survives into the events and reports (`kind` in `results.json`), with its `source()` chain kept
//! for the rendered message.

use std::sync::Arc;

use serde::ser::SerializeStruct;

/// Any error kept as the source of an [`InfraError`] (shared: events are cloned to every
/// reporter).
pub type SharedError = Arc<dyn std::error::Error + Send + Sync>;

/// What went wrong, by kind.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InfraError {
    /// No board could be had for the case run: allocation, locks, a process or an air that did
    /// not start, a work folder that could not be made.
    #[error("{context}")]
    Acquire {
        context: String,
        #[source]
        source: Option<SharedError>,
    },
    /// A console could not be opened or written.
    #[error("{0}")]
    Console(#[source] SharedError),
    /// Flashing failed (or its task did).
    #[error("{0}")]
    Flash(#[source] SharedError),
    /// The board did not show its prompt in time.
    #[error("{0}")]
    NotReady(String),
    /// The board went away: its port closed or its process vanished.
    #[error("{0}")]
    Lost(String),
    /// A fault the case plans could not be injected.
    #[error("{0}")]
    Fault(String),
    /// The case's air witness failed: the sniffer did not start, died, or missed frames.
    #[error(transparent)]
    Sniffer(#[from] SnifferProblem),
    /// The case clock could not move: a simulated board stopped answering the air hub.
    #[error(transparent)]
    ClockStalled(#[from] crate::step_clock::ClockStalled),
    /// A bug in ot-hil (a panic in the case's task).
    #[error("{0}")]
    Internal(String),
}

/// Why a sniffer's capture cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnifferProblem {
    /// The sniffer could not be started.
    #[error("sniffer did not start: {0}")]
    Start(String),
    /// The sniffer board's console ended mid-case (its process exited or was killed, the port
    /// vanished): the capture ends there.
    #[error("sniffer lost during the case: {0}")]
    Lost(String),
    /// The air handed the sniffer frames its capture never got (see
    /// [`crate::air::witness::missed_frames`] for how they are counted).
    #[error(
        "sniffer missed {missed} frames: the air delivered {delivered} to it, its capture has {captured}"
    )]
    Missed {
        missed: u64,
        delivered: u64,
        captured: u64,
    },
}

impl InfraError {
    /// A machine-readable name of the kind (`results.json`'s `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            InfraError::Acquire { .. } => "acquire",
            InfraError::Console(_) => "console",
            InfraError::Flash(_) => "flash",
            InfraError::NotReady(_) => "not-ready",
            InfraError::Lost(_) => "board-lost",
            InfraError::Fault(_) => "fault-injection",
            InfraError::Sniffer(SnifferProblem::Start(_)) => "sniffer-start",
            InfraError::Sniffer(SnifferProblem::Lost(_)) => "sniffer-lost",
            InfraError::Sniffer(SnifferProblem::Missed { .. }) => "sniffer-missed-frames",
            InfraError::ClockStalled(_) => "clock-stalled",
            InfraError::Internal(_) => "internal",
        }
    }

    /// An acquisition problem with no error behind it.
    pub fn acquire(context: impl Into<String>) -> InfraError {
        InfraError::Acquire {
            context: context.into(),
            source: None,
        }
    }

    /// An acquisition problem caused by `source`.
    pub fn acquire_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> InfraError {
        InfraError::Acquire {
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// A console that could not be opened or written.
    pub fn console(error: impl std::error::Error + Send + Sync + 'static) -> InfraError {
        InfraError::Console(Arc::new(error))
    }

    /// A flash that failed.
    pub fn flash(error: impl std::error::Error + Send + Sync + 'static) -> InfraError {
        InfraError::Flash(Arc::new(error))
    }

    /// The rendered message with its causes, `outer: cause: root`.
    pub fn message(&self) -> String {
        crate::error_text::error_chain(self)
    }
}

/// Why a step (or the set-up of a case run) could not be carried out at all: the board, not
/// the firmware.
#[derive(Debug, Clone)]
pub struct InfraFailure {
    pub board: String,
    pub step: Option<String>,
    pub error: InfraError,
}

impl InfraFailure {
    /// A problem of `board` outside any step.
    pub fn new(board: &str, error: impl Into<InfraError>) -> InfraFailure {
        InfraFailure {
            board: board.to_string(),
            step: None,
            error: error.into(),
        }
    }

    /// The same problem, during `step`.
    pub fn at_step(mut self, step: impl Into<String>) -> InfraFailure {
        self.step = Some(step.into());
        self
    }

    /// For people: the error and its causes.
    pub fn reason(&self) -> String {
        self.error.message()
    }
}

/// `{board, step, reason, kind}`: the message rendered, the kind kept.
impl serde::Serialize for InfraFailure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("InfraFailure", 4)?;
        st.serialize_field("board", &self.board)?;
        st.serialize_field("step", &self.step)?;
        st.serialize_field("reason", &self.reason())?;
        st.serialize_field("kind", self.error.kind())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_survives_and_the_message_keeps_its_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot open /dev/ttyACM9")]
        struct Open(#[source] std::io::Error);
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such device");
        let f =
            InfraFailure::new("dut", InfraError::console(Open(io))).at_step("dut: send `state`");
        let json = serde_json::to_value(&f).expect("serializes");
        assert_eq!(json["kind"], "console");
        assert_eq!(json["reason"], "cannot open /dev/ttyACM9: no such device");
        assert_eq!(json["step"], "dut: send `state`");
        // The chain is kept: the console error, then the I/O error under it.
        let open = std::error::Error::source(&f.error).expect("the console error");
        assert_eq!(open.to_string(), "cannot open /dev/ttyACM9");
        let io = open.source().map(|e| e.to_string());
        assert_eq!(io.as_deref(), Some("no such device"));

        let missed = InfraFailure::new(
            "sniffer",
            SnifferProblem::Missed {
                missed: 3,
                delivered: 40,
                captured: 37,
            },
        );
        assert_eq!(missed.error.kind(), "sniffer-missed-frames");
        assert_eq!(
            missed.reason(),
            "sniffer missed 3 frames: the air delivered 40 to it, its capture has 37"
        );
    }
}
