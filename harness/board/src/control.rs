//! The control protocol of a virtual board: what the runner asks a virtual DK besides its
//! console (the virtual probe's flash and reset, fault injection, the DTLS engine's transcripts).
//!
//! One request per connection to the board's control socket, one line each way: a request is a
//! verb and at most one argument (`flash <manifest path>`, `crash [reason]`); the reply is
//! `ok[ <text>]` or `error <message>`. [`ControlRequest`] and [`ControlReply`] are the only
//! writers and readers of these lines.

use std::fmt;
use std::path::PathBuf;

/// A request to a virtual board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    /// Load the variant manifest at this path (the virtual DK's "flash"), then boot it.
    Flash(PathBuf),
    /// The hash of the loaded image (reply `ok <sha256>` or `ok none`).
    ImageHash,
    /// The DTLS engine's handshake transcripts of this boot (reply `ok <json>`).
    Transcripts,
    /// The DTLS engine's NSS key-log lines of this boot's sessions (reply `ok <json array>`).
    KeyLog,
    /// Stop answering on the console, as a board stuck in a busy loop.
    Hang,
    /// A fatal error with Zephyr's `k_fatal_error_reason` code (0 = `K_ERR_CPU_EXCEPTION`).
    Crash { reason: u32 },
    /// Reset the board (what the reset button and the probe's reset do).
    Reset,
    /// Kconfig warnings of the loaded image (reply `ok <count>[ <w1> | <w2> ...]`).
    Warnings,
    /// Close the console port, as a USB cable pulled out.
    CloseConsole,
}

/// A control line that is not a request or reply of this protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlParseError {
    #[error("unknown request {0:?}")]
    UnknownRequest(String),
    #[error("`{verb}` takes no argument, got {arg:?}")]
    UnexpectedArgument { verb: &'static str, arg: String },
    #[error("`flash` needs the path of a variant manifest")]
    MissingPath,
    #[error("crash takes a fatal error reason code, not {0:?}")]
    BadCrashReason(String),
    #[error("reply is neither `ok` nor `error`: {0:?}")]
    BadReply(String),
}

impl ControlRequest {
    /// The request's verb as written on the socket.
    pub fn verb(&self) -> &'static str {
        match self {
            ControlRequest::Flash(_) => "flash",
            ControlRequest::ImageHash => "image-hash",
            ControlRequest::Transcripts => "transcripts",
            ControlRequest::KeyLog => "key-log",
            ControlRequest::Hang => "hang",
            ControlRequest::Crash { .. } => "crash",
            ControlRequest::Reset => "reset",
            ControlRequest::Warnings => "warnings",
            ControlRequest::CloseConsole => "close-console",
        }
    }

    /// The request line, without its line ending.
    pub fn encode(&self) -> String {
        match self {
            ControlRequest::Flash(path) => format!("flash {}", path.display()),
            ControlRequest::Crash { reason: 0 } => "crash".into(),
            ControlRequest::Crash { reason } => format!("crash {reason}"),
            other => other.verb().into(),
        }
    }

    /// Read one request line (line ending and surrounding blanks ignored).
    pub fn parse(line: &str) -> Result<ControlRequest, ControlParseError> {
        let line = line.trim();
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v, a.trim()),
            None => (line, ""),
        };
        let bare = |request: ControlRequest| {
            if arg.is_empty() {
                Ok(request)
            } else {
                Err(ControlParseError::UnexpectedArgument {
                    verb: request.verb(),
                    arg: arg.to_string(),
                })
            }
        };
        match verb {
            "flash" if arg.is_empty() => Err(ControlParseError::MissingPath),
            "flash" => Ok(ControlRequest::Flash(PathBuf::from(arg))),
            "crash" if arg.is_empty() => Ok(ControlRequest::Crash { reason: 0 }),
            "crash" => arg
                .parse()
                .map(|reason| ControlRequest::Crash { reason })
                .map_err(|_| ControlParseError::BadCrashReason(arg.to_string())),
            "image-hash" => bare(ControlRequest::ImageHash),
            "transcripts" => bare(ControlRequest::Transcripts),
            "key-log" => bare(ControlRequest::KeyLog),
            "hang" => bare(ControlRequest::Hang),
            "reset" => bare(ControlRequest::Reset),
            "warnings" => bare(ControlRequest::Warnings),
            "close-console" => bare(ControlRequest::CloseConsole),
            _ => Err(ControlParseError::UnknownRequest(line.to_string())),
        }
    }
}

