//! Network-namespace plumbing for the testbed: unique names, creating and
//! deleting namespaces (also those a crashed run left), running commands in
//! them, and running code on a thread that lives inside one (how XDP links
//! are created there: `ip netns exec` hides /sys/fs/bpf, so no pins).

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, bail, Context, Result};

/// Every namespace the testbed makes is called `kt<pid>-<n>-<role>`.
const PREFIX: &str = "kt";

/// A tag unique to this process and call: `kt<pid>-<n>`.
pub fn unique_tag() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn check(what: &str, out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command on the host; its standard output on success.
pub fn host(args: &[&str]) -> Result<String> {
    let (prog, rest) = args.split_first().context("an empty command")?;
    let out = Command::new(prog)
        .args(rest)
        .output()
        .with_context(|| format!("running {prog}"))?;
    check(&args.join(" "), out)
}

/// Runs a command inside namespace `ns` with `ip netns exec`, which also
/// mounts the namespace's own /sys: for the commands that read or write
/// /sys/class/net of its interfaces (MACs, RPS masks). It hides the host's
/// bpffs, so katran itself is never run this way (processes are started
/// with `nsenter --net` everywhere else).
pub fn exec(ns: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    host(&all)
}

/// Runs `ip -n ns -batch -` with one command per line.
pub fn ip_batch(ns: &str, lines: &[String]) -> Result<()> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ip")?;
    let mut stdin = child.stdin.take().context("ip's stdin")?;
    stdin.write_all(lines.join("\n").as_bytes())?;
    drop(stdin);
    let out = child.wait_with_output()?;
    check(&format!("ip -n {ns} -batch: {}", lines.join("; ")), out).map(drop)
}

pub fn add(ns: &str) -> Result<()> {
    host(&["ip", "netns", "add", ns]).map(drop)
}

/// Kills what still runs in `ns` (processes only a test put there) and
/// deletes it. Quiet and idempotent: teardown must never fail.
pub fn delete(ns: &str) {
    if !Path::new("/run/netns").join(ns).exists() {
        return;
    }
    if let Ok(pids) = host(&["ip", "netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: plain signal delivery to a process of this namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = host(&["ip", "netns", "del", ns]);
}

/// Deletes namespaces named by a testbed whose process is gone.
pub fn delete_stale() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if pid.is_empty() || !rest[pid.len()..].starts_with('-') {
            continue;
        }
        if !Path::new("/proc").join(&pid).exists() {
            delete(&name);
        }
    }
}

/// Runs `f` on a thread switched into namespace `ns`. Sockets, XDP links and
/// /proc/sys/net opened there belong to `ns`; processes it spawns start in
/// `ns`. File descriptors it returns stay valid in the whole process.
pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(move || {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: a namespace descriptor; affects this thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("entering namespace {ns}"));
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow!("the thread inside namespace {ns} panicked")))
    })
}
