//! Replacing a file in a directory others may write to (`/run/katran`, or
//! `/tmp` for `--status-file`) without being tricked into writing elsewhere.
//! A fixed temporary name can be planted beforehand as a symlink to a file
//! root owns, and writing through a symlink at the target itself has the
//! same effect. So the new content goes to a fresh temporary file created
//! with `O_CREAT | O_EXCL | O_NOFOLLOW` (it must not exist, and is never a
//! link), is synced, and is renamed over the target: `rename` replaces
//! whatever is at the target, a symlink included, and never follows it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// Writes `bytes` to `path` atomically (readers see the old or the new
/// file whole), with mode 0644, never following a symlink.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let (tmp, mut file) = create_temp(path)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()));
    let renamed = written.and_then(|()| {
        std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// A new file beside `path`, under a name nobody could have guessed ahead.
fn create_temp(path: &Path) -> Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?
        .to_string_lossy();
    for _ in 0..16 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{name}.{}.{n}.{nanos:08x}.tmp",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", tmp.display())),
        }
    }
    bail!(
        "could not create a temporary file in {}: every name tried exists",
        dir.display()
    )
}
