//! Where a run keeps what only lives while its boards do: the air's and the boards' Unix
//! sockets and their console links. Every case run makes and removes a few of these, and on a
//! disk file system each is a journalled inode (with 32 boards starting at once, creating them
//! was a fifth of the run's CPU time), so they go to a memory file system when there is one.
//! Logs and reports stay in `--out`.

use std::path::PathBuf;

/// A new directory for sockets and console links, removed when dropped. Its path stays short:
/// a Unix socket's path must fit in 108 bytes. `TMPDIR` is used when set; else the user's
/// runtime directory (`XDG_RUNTIME_DIR`, a tmpfs meant for sockets); else `/dev/shm` when it
/// is a directory; else the system's temporary directory.
pub fn dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    let mut last = None;
    for root in roots() {
        match builder.tempdir_in(&root) {
            Ok(dir) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no directory for sockets")))
}

/// The places [`dir`] tries, in order.
fn roots() -> Vec<PathBuf> {
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(tmp) = env_dir("TMPDIR") {
        return vec![tmp];
    }
    let mut roots: Vec<PathBuf> = env_dir("XDG_RUNTIME_DIR").into_iter().collect();
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        roots.push(shm);
    }
    roots.push(std::env::temp_dir());
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_short_directory_that_goes_when_dropped() {
        let d = dir("oth").unwrap();
        let path = d.path().to_path_buf();
        assert!(path.is_dir());
        // Room for `c123a4/server.ctl.123456.tmp` under the 108-byte socket path limit.
        assert!(path.as_os_str().len() < 64, "{}", path.display());
        drop(d);
        assert!(!path.exists());
    }
}
