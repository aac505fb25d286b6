//! Shared helpers for the integration tests.

pub mod frames;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use katran::model::{Backend, Proto, Vip, VipFlags, VipKey};

/// Whether `KATRAN_REQUIRE_PRIVILEGED=1` is set (CI): then nothing may skip.
pub fn skipping_forbidden() -> bool {
    std::env::var_os("KATRAN_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1")
}

/// Reports that test `name` cannot run: prints `skipped: NAME: REASON`, the
/// line `scripts/summarize` counts, or, under `KATRAN_REQUIRE_PRIVILEGED=1`,
/// fails the test with the reason. Every skip in the tests goes through here.
pub fn skip(name: &str, reason: &str) {
    if skipping_forbidden() {
        panic!("{name} cannot run: {reason} (KATRAN_REQUIRE_PRIVILEGED=1 forbids skipping)");
    }
    println!("skipped: {name}: {reason}");
}

/// Whether privileged tests can run; skips (see [`skip`]) if not.
pub fn privileged(name: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip(name, "needs root (CAP_BPF, CAP_NET_ADMIN)");
        return false;
    }
    true
}

/// Runs a command (program and arguments); its output, whatever its status.
pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Whether every tool is installed; skips with `needs TOOL` if not.
pub fn tools(name: &str, tools: &[&str]) -> bool {
    for tool in tools {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            skip(name, &format!("needs {tool}"));
            return false;
        }
    }
    true
}

/// `../shared/conformance/katran` (or `$KATRAN_SHARED_DIR/conformance/katran`,
/// as the benchmark reads it), when present; skips if not.
pub fn conformance_dir(name: &str) -> Option<PathBuf> {
    let shared = std::env::var_os("KATRAN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let dir = shared.join("conformance/katran");
    if dir.join("setup.json").exists() {
        Some(dir)
    } else {
        skip(
            name,
            &format!(
                "{} is absent (a plain clone has no shared/ folder; \
                 KATRAN_SHARED_DIR names another)",
                dir.display()
            ),
        );
        None
    }
}

/// An address written as a literal in a test.
pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("a literal address")
}

/// A VIP at `addr`:`port` over `proto`, balancing over `reals` (address,
/// weight).
pub fn vip(addr: &str, port: u16, proto: Proto, flags: VipFlags, reals: &[(&str, u32)]) -> Vip {
    Vip {
        key: VipKey {
            addr: ip(addr),
            port,
            proto,
        },
        flags,
        reals: reals
            .iter()
            .map(|(a, w)| Backend {
                addr: ip(a),
                weight: *w,
            })
            .collect(),
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

/// A temporary directory of this test process, removed (with its
/// contents) when dropped, also when the test fails.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `<tmp>/katran-test-<pid>-<name>`, empty.
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("katran-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
