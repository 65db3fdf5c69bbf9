//! The launch protocol of the virtual DK server (`ot-hil vdk-server`): the runner asks one
//! process, started once per run, to fork a virtual DK, instead of executing the program anew
//! for every board.
//!
//! One datagram each way on a `SOCK_SEQPACKET` socket pair. A request is the board's command-line
//! options (what follows `vdk`), each ended by a NUL byte (arguments cannot contain one); with it
//! may travel one descriptor (`SCM_RIGHTS`): the file the board's stdout and stderr go to. A
//! reply is `ok <pid>` with one descriptor, a pidfd of the board, or `error <message>`.
//! [`LaunchRequest`] and [`LaunchReply`] are the only writers and readers of these datagrams.

use std::ffi::{OsStr, OsString};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Bytes of spare room at the end of the server's command line (`--title-room`), which each
/// forked board overwrites with its own command line so that `ps` shows what it is.
pub const TITLE_ROOM: usize = 2048;

/// The largest datagram either side sends or accepts.
pub const MAX_LAUNCH_MESSAGE: usize = 64 * 1024;

/// Start a virtual DK with these options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    pub args: Vec<OsString>,
}

/// The server's answer to one [`LaunchRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchReply {
    /// The board runs as process `pid` (its pidfd travels with the reply).
    Started { pid: u32 },
    /// No board was started.
    Failed(String),
}

/// A datagram that is not a request or reply of this protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchParseError {
    #[error("empty launch request")]
    Empty,
    #[error("launch request of {0} bytes (at most {MAX_LAUNCH_MESSAGE})")]
    TooLong(usize),
    #[error("launch request does not end with a NUL byte")]
    Unterminated,
    #[error("launch reply is neither `ok <pid>` nor `error <message>`: {0:?}")]
    BadReply(String),
}

impl LaunchRequest {
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for arg in &self.args {
            out.extend_from_slice(arg.as_bytes());
            out.push(0);
        }
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<LaunchRequest, LaunchParseError> {
        if bytes.is_empty() {
            return Err(LaunchParseError::Empty);
        }
        if bytes.len() > MAX_LAUNCH_MESSAGE {
            return Err(LaunchParseError::TooLong(bytes.len()));
        }
        let body = bytes
            .strip_suffix(&[0])
            .ok_or(LaunchParseError::Unterminated)?;
        Ok(LaunchRequest {
            args: body
                .split(|b| *b == 0)
                .map(|a| OsStr::from_bytes(a).to_os_string())
                .collect(),
        })
    }
}

