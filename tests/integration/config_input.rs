//! What sits at the configuration path may be hostile: a FIFO (which would
//! block `katran check` and the daemon forever), a device that never ends,
//! a file too large to hold, or a value carrying terminal escape sequences.
//! Each is refused (or escaped) by the real binary, quickly, with a message
//! that names the path and the reason. No privileges needed.

use crate::common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Scratch;

/// Generous: `check` answers in milliseconds; a hang is what is caught.
const DEADLINE: Duration = Duration::from_secs(30);

/// A scratch directory named after this process, removed on drop.
/// `katran check -c PATH`, killed if it outlives [`DEADLINE`].
fn check(path: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_katran"))
        .arg("check")
        .arg("-c")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning katran check");
    let t = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if t.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "katran check {} still runs after {DEADLINE:?}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn refused(path: &Path, reason: &str) {
    let out = check(path);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains(&format!("--> {}\n", path.display())),
        "the error names the path: {err}"
    );
    assert!(err.contains(reason), "the error says {reason:?}: {err}");
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = Scratch::new("config-input-fifo");
    let fifo = dir.0.join("katran.toml");
    let c = CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    refused(&fifo, "a FIFO (named pipe), not a regular file");
}

#[test]
fn devices_and_directories_are_refused() {
    refused(
        Path::new("/dev/zero"),
        "a character device, not a regular file",
    );
    let dir = Scratch::new("config-input-dir");
    refused(&dir.0, "a directory, not a regular file");
}

#[test]
fn a_file_over_the_size_limit_is_refused_unread() {
    let dir = Scratch::new("config-input-big");
    let big = dir.0.join("katran.toml");
    let f = fs::File::create(&big).expect("create");
    // sparse: no disk used, yet larger than the limit
    f.set_len(katran::config::MAX_SIZE + 1).expect("set_len");
    refused(&big, "larger than the limit of 16 MiB");
    // exactly the limit is read (and then judged as TOML)
    f.set_len(katran::config::MAX_SIZE).expect("set_len");
    let out = check(&big);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("limit"), "{}", stderr(&out));
}

/// `katran check` on `text`: exits 1 and prints no raw ESC or BEL.
fn check_text_escaped(name: &str, text: &str) -> String {
    let dir = Scratch::new(&format!("config-input-{name}"));
    let path = dir.0.join("katran.toml");
    fs::write(&path, text).expect("write");
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let all = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    assert!(
        !all.iter().any(|&b| b == 0x1b || b == 0x07),
        "a raw control character reached the terminal: {:?}",
        String::from_utf8_lossy(&all)
    );
    stderr(&out)
}

#[test]
fn control_characters_from_the_file_are_escaped() {
    // an ESC sequence (clear screen) in a value, written as a TOML escape
    let err = check_text_escaped(
        "esc-value",
        "[dataplane]\ninterfaces = [\"eth0\"]\n\n[[vip]]\n\
         address = \"10.0.0.1:80\\u001b[2J\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\"]\n",
    );
    assert!(
        err.contains("\\u{1b}[2J"),
        "the ESC is shown escaped: {err}"
    );
    // raw ESC and BEL bytes in a key (a title-setting sequence)
    check_text_escaped(
        "esc-key",
        "[dataplane]\ninterfaces = [\"eth0\"]\nx\x1b]0;pwned\x07 = 1\n",
    );
}
