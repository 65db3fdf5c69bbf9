//! Per-board locks across processes, and the allocator that hands boards to a case's nodes.
//!
//! A lock is an exclusive `flock` on `<lock dir>/<board id>.lock`. The kernel drops it when the holding
//! process exits, also on a crash or `kill -9`, so a dead run never leaves a board reserved. The holder
//! writes its pid and case into the file so a waiting run can say who has the board.
//!
//! `flock` has no timeout, and a blocked `flock` in a helper thread cannot be cancelled (it would take the
//! lock later and keep it), so waiting is a `LOCK_NB` retry with a short, growing pause.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{FlockOperation, flock};

use crate::hwmap::{Board, HardwareMap, Profile};

/// Environment variable that overrides the lock directory.
pub const LOCK_DIR_ENV: &str = "OT_HIL_LOCK_DIR";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("board allocation cancelled (the run was interrupted)")]
    Cancelled,
    #[error("failed to use lock file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no board in the hardware map fits node `{node}` (wants {wants})")]
    NoMatchingBoard { node: String, wants: String },
    #[error("the hardware map has too few boards for case nodes {nodes:?}: {message}")]
    NotEnoughBoards { nodes: Vec<String>, message: String },
    #[error("boards still busy after {waited:?} for nodes {nodes:?}: {holders}")]
    Busy {
        nodes: Vec<String>,
        waited: Duration,
        holders: String,
    },
}

/// The directory holding the lock files of one lab host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockDir {
    path: PathBuf,
}

impl LockDir {
    /// `$OT_HIL_LOCK_DIR`, else `$XDG_RUNTIME_DIR/ot-hil/locks`, else `/tmp/ot-hil-locks`.
    ///
    /// Every process that shares boards must use the same directory; CI jobs running as different users
    /// should set `OT_HIL_LOCK_DIR` to one shared, writable place.
    pub fn from_env() -> LockDir {
        if let Some(dir) = std::env::var_os(LOCK_DIR_ENV).filter(|d| !d.is_empty()) {
            return LockDir::new(PathBuf::from(dir));
        }
        if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return LockDir::new(PathBuf::from(runtime).join("ot-hil/locks"));
        }
        LockDir::new(PathBuf::from("/tmp/ot-hil-locks"))
    }

    pub fn new(path: PathBuf) -> LockDir {
        LockDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file of a board. Ids are sanitised so that `../x` or `a/b` cannot escape the directory.
    pub fn lock_path(&self, board_id: &str) -> PathBuf {
        let safe: String = board_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = if safe.starts_with('.') {
            format!("_{safe}")
        } else {
            safe
        };
        self.path.join(format!("{safe}.lock"))
    }

    /// Takes the board's lock if it is free; `Ok(None)` when another process (or another lock in this
    /// one) holds it.
    pub fn try_lock(&self, board_id: &str, case: &str) -> Result<Option<BoardLock>, LockError> {
        let path = self.lock_path(board_id);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.path).map_err(|source| LockError::Io {
            path: self.path.clone(),
            source,
        })?;
        // Lock files are shared by every user of the host's boards (CI runners, people): create them
        // world-writable (umask permitting), and fall back to a read-only descriptor for a file another
        // user created, since flock works on any open descriptor; only the holder note is lost then.
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path);
        let (mut file, writable) = match opened {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                (File::open(&path).map_err(io_err)?, false)
            }
            Err(e) => return Err(io_err(e)),
        };
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(io_err(e.into())),
        }
        // Only the holder writes, so the note is never torn by a concurrent writer.
        if !writable {
            return Ok(Some(BoardLock {
                board_id: board_id.to_string(),
                path,
                _file: file,
            }));
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let note = format!("pid={} case={case} since={since}\n", std::process::id());
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        file.write_all(note.as_bytes()).map_err(io_err)?;
        Ok(Some(BoardLock {
            board_id: board_id.to_string(),
            path,
            _file: file,
        }))
    }

    /// Who holds a board, as its holder wrote it (`pid=.. case=.. since=..`), if anyone wrote.
    pub fn holder(&self, board_id: &str) -> Option<String> {
        let mut text = String::new();
        File::open(self.lock_path(board_id))
            .ok()?
            .read_to_string(&mut text)
            .ok()?;
        let text = text.trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// Waits up to `timeout` for one board.
    pub fn lock_wait(
        &self,
        board_id: &str,
        case: &str,
        timeout: Duration,
    ) -> Result<BoardLock, LockError> {
        let deadline = Instant::now() + timeout;
        let mut pause = Backoff::new();
        loop {
            if let Some(lock) = self.try_lock(board_id, case)? {
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                return Err(LockError::Busy {
                    nodes: vec![],
                    waited: timeout,
                    holders: format!(
                        "{board_id} held by {}",
                        self.holder(board_id)
                            .unwrap_or_else(|| "an unknown process".into())
                    ),
                });
            }
            pause.sleep_until(deadline, &AtomicBool::new(false));
        }
    }
}

