//! Waiting for an exclusive `flock` without waiting forever in silence. The
//! apply lock is held for the length of one apply; a holder that keeps it
//! much longer is stuck or hostile, so a waiter says who holds it (pids
//! from /proc/locks), keeps trying for a bounded time, then fails.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// How long an apply waits for the lock.
pub const APPLY_WAIT: Duration = Duration::from_secs(30);

/// Takes an exclusive lock on `file` (at `path`), waiting at most `limit`.
pub fn exclusive(file: &File, path: &Path, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut said = false;
    loop {
        // SAFETY: a valid descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err.into());
        }
        let holders = holders(file);
        if !said {
            eprintln!(
                "waiting for another katran holding the lock on {} ({holders}), up to {} s",
                path.display(),
                limit.as_secs()
            );
            said = true;
        }
        if Instant::now() >= deadline {
            bail!(
                "the lock on {} is still held after {} s ({holders}); stop that process or try again",
                path.display(),
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `held by pid N` from /proc/locks, for the file's inode.
fn holders(file: &File) -> String {
    let Ok(meta) = file.metadata() else {
        return "holder unknown".into();
    };
    let (ino, dev) = (meta.ino(), meta.dev());
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let id = format!("{major:02x}:{minor:02x}:{ino}");
    let pids: Vec<String> = std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains("->") && l.contains(" FLOCK ") && l.contains(&id))
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect();
    if pids.is_empty() {
        "holder unknown".into()
    } else {
        format!("held by pid {}", pids.join(", "))
    }
}
