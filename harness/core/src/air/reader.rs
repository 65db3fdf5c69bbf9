//! Reading a sniffer board over its serial port (a real dongle/DK on /dev/ttyACM*, or a virtual
//! one's PTY link): assert DTR (the firmware's shell stays silent until the host does), send the
//! extcap script's start sequence, then feed every line to a [`Capture`] on a reader thread.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ot_hil_wire::sniffer::{STOP_COMMANDS, start_commands};

use super::{AirError, Capture};

/// How long one read may block: the reader checks its stop flag this often.
const READ_TIMEOUT: Duration = Duration::from_millis(20);
/// Longest line kept; longer ones (no frame line is longer than ~300 chars) are cut and counted
/// as bad lines by the parser.
const MAX_LINE: usize = 4096;
/// How long [`SnifferSession::stop`] waits for the sniffer to answer its channel query.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// An open sniffer serial port.
pub struct SnifferPort {
    port: Box<dyn SerialLike>,
    path: String,
}

/// What the reader needs from a port (a trait so tests can use any byte stream).
pub trait SerialLike: Read + Write + Send {}
impl<T: Read + Write + Send> SerialLike for T {}

impl SnifferPort {
    /// Open `path` (raw mode) with DTR asserted.
    pub fn open(path: &str) -> Result<SnifferPort, AirError> {
        let port_err = |message: String| AirError::Port {
            path: path.to_string(),
            message,
        };
        // CDC-ACM ignores the baud rate; 115200 is what older scripts used.
        let mut port = serialport::new(path, 115_200)
            .timeout(READ_TIMEOUT)
            .open_native()
            .map_err(|e| port_err(e.to_string()))?;
        // A PTY has no modem lines (ENOTTY/EINVAL): nothing to assert there.
        let _ = serialport::SerialPort::write_data_terminal_ready(&mut port, true);
        Ok(SnifferPort {
            port: Box::new(port),
            path: path.to_string(),
        })
    }

    /// Any byte stream (tests).
    pub fn from_stream(stream: impl SerialLike + 'static, name: &str) -> SnifferPort {
        SnifferPort {
            port: Box::new(stream),
            path: name.to_string(),
        }
    }
}

/// A capture in progress. Dropping it stops the reader thread.
pub struct SnifferSession {
    capture: Arc<Mutex<Capture>>,
    stop: Arc<AtomicBool>,
    /// Bytes for the reader thread to write (it owns the port).
    to_port: std::sync::mpsc::Sender<Vec<u8>>,
    /// Set by the reader thread when it reads the line `sync_marker`.
    synced: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<JoinHandle<Box<dyn SerialLike>>>,
    path: String,
    /// Why the port stopped giving lines before the session was stopped (the sniffer board went
    /// away), set by the reader thread.
    ended: Arc<Mutex<Option<String>>>,
}

impl SnifferSession {
    /// Send the start sequence for `channel` and read lines into `capture` until stopped.
    pub fn start(
        mut port: SnifferPort,
        channel: u8,
        capture: Capture,
    ) -> Result<SnifferSession, AirError> {
        let path = port.path.clone();
        for cmd in start_commands(channel) {
            port.port
                .write_all(cmd.as_bytes())
                .and_then(|_| port.port.flush())
                .map_err(|e| AirError::Port {
                    path: path.clone(),
                    message: format!("writing {:?}: {e}", cmd.trim_end()),
                })?;
        }
        let capture = Arc::new(Mutex::new(capture));
        let stop = Arc::new(AtomicBool::new(false));
        let synced = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let ended = Arc::new(Mutex::new(None));
        let (to_port, from_session) = std::sync::mpsc::channel::<Vec<u8>>();
        let thread = {
            let capture = capture.clone();
            let stop = stop.clone();
            let synced = synced.clone();
            let ended = ended.clone();
            let marker = channel.to_string();
            let mut stream = port.port;
            std::thread::Builder::new()
                .name("sniffer".into())
                .spawn(move || {
                    let end = read_lines_with(
                        &mut *stream,
                        &stop,
                        |line| {
                            if line.trim() == marker {
                                let (flag, cv) = &*synced;
                                *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
                                cv.notify_all();
                            }
                            capture
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push_line(line)
                        },
                        || from_session.try_recv().ok(),
                    );
                    if end.is_some() {
                        *ended.lock().unwrap_or_else(|e| e.into_inner()) = end;
                    }
                    stream
                })
                .map_err(|e| AirError::Port {
                    path: path.clone(),
                    message: e.to_string(),
                })?
        };
        Ok(SnifferSession {
            capture,
            stop,
            to_port,
            synced,
            thread: Some(thread),
            path,
            ended,
        })
    }

