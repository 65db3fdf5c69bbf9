//! The virtual probe: a Unix stream socket taking one request line and answering one reply line,
//! several per connection. The runner flashes, resets and asks the image hash through it, the
//! way it would use a J-Link for a real DK.
//!
//! Requests are executed by the main loop (so a flash never races console input); each
//! connection thread forwards its lines over the input channel and waits for the reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::Duration;

use crate::input::{ControlRequest, Input};

/// Longest request line accepted (a manifest path plus the verb).
const MAX_REQUEST: usize = 4096;

/// How long a connection waits for the main loop before answering an error.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The listening control socket; removed from the file system on drop.
pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    pub fn start(path: &Path, inputs: Sender<Input>) -> std::io::Result<ControlServer> {
        // A stale socket file from a killed board would make bind fail with EADDRINUSE.
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        // Bind (and listen) under a temporary name, then rename: whoever sees the socket file can
        // connect at once. A socket file appears at bind() but connections are refused until
        // listen(), and a runner polling for the file would race with that.
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!(".{}.tmp", std::process::id()));
        let staging = PathBuf::from(staging);
        let _ = std::fs::remove_file(&staging);
        let listener = UnixListener::bind(&staging)?;
        std::fs::rename(&staging, path)?;
        thread::Builder::new()
            .name("vdk-control".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let inputs = inputs.clone();
                    let spawned = thread::Builder::new()
                        .name("vdk-control-conn".into())
                        .stack_size(64 * 1024)
                        .spawn(move || serve(stream, inputs));
                    if let Err(e) = spawned {
                        eprintln!("vdk: control connection thread: {e}");
                    }
                }
            })?;
        Ok(ControlServer {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(stream: UnixStream, inputs: Sender<Input>) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        // Bounded read: a client that never sends a newline cannot make us buffer forever.
        match (&mut reader)
            .take(MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut raw)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = if raw.len() > MAX_REQUEST && !raw.ends_with(b"\n") {
            // Skip the rest of the overlong line without keeping it.
            let _ = reader.skip_until(b'\n');
            "error request too long".to_string()
        } else {
            let line = String::from_utf8_lossy(&raw).trim().to_string();
            let (tx, rx) = mpsc::channel();
            if inputs
                .send(Input::Control(ControlRequest { line, reply: tx }))
                .is_err()
            {
                return;
            }
            rx.recv_timeout(REPLY_TIMEOUT)
                .unwrap_or_else(|_| "error board not responding".to_string())
        };
        if writer.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return;
        }
    }
}
