//! One daemon per pin directory. Two `katran run` on one dataplane would
//! overwrite each other's applies forever, so the daemon holds an exclusive
//! lock for its whole life, on a file that names it (pid and configuration)
//! so a second start, and `katran down`, can say who holds it.
//!
//! The bpf filesystem holds no regular files, so the lock lives under
//! `/run/katran/`, named after the pin directory: `/sys/fs/bpf/katran` is
//! `/run/katran/daemon.sys-fs-bpf-katran.lock`. The directory must be
//! root's own and not writable by others, and the file is opened without
//! following symlinks.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where daemon locks live.
pub const RUN_DIR: &str = "/run/katran";

/// Held for the daemon's life; released when dropped (or the process ends).
pub struct DaemonLock {
    _file: File,
    pub path: PathBuf,
}

impl Drop for DaemonLock {
    /// A daemon that exits cleanly leaves no lock file behind (one killed
    /// leaves it unlocked, and the next start takes it over).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The lock file's name for a pin directory: the path's components joined
/// by `-`, every byte outside `[A-Za-z0-9._]` written as `%XX`.
pub fn file_name(pin_dir: &Path) -> String {
    let mut name = String::from("daemon.");
    let parts: Vec<String> = pin_dir
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.as_encoded_bytes()),
            _ => None,
        })
        .map(|bytes| {
            bytes
                .iter()
                .map(|&b| {
                    if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        })
        .collect();
    name.push_str(&parts.join("-"));
    name.push_str(".lock");
    name
}

fn lock_path(pin_dir: &Path) -> PathBuf {
    Path::new(RUN_DIR).join(file_name(pin_dir))
}

/// `/run/katran`, created 0755 if absent; refused when another user owns it
/// or others may write to it (they could swap the lock away).
pub fn ensure_run_dir() -> Result<&'static Path> {
    let dir = Path::new(RUN_DIR);
    match fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {RUN_DIR}")),
    }
    let meta = fs::symlink_metadata(dir).with_context(|| format!("inspecting {RUN_DIR}"))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        bail!(
            "{RUN_DIR} is not a directory owned by uid {me} and writable only by it \
             (mode {:o}, owner {}); remove or fix it",
            meta.mode() & 0o7777,
            meta.uid()
        );
    }
    Ok(dir)
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("opening the daemon lock {}", path.display()))
}

fn try_lock(file: &File) -> Result<bool> {
    // SAFETY: a valid descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(err).context("locking the daemon lock")
}

/// Who holds the lock, from what the holder wrote into it.
fn describe(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "a katran daemon".to_string()
    } else {
        crate::config::escape::controls(&text).into_owned()
    }
}

/// The pid of the daemon managing `pin_dir`, if one runs (from what it
/// wrote into its lock: `pid N config F`).
pub fn holder_pid(pin_dir: &Path) -> Result<Option<i32>> {
    Ok(holder(pin_dir)?.and_then(|h| h.strip_prefix("pid ")?.split(' ').next()?.parse().ok()))
}

/// Takes the lock for `pin_dir` for this process's life, or fails naming
/// the daemon that holds it.
pub fn acquire(pin_dir: &Path, config: &Path) -> Result<DaemonLock> {
    ensure_run_dir()?;
    let path = lock_path(pin_dir);
    let mut file = open(&path)?;
    if !try_lock(&file)? {
        bail!(
            "another `katran run` ({}) already manages the dataplane at {}; \
             stop it first (systemctl stop katran), one daemon per pin_dir",
            describe(&mut file),
            pin_dir.display()
        );
    }
    file.set_len(0).context("writing the daemon lock")?;
    file.rewind().context("writing the daemon lock")?;
    writeln!(
        file,
        "pid {} config {}",
        std::process::id(),
        config.display()
    )
    .context("writing the daemon lock")?;
    Ok(DaemonLock { _file: file, path })
}

/// The daemon managing `pin_dir`, if one runs: `Some("pid N config F")`.
pub fn holder(pin_dir: &Path) -> Result<Option<String>> {
    let path = lock_path(pin_dir);
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    if try_lock(&file)? {
        // nobody held it; let go at once
        return Ok(None);
    }
    Ok(Some(describe(&mut file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pin_directory() {
        assert_eq!(
            file_name(Path::new("/sys/fs/bpf/katran")),
            "daemon.sys-fs-bpf-katran.lock"
        );
        assert_eq!(
            file_name(Path::new("/sys/fs/bpf/k-1/x y")),
            "daemon.sys-fs-bpf-k%2D1-x%20y.lock"
        );
        assert_ne!(
            file_name(Path::new("/sys/fs/bpf/a-b")),
            file_name(Path::new("/sys/fs/bpf/a/b"))
        );
        // the trailing slash names the same directory
        assert_eq!(
            file_name(Path::new("/sys/fs/bpf/katran/")),
            file_name(Path::new("/sys/fs/bpf/katran"))
        );
    }
}
