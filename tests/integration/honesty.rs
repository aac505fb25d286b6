//! The test summary must not lie: a privileged test that could not run is
//! counted as skipped, never as passed, and under
//! `KATRAN_REQUIRE_PRIVILEGED=1` (set by CI) it fails instead.
//!
//! This module holds a privileged probe test that uses the same helper as
//! every privileged test (`common::privileged`). The checks copy the test
//! binary to a scratch directory, run the probe there without privileges
//! (as user `nobody` through `setpriv` when run as root; as is otherwise)
//! with libtest's `--nocapture`, the way `scripts/test` runs the suite, and
//! feed its output to `scripts/summarize`, the one place the summary is
//! counted.

use crate::common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The probe's full name in the test binary (`--exact`).
const PROBE: &str = "honesty::privileged_probe";

/// Needs root like the BPF and namespace tests; checks nothing else.
#[test]
fn privileged_probe() {
    let _ = common::privileged("honesty probe");
}

/// A scratch directory anyone may read, removed on drop (also on failure).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("katran-test-{}-honesty", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).expect("creating the scratch directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs the probe unprivileged, with `KATRAN_REQUIRE_PRIVILEGED` set to
/// `require` or removed.
fn run_probe(exe: &Path, require: Option<&str>) -> Output {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(["--exact", PROBE, "--nocapture", "--test-threads=1"])
        .current_dir(exe.parent().expect("the probe has a directory"))
        .env_remove("KATRAN_REQUIRE_PRIVILEGED");
    if let Some(v) = require {
        cmd.env("KATRAN_REQUIRE_PRIVILEGED", v);
    }
    cmd.output().expect("running the probe")
}

/// The last line `scripts/summarize` prints for this libtest output.
fn summarize(out: &Output) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/summarize");
    let mut child = Command::new(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running scripts/summarize");
    {
        let mut stdin = child.stdin.take().expect("summarize's stdin");
        stdin.write_all(&out.stdout).expect("writing to summarize");
        stdin.write_all(&out.stderr).expect("writing to summarize");
    }
    let done = child.wait_with_output().expect("waiting for summarize");
    assert!(done.status.success(), "scripts/summarize failed");
    let text = String::from_utf8_lossy(&done.stdout).into_owned();
    text.lines().last().unwrap_or_default().to_string()
}

fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn unprivileged_probe_is_skipped_or_fails_when_required() {
    let name = "honesty: unprivileged probe";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && !common::tools(name, &["setpriv"]) {
        return;
    }
    let scratch = Scratch::new();
    let exe = scratch.0.join("probe");
    fs::copy(std::env::current_exe().expect("current_exe"), &exe).expect("copying the probe");
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod probe");

    // (a) no requirement: libtest says "ok", the summary says skipped.
    let out = run_probe(&exe, None);
    assert!(
        out.status.success(),
        "the probe should pass: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("skipped: honesty probe: needs root"),
        "the probe should print its skip: {}",
        show(&out)
    );
    assert_eq!(
        summarize(&out),
        "0 passed, 0 failed, 1 skipped",
        "{}",
        show(&out)
    );

    // (b) KATRAN_REQUIRE_PRIVILEGED=1: the same probe fails, naming why.
    let out = run_probe(&exe, Some("1"));
    assert!(
        !out.status.success(),
        "the probe should fail: {}",
        show(&out)
    );
    let text = show(&out);
    assert!(
        text.contains("honesty probe cannot run: needs root"),
        "the failure should name the reason: {text}"
    );
    assert_eq!(summarize(&out), "0 passed, 1 failed, 0 skipped", "{text}");
}