    /// Why the sniffer's port ended by itself (its board went away), if it did.
    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Look at the capture while it runs (e.g. to print new transcripts).
    pub fn with_capture<R>(&self, f: impl FnOnce(&mut Capture) -> R) -> R {
        f(&mut self.capture.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Stop reading, put the radio to sleep, and hand back the finished capture. Frames the
    /// sniffer heard before this call are still read: the channel query (`channel`, answered
    /// with the bare number) is printed after them, so its answer marks the end.
    pub fn stop(mut self) -> Capture {
        self.sync(SYNC_TIMEOUT);
        self.stop_thread();
        let capture = std::mem::replace(
            &mut *self.capture.lock().unwrap_or_else(|e| e.into_inner()),
            Capture::new(11, None, [0; 8], None),
        );
        let mut capture = capture;
        capture.finish();
        capture
    }

    /// Wait until everything the sniffer printed before now has been read (or `timeout`).
    pub fn sync(&self, timeout: Duration) -> bool {
        let (flag, cv) = &*self.synced;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = false;
        if self.to_port.send(b"channel\r\n".to_vec()).is_err() {
            return false;
        }
        let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take()
            && let Ok(mut stream) = t.join()
        {
            for cmd in STOP_COMMANDS {
                // The board may already be gone; the capture is complete either way.
                let _ = stream.write_all(cmd.as_bytes());
            }
            let _ = stream.flush();
        }
    }
}

impl Drop for SnifferSession {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Read until `stop` is set or the stream ends or fails; call `on_line` per line (without `\r`/`\n`).
pub fn read_lines(stream: &mut dyn Read, stop: &AtomicBool, on_line: impl FnMut(&str)) {
    struct ReadOnly<'a>(&'a mut dyn Read);
    impl Read for ReadOnly<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl Write for ReadOnly<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let _ = read_lines_with(&mut ReadOnly(stream), stop, on_line, || None);
}

/// [`read_lines`] on a port the loop also writes to: `outgoing` is polled between reads.
/// Returns why the stream ended by itself (end of file, an error), `None` when stopped.
fn read_lines_with<S: Read + Write + ?Sized>(
    stream: &mut S,
    stop: &AtomicBool,
    mut on_line: impl FnMut(&str),
    mut outgoing: impl FnMut() -> Option<Vec<u8>>,
) -> Option<String> {
    let mut end = None;
    let mut buf = [0u8; 4096];
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut prev = 0u8;
    while !stop.load(Ordering::SeqCst) {
        while let Some(bytes) = outgoing() {
            let _ = stream.write_all(&bytes).and_then(|_| stream.flush());
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                end = Some("end of file on the sniffer's port".to_string());
                break;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            // EIO on a PTY whose board exited, or a USB device unplugged.
            Err(e) => {
                end = Some(format!("reading the sniffer's port failed: {e}"));
                break;
            }
        };
        for &b in buf.get(..n).unwrap_or(&[]) {
            // `\r\n` ends one line; a lone `\r` or `\n` ends one too.
            let ends = b == b'\r' || (b == b'\n' && prev != b'\r');
            if ends {
                on_line(&String::from_utf8_lossy(&line));
                line.clear();
            } else if b != b'\n' && line.len() < MAX_LINE {
                line.push(b);
            }
            prev = b;
        }
    }
    if !line.is_empty() {
        on_line(&String::from_utf8_lossy(&line));
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port that gives `input`, then end of file (`ends`) or silence (read timeouts).
    struct Port {
        input: std::io::Cursor<Vec<u8>>,
        ends: bool,
    }

    impl Read for Port {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.input.read(buf)? {
                0 if !self.ends => {
                    std::thread::sleep(Duration::from_millis(5));
                    Err(std::io::ErrorKind::TimedOut.into())
                }
                n => Ok(n),
            }
        }
    }

    impl Write for Port {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn session(ends: bool) -> SnifferSession {
        let port = Port {
            input: std::io::Cursor::new(b"noise\r\n".to_vec()),
            ends,
        };
        let capture = Capture::new(15, None, [0; 8], None);
        SnifferSession::start(SnifferPort::from_stream(port, "test"), 15, capture)
            .expect("session starts")
    }

    #[test]
    fn a_port_that_ends_by_itself_says_so_and_a_stopped_one_does_not() {
        let lost = session(true);
        let start = std::time::Instant::now();
        while lost.ended().is_none() {
            assert!(start.elapsed() < Duration::from_secs(5), "never noticed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            lost.ended().as_deref(),
            Some("end of file on the sniffer's port")
        );
        let capture = lost.stop();
        assert_eq!(capture.stats().lines, 1);

        let quiet = session(false);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(quiet.ended(), None, "a silent port is not a lost one");
        // Dropping stops the reader: a stop asked for is no loss either.
        drop(quiet);
    }
}
