//! Reading the configuration file without trusting what sits at its path
//! (the checking is `katran_core::config`'s).
//! A FIFO would block `open` and `read` forever (and a daemon stuck there is
//! deaf to SIGTERM), a device such as `/dev/zero` never ends, and a huge
//! file would be held whole in memory. So the path is opened with
//! `O_NONBLOCK` (a FIFO's open returns at once), must be a regular file, and
//! is read up to a fixed limit, never further.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use katran_core::config::{parse_bytes, unreadable, ConfigErrors, Loaded};

/// The largest configuration file katran reads: far above any real one (a
/// VIP with 64 reals is about 2 KiB), far below what could hurt.
pub const MAX_SIZE: u64 = 16 << 20;

/// Why a file was not read: the message, and how to fix it.
pub struct Unreadable {
    pub message: String,
    pub help: &'static str,
}

/// The whole file at `path`, if it is a regular file of at most [`MAX_SIZE`].
pub fn read(path: &Path) -> Result<Vec<u8>, Unreadable> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Unreadable {
            message: format!("cannot read the file: {e}"),
            help: "check the path and that katran may read it",
        })?;
    let meta = file.metadata().map_err(|e| Unreadable {
        message: format!("cannot read the file: {e}"),
        help: "check the path and that katran may read it",
    })?;
    let kind = meta.file_type();
    let not_regular = if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if !kind.is_file() {
        Some("not a regular file")
    } else {
        None
    };
    if let Some(what) = not_regular {
        return Err(Unreadable {
            message: format!("this is {what}, not a regular file"),
            help: "give the path of the TOML file itself",
        });
    }
    if meta.len() > MAX_SIZE {
        return Err(too_big());
    }
    read_bounded(file)
}

/// Reads at most [`MAX_SIZE`] bytes: the file may grow after the check.
fn read_bounded(file: File) -> Result<Vec<u8>, Unreadable> {
    let mut bytes = Vec::new();
    file.take(MAX_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Unreadable {
            message: format!("cannot read the file: {e}"),
            help: "check the path and that katran may read it",
        })?;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(too_big());
    }
    Ok(bytes)
}

fn too_big() -> Unreadable {
    Unreadable {
        message: format!(
            "the file is larger than the limit of {} MiB",
            MAX_SIZE >> 20
        ),
        help: "a configuration file is a few KiB; check that the path names the right file",
    }
}

/// Reads and checks the file at `path`; diagnostics name it as given.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let file = path.display().to_string();
    let bytes = read(path).map_err(|u| unreadable(&file, u.message, u.help))?;
    parse_bytes(bytes, &file)
}
