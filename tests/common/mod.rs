//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod frames;

use std::path::PathBuf;

/// Whether privileged tests can run; prints `skipped: NAME: reason` if not.
pub fn privileged(name: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: {name}: needs root (CAP_BPF, CAP_NET_ADMIN)");
        return false;
    }
    true
}

/// Whether every tool is installed; prints `skipped: NAME: needs TOOL` if not.
pub fn tools(name: &str, tools: &[&str]) -> bool {
    for tool in tools {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            println!("skipped: {name}: needs {tool}");
            return false;
        }
    }
    true
}

/// `../shared/conformance/katran`, when present.
pub fn conformance_dir(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/katran");
    if dir.join("setup.json").exists() {
        Some(dir)
    } else {
        println!(
            "skipped: {name}: {} is absent (a plain clone has no shared/ folder)",
            dir.display()
        );
        None
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Offsets where two frames differ, shown as hex with a caret line.
pub fn hex_diff(want: &[u8], got: &[u8]) -> String {
    let mut s = format!(
        "    want ({} bytes): {}\n    got  ({} bytes): {}\n",
        want.len(),
        hex(want),
        got.len(),
        hex(got)
    );
    let diffs: Vec<usize> = (0..want.len().max(got.len()))
        .filter(|i| want.get(*i) != got.get(*i))
        .collect();
    s.push_str(&format!(
        "    differing byte offsets: {:?}\n",
        &diffs[..diffs.len().min(24)]
    ));
    s
}