impl LaunchReply {
    pub fn emit(&self) -> Vec<u8> {
        match self {
            LaunchReply::Started { pid } => format!("ok {pid}").into_bytes(),
            LaunchReply::Failed(message) => {
                // One line, cut to fit a datagram.
                let line = message.replace('\n', " ");
                let mut text = format!("error {line}").into_bytes();
                text.truncate(MAX_LAUNCH_MESSAGE);
                text
            }
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<LaunchReply, LaunchParseError> {
        let text = String::from_utf8_lossy(bytes);
        let bad = || LaunchParseError::BadReply(text.chars().take(200).collect());
        if let Some(pid) = text.strip_prefix("ok ") {
            return pid
                .parse()
                .map(|pid| LaunchReply::Started { pid })
                .map_err(|_| bad());
        }
        match text.strip_prefix("error") {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => {
                Ok(LaunchReply::Failed(rest.trim_start().to_string()))
            }
            _ => Err(bad()),
        }
    }
}

/// Send one datagram of this protocol on `socket`, with `fd` if given; waits for room in the
/// socket's buffer.
pub fn send(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    send_with(socket, bytes, fd, MsgFlags::MSG_NOSIGNAL)
}

/// [`send`] without waiting: `WouldBlock` when the socket's buffer is full (nothing is sent).
pub fn try_send(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    send_with(
        socket,
        bytes,
        fd,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    )
}

fn send_with(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
    flags: MsgFlags,
) -> std::io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let fds = fd.map(|fd| [fd.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsgs, flags, None)?;
    Ok(())
}

/// Receive one datagram of this protocol from `socket`, and the descriptor it carried. An empty
/// datagram means the other side has closed the socket (the protocol never sends one).
pub fn recv(socket: BorrowedFd<'_>) -> std::io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_LAUNCH_MESSAGE];
    // Room for more descriptors than the protocol sends, so that a peer sending extra ones has
    // them installed here (and closed below) rather than truncated.
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let (len, truncated) = (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC));
    let mut carried = None;
    // The descriptors did not fit (this process is out of descriptors, or the peer sent too
    // many): the datagram counts, without its descriptor, whose absence the caller handles.
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        if truncated {
            return Err(std::io::Error::other(LaunchParseError::TooLong(len)));
        }
        buf.truncate(len);
        return Ok((buf, None));
    }
    // Own every descriptor that arrived, so that none leaks, and keep the first.
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel has just installed `fd` in this process for this message;
                // nothing else refers to it.
                #[allow(unsafe_code)]
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                carried.get_or_insert(owned);
            }
        }
    }
    if truncated {
        return Err(std::io::Error::other(LaunchParseError::TooLong(len)));
    }
    buf.truncate(len);
    Ok((buf, carried))
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::*;

    /// Two ends of a socket pair of the protocol's type.
    fn pair() -> (OwnedFd, OwnedFd) {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn a_datagram_and_its_descriptor_cross_a_socket_pair() {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsFd;
        let (a, b) = pair();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"carried").unwrap();
        send(a.as_fd(), b"ok 7", Some(file.as_fd())).unwrap();
        send(a.as_fd(), b"error none", None).unwrap();
        let (bytes, fd) = recv(b.as_fd()).unwrap();
        assert_eq!(bytes, b"ok 7");
        let mut same = std::fs::File::from(fd.expect("a descriptor"));
        same.rewind().unwrap();
        let mut text = String::new();
        same.read_to_string(&mut text).unwrap();
        assert_eq!(text, "carried");
        let (bytes, fd) = recv(b.as_fd()).unwrap();
        assert_eq!((bytes.as_slice(), fd.is_none()), (&b"error none"[..], true));
        drop(a);
        assert_eq!(recv(b.as_fd()).unwrap().0, b"");
    }

    #[test]
    fn descriptors_that_do_not_fit_leave_the_datagram_without_one() {
        use std::os::fd::AsFd;
        let (a, b) = pair();
        // More descriptors than a receiver makes room for: the kernel truncates them.
        let files: Vec<std::fs::File> = (0..8).map(|_| tempfile::tempfile().unwrap()).collect();
        let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        let iov = [IoSlice::new(b"ok 9")];
        sendmsg::<()>(
            a.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        send(a.as_fd(), b"error next", None).unwrap();
        let (bytes, fd) = recv(b.as_fd()).expect("the datagram, not an error");
        assert_eq!((bytes.as_slice(), fd.is_none()), (&b"ok 9"[..], true));
        // The next datagram is read as usual.
        assert_eq!(recv(b.as_fd()).unwrap().0, b"error next");
    }

    #[test]
    fn a_request_keeps_every_argument_byte_for_byte() {
        let request = LaunchRequest {
            args: vec![
                "--pty-link".into(),
                "/tmp/a b/dut.tty".into(),
                OsString::from_vec(vec![0xff, b'x', b'\n']),
                "".into(),
            ],
        };
        let bytes = request.emit();
        assert_eq!(bytes.iter().filter(|b| **b == 0).count(), 4);
        assert_eq!(LaunchRequest::parse(&bytes).unwrap(), request);
    }

    #[test]
    fn requests_that_are_not_whole_are_refused() {
        assert_eq!(LaunchRequest::parse(b""), Err(LaunchParseError::Empty));
        assert_eq!(
            LaunchRequest::parse(b"--air\0/tmp/x"),
            Err(LaunchParseError::Unterminated)
        );
        let huge = vec![b'a'; MAX_LAUNCH_MESSAGE + 1];
        assert_eq!(
            LaunchRequest::parse(&huge),
            Err(LaunchParseError::TooLong(MAX_LAUNCH_MESSAGE + 1))
        );
    }

    #[test]
    fn replies_round_trip_and_strangers_are_named() {
        for reply in [
            LaunchReply::Started { pid: 4242 },
            LaunchReply::Failed("fork: Resource temporarily unavailable".into()),
            LaunchReply::Failed(String::new()),
        ] {
            assert_eq!(LaunchReply::parse(&reply.emit()).unwrap(), reply);
        }
        assert_eq!(
            LaunchReply::parse(&LaunchReply::Failed("two\nlines".into()).emit()).unwrap(),
            LaunchReply::Failed("two lines".into())
        );
        for stranger in [&b"ok"[..], b"ok -1", b"ok 12x", b"errors", b"", b"OK 1"] {
            assert!(
                matches!(
                    LaunchReply::parse(stranger),
                    Err(LaunchParseError::BadReply(_))
                ),
                "{stranger:?}"
            );
        }
    }
}