/// An exclusive hold on one board; released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub struct BoardLock {
    board_id: String,
    path: PathBuf,
    _file: File,
}

impl BoardLock {
    pub fn board_id(&self) -> &str {
        &self.board_id
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Growing pause between `LOCK_NB` attempts: 20 ms doubling to 500 ms, never past the deadline.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: Duration::from_millis(20),
        }
    }
    /// Sleep one step, in slices short enough that a set `cancel` is seen within 20 ms.
    fn sleep_until(&mut self, deadline: Instant, cancel: &AtomicBool) {
        const SLICE: Duration = Duration::from_millis(20);
        let until = Instant::now()
            + self
                .next
                .min(deadline.saturating_duration_since(Instant::now()));
        while !cancel.load(Ordering::SeqCst) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(SLICE));
        }
        self.next = (self.next * 2).min(Duration::from_millis(500));
    }
}

/// What one node of a case needs from a board.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeRequest {
    /// Node name in the case (e.g. `server`).
    pub node: String,
    /// Console profile the node's firmware speaks; `None` = any.
    pub profile: Option<Profile>,
    /// Every tag listed must be on the board.
    pub tags: Vec<String>,
    /// Board platform; `None` = any.
    pub platform: Option<String>,
}

impl NodeRequest {
    fn fits(&self, board: &Board) -> bool {
        // A sniffer is only handed out when asked for by tag: it cannot run the CLI.
        let wants_sniffer = self.tags.iter().any(|t| t == crate::hwmap::SNIFFER_TAG);
        board.is_sniffer() == wants_sniffer
            && self.profile.is_none_or(|p| board.profile == Some(p))
            && self.tags.iter().all(|t| board.tags.contains(t))
            && self
                .platform
                .as_ref()
                .is_none_or(|p| board.platforms.contains(p))
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.profile {
            parts.push(format!("profile {p}"));
        }
        if !self.tags.is_empty() {
            parts.push(format!("tags {:?}", self.tags));
        }
        if let Some(p) = &self.platform {
            parts.push(format!("platform {p}"));
        }
        if parts.is_empty() {
            "any board".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Boards given to one case, each locked until this is dropped.
#[derive(Debug)]
pub struct Allocation {
    /// `(node name, board, lock)` in the order of the requests.
    pub nodes: Vec<(String, Board, BoardLock)>,
}

impl Allocation {
    pub fn board_for(&self, node: &str) -> Option<&Board> {
        self.nodes
            .iter()
            .find(|(n, _, _)| n == node)
            .map(|(_, b, _)| b)
    }
}

/// Assigns boards of a hardware map to case nodes, taking their locks.
#[derive(Debug, Clone)]
pub struct Allocator {
    map: HardwareMap,
    locks: LockDir,
}

impl Allocator {
    pub fn new(map: HardwareMap, locks: LockDir) -> Self {
        Allocator { map, locks }
    }

    /// Finds distinct boards for all `requests` and locks them, waiting up to `timeout` while boards are
    /// busy. All-or-nothing: while waiting it holds no board, so two cases that each need two of the same
    /// three boards cannot deadlock each other.
    pub fn allocate(
        &self,
        case: &str,
        requests: &[NodeRequest],
        timeout: Duration,
    ) -> Result<Allocation, LockError> {
        self.allocate_cancellable(case, requests, timeout, &AtomicBool::new(false))
    }

    /// [`Allocator::allocate`] that gives up with [`LockError::Cancelled`] within 20 ms once `cancel` is set: the wait runs on a blocking thread, which an
    /// interrupted run cannot abort, so the run tells it to stop instead.
    pub fn allocate_cancellable(
        &self,
        case: &str,
        requests: &[NodeRequest],
        timeout: Duration,
        cancel: &AtomicBool,
    ) -> Result<Allocation, LockError> {
        let candidates: Vec<Vec<usize>> = requests
            .iter()
            .map(|r| {
                let c: Vec<usize> = (0..self.map.boards.len())
                    .filter(|&i| self.map.boards.get(i).is_some_and(|b| r.fits(b)))
                    .collect();
                if c.is_empty() {
                    Err(LockError::NoMatchingBoard {
                        node: r.node.clone(),
                        wants: r.describe(),
                    })
                } else {
                    Ok(c)
                }
            })
            .collect::<Result<_, _>>()?;
        // Fail now, not after the timeout, when even an idle lab could not serve the case.
        if assign(&candidates, |_| true).is_none() {
            return Err(LockError::NotEnoughBoards {
                nodes: requests.iter().map(|r| r.node.clone()).collect(),
                message: "the nodes' requirements cannot all be met by distinct boards".into(),
            });
        }
        let deadline = Instant::now() + timeout;
        let mut pause = Backoff::new();
        loop {
            if cancel.load(Ordering::SeqCst) {
                return Err(LockError::Cancelled);
            }
            let mut held: Vec<Option<BoardLock>> =
                (0..self.map.boards.len()).map(|_| None).collect();
            let mut failed = std::collections::BTreeSet::new();
            // Try boards lazily inside the search, so free boards are only locked when they help.
            let found = {
                let try_board = |i: usize| -> bool {
                    if held.get(i).is_some_and(Option::is_some) {
                        return true;
                    }
                    if failed.contains(&i) {
                        return false;
                    }
                    let id = self
                        .map
                        .boards
                        .get(i)
                        .map(|b| b.id.clone())
                        .unwrap_or_default();
                    match self.locks.try_lock(&id, case) {
                        Ok(Some(lock)) => {
                            if let Some(slot) = held.get_mut(i) {
                                *slot = Some(lock);
                            }
                            true
                        }
                        _ => {
                            failed.insert(i);
                            false
                        }
                    }
                };
                assign(&candidates, try_board)
            };
            if let Some(choice) = found {
                let mut nodes = Vec::new();
                for (r, &i) in requests.iter().zip(&choice) {
                    let (Some(board), Some(lock)) = (
                        self.map.boards.get(i),
                        held.get_mut(i).and_then(Option::take),
                    ) else {
                        continue;
                    };
                    nodes.push((r.node.clone(), board.clone(), lock));
                }
                // Locks taken during the search but not chosen are dropped (released) here with `held`.
                return Ok(Allocation { nodes });
            }
            drop(held);
            if Instant::now() >= deadline {
                let busy: std::collections::BTreeSet<usize> =
                    candidates.iter().flatten().copied().collect();
                let holders = busy
                    .into_iter()
                    .filter_map(|i| self.map.boards.get(i))
                    .map(|b| {
                        format!(
                            "{} ({})",
                            b.id,
                            self.locks.holder(&b.id).unwrap_or_else(|| "free".into())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(LockError::Busy {
                    nodes: requests.iter().map(|r| r.node.clone()).collect(),
                    waited: timeout,
                    holders,
                });
            }
            pause.sleep_until(deadline, cancel);
        }
    }
}

/// Backtracking search for distinct boards, one per node, each accepted by `usable`.
fn assign(candidates: &[Vec<usize>], mut usable: impl FnMut(usize) -> bool) -> Option<Vec<usize>> {
    fn go(
        candidates: &[Vec<usize>],
        chosen: &mut Vec<usize>,
        usable: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        let Some(options) = candidates.get(chosen.len()) else {
            return true;
        };
        for &board in options {
            if chosen.contains(&board) || !usable(board) {
                continue;
            }
            chosen.push(board);
            if go(candidates, chosen, usable) {
                return true;
            }
            chosen.pop();
        }
        false
    }
    let mut chosen = Vec::new();
    go(candidates, &mut chosen, &mut usable).then_some(chosen)
}