impl fmt::Display for ControlRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// A virtual board's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlReply {
    /// Done; the text (possibly empty) is the request's result.
    Ok(String),
    /// Refused or failed, and why.
    Error(String),
}

impl ControlReply {
    pub fn ok() -> ControlReply {
        ControlReply::Ok(String::new())
    }

    /// The reply line, without its line ending. Line breaks inside the text become spaces: a
    /// reply is one line.
    pub fn encode(&self) -> String {
        let one_line = |s: &str| s.replace(['\r', '\n'], " ");
        match self {
            ControlReply::Ok(text) if text.is_empty() => "ok".into(),
            ControlReply::Ok(text) => format!("ok {}", one_line(text)),
            ControlReply::Error(message) => format!("error {}", one_line(message)),
        }
    }

    /// Read one reply line.
    pub fn parse(line: &str) -> Result<ControlReply, ControlParseError> {
        let line = line.trim_end_matches(['\r', '\n']);
        let word = |prefix: &str| {
            line.strip_prefix(prefix)
                .filter(|rest| rest.is_empty() || rest.starts_with(' '))
                .map(|rest| rest.trim().to_string())
        };
        if let Some(text) = word("ok") {
            Ok(ControlReply::Ok(text))
        } else if let Some(message) = word("error") {
            Ok(ControlReply::Error(message))
        } else {
            Err(ControlParseError::BadReply(line.to_string()))
        }
    }
}

impl From<Result<String, String>> for ControlReply {
    fn from(r: Result<String, String>) -> ControlReply {
        match r {
            Ok(text) => ControlReply::Ok(text),
            Err(message) => ControlReply::Error(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let all = [
            ControlRequest::Flash(PathBuf::from("/v/ncs-default.toml")),
            ControlRequest::ImageHash,
            ControlRequest::Transcripts,
            ControlRequest::KeyLog,
            ControlRequest::Hang,
            ControlRequest::Crash { reason: 0 },
            ControlRequest::Crash { reason: 3 },
            ControlRequest::Reset,
            ControlRequest::Warnings,
            ControlRequest::CloseConsole,
        ];
        for r in all {
            assert_eq!(ControlRequest::parse(&r.encode()), Ok(r.clone()), "{r}");
        }
        assert_eq!(
            ControlRequest::parse("crash  7 \n"),
            Ok(ControlRequest::Crash { reason: 7 })
        );
    }

    #[test]
    fn bad_requests_are_named() {
        assert_eq!(
            ControlRequest::parse("frobnicate"),
            Err(ControlParseError::UnknownRequest("frobnicate".into()))
        );
        assert_eq!(
            ControlRequest::parse("flash"),
            Err(ControlParseError::MissingPath)
        );
        assert_eq!(
            ControlRequest::parse("crash boom"),
            Err(ControlParseError::BadCrashReason("boom".into()))
        );
        assert!(matches!(
            ControlRequest::parse("reset now"),
            Err(ControlParseError::UnexpectedArgument { verb: "reset", .. })
        ));
    }

    #[test]
    fn replies_round_trip() {
        for r in [
            ControlReply::ok(),
            ControlReply::Ok("abc 123".into()),
            ControlReply::Error("no image".into()),
        ] {
            assert_eq!(ControlReply::parse(&r.encode()), Ok(r.clone()));
        }
        assert_eq!(
            ControlReply::Error("a\nb".into()).encode(),
            "error a b",
            "a reply stays one line"
        );
        assert!(ControlReply::parse("okay").is_err());
        assert!(ControlReply::parse("").is_err());
    }
}
