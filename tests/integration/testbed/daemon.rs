//! The balancer as it runs in production: the `katran` binary's daemon
//! (`katran run`) inside the LB's namespace, loading or adopting a pinned
//! dataplane and attaching it to the LB's `eth0` itself, driven by a TOML
//! file in a temporary directory. Build the testbed with
//! `Testbed::builder().attach_balancer(false)` so the test process leaves
//! that interface to the daemon.
//!
//! Also the traffic that watches it work: [`UdpStream`], sequence-numbered
//! datagrams from a client counted on the reals, and [`EchoConn`], one
//! long-lived TCP connection through a VIP to an echo server on a real.
//!
//! Every guard here cleans up when dropped, also while a test panics: the
//! daemon is killed, its pins are removed with `katran down`, helper
//! processes are killed and temporary files deleted. Pins and directories
//! left by a crashed run (its process gone) are removed at the next start.
//! Drop a [`Daemon`] before its [`Testbed`] (declare it after), so the pins
//! go while the interface they are attached to still exists.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use katran::apply::read_live;
use katran::files::status_file::DaemonStatus;
use katran::kernel::live::{self, Pins};
use katran::model::{MacAddr, State};

use super::Testbed;

/// Pin directories are `/sys/fs/bpf/katran-test-<pid>-<n>`.
const PIN_PREFIX: &str = "katran-test-";
/// Temporary directories are `<tmp>/katran-daemon-<pid>-<n>`.
const TMP_PREFIX: &str = "katran-daemon-";

/// The `katran` binary under test.
pub fn katran_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_katran"))
}

fn next_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn pid_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

/// The pid in `<prefix><pid>-<n>`, when `name` is one of ours.
fn owner_pid<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(prefix)?;
    let pid = rest.split('-').next()?;
    (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then_some(pid)
}

/// Removes pins and temporary directories of test runs whose process is gone.
fn delete_stale() {
    if let Ok(entries) = fs::read_dir("/sys/fs/bpf") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if owner_pid(&name, PIN_PREFIX).is_some_and(|p| !pid_alive(p)) {
                remove_pins(&e.path());
            }
        }
    }
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if owner_pid(&name, TMP_PREFIX).is_some_and(|p| !pid_alive(p)) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// `katran down --pin-dir DIR`, then removes whatever is left. Quiet.
fn remove_pins(dir: &Path) {
    let _ = Command::new(katran_bin())
        .arg("down")
        .arg("--force")
        .arg("--pin-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if dir.exists() {
        // Unpinning drops the last reference to links, maps and programs.
        let _ = fs::remove_dir_all(dir);
    }
    // what a daemon (even a killed one) and a drain leave under /run/katran
    let run = Path::new(katran::files::daemon_lock::RUN_DIR);
    let _ = fs::remove_file(run.join(katran::files::daemon_lock::file_name(dir)));
    let _ = fs::remove_file(katran::kernel::announce::drain_marker(dir));
}

/// One `[[vip]]` table: `address` is `ADDR:PORT` or `[ADDR6]:PORT`.
pub fn vip_table(address: &str, proto: &str, reals: &[(IpAddr, u32)]) -> String {
    let reals: Vec<String> = reals
        .iter()
        .map(|(a, w)| format!("  {{ address = \"{a}\", weight = {w} }},"))
        .collect();
    format!(
        "\n[[vip]]\naddress = \"{address}\"\nproto = \"{proto}\"\nreals = [\n{}\n]\n",
        reals.join("\n")
    )
}

/// A `katran run` in the LB's namespace and everything it uses.
pub struct Daemon {
    /// The LB's namespace.
    pub lb_ns: String,
    /// Temporary directory holding the file, the status file and the logs.
    pub dir: PathBuf,
    /// The configuration file the daemon runs with (`<dir>/k.toml`).
    pub config: PathBuf,
    pub status_file: PathBuf,
    pub pin_dir: PathBuf,
    gateway_mac: MacAddr,
    child: Option<Child>,
    /// Log of the current (or last) daemon process.
    log: PathBuf,
    starts: usize,
    /// The katran binary run in the LB's namespace (default: the one under
    /// test; an upgrade test runs the installed package's).
    pub bin: PathBuf,
}

impl Daemon {
    /// Prepares a daemon for `tb` (nothing runs and nothing is pinned yet).
    pub fn new(tb: &Testbed) -> Result<Daemon> {
        delete_stale();
        let tag = format!("{}-{}", std::process::id(), next_id());
        let dir = std::env::temp_dir().join(format!("{TMP_PREFIX}{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(format!("{PIN_PREFIX}{tag}"));
        remove_pins(&pin_dir);
        Ok(Daemon {
            lb_ns: tb.lb.ns.clone(),
            config: dir.join("k.toml"),
            status_file: dir.join("status.json"),
            log: dir.join("daemon-0.log"),
            dir,
            pin_dir,
            gateway_mac: tb.gateway_mac,
            child: None,
            starts: 0,
            bin: katran_bin(),
        })
    }

    /// `[dataplane]` for this testbed: the LB's `eth0` (native XDP), the
    /// router as gateway, this daemon's pin directory, small maps.
    pub fn dataplane_table(&self) -> String {
        format!(
            "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\n\
             gateway_mac = \"{}\"\npin_dir = \"{}\"\nmax_vips = 8\nmax_reals = 16\n\
             ring_size = 4099\nconn_table_size = 4096\n",
            self.gateway_mac,
            self.pin_dir.display()
        )
    }

    /// A whole file: [`Self::dataplane_table`] and these `[[vip]]` tables.
    pub fn file(&self, vips: &[String]) -> String {
        let mut s = self.dataplane_table();
        for v in vips {
            s.push_str(v);
        }
        s
    }

    /// Rewrites the file in place (same inode: truncate and write).
    pub fn write_in_place(&self, text: &str) -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.config)
            .with_context(|| format!("opening {}", self.config.display()))?;
        f.write_all(text.as_bytes())?;
        Ok(())
    }

    /// Writes `k.toml.tmp` and renames it over the file (as editors do).
    pub fn write_by_rename(&self, text: &str) -> Result<()> {
        let tmp = self.config.with_extension("toml.tmp");
        fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &self.config).context("renaming over the file")
    }

    /// Starts `katran run` in the LB's namespace (`nsenter --net`, which
    /// keeps /sys/fs/bpf visible) and waits until its status file says it
    /// applied the file.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the daemon already runs");
        }
        self.log = self.dir.join(format!("daemon-{}.log", self.starts));
        self.starts += 1;
        let log = fs::File::create(&self.log)?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.lb_ns))
            .arg(&self.bin)
            .arg("run")
            .arg("-c")
            .arg(&self.config)
            .arg("--status-file")
            .arg(&self.status_file)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning nsenter katran run")?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    self.child = None;
                    bail!("katran run exited ({status}) at start:\n{}", self.log());
                }
            }
            if let Ok(s) = self.status() {
                if s.pid == pid && s.last_applied.is_some() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "katran run did not report at start within 20 s:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's pid (nsenter execs it: same process).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        let pid = self.pid().context("the daemon does not run")?;
        // SAFETY: plain signal delivery to our own child.
        if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill");
        }
        Ok(())
    }

    pub fn hangup(&self) -> Result<()> {
        self.signal(libc::SIGHUP)
    }

    /// `kill -9`, and reaps it.
    pub fn kill9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("the daemon does not run")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM, and waits for the exit.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        self.signal(libc::SIGTERM)?;
        let mut child = self.child.take().context("the daemon does not run")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("katran run ignored SIGTERM for 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the daemon process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The current (or last) daemon process's log.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's status file.
    pub fn status(&self) -> Result<DaemonStatus> {
        DaemonStatus::read(&self.status_file)
    }

    /// Changes whenever the daemon writes its status file (it renames a new
    /// file into place each time).
    pub fn status_stamp(&self) -> Option<(u64, SystemTime)> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(&self.status_file).ok()?;
        Some((m.ino(), m.modified().ok()?))
    }

    /// Waits until the status file is rewritten after `stamp` and `pred`
    /// holds for it; how long that took.
    pub fn wait_status(
        &self,
        stamp: Option<(u64, SystemTime)>,
        timeout: Duration,
        pred: impl Fn(&DaemonStatus) -> bool,
    ) -> Result<(Duration, DaemonStatus)> {
        let t0 = Instant::now();
        let mut last = None;
        loop {
            if self.status_stamp() != stamp {
                if let Ok(s) = self.status() {
                    if pred(&s) {
                        return Ok((t0.elapsed(), s));
                    }
                    last = Some(s);
                }
            }
            if t0.elapsed() > timeout {
                bail!(
                    "the status file did not get there within {timeout:?}; last: {last:#?}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The configuration the pinned maps forward by (read in-process).
    pub fn live(&self) -> Result<Option<State>> {
        match live::open(&Pins::new(&self.pin_dir))? {
            Some(store) => read_live(&store),
            None => Ok(None),
        }
    }

    /// Waits until the live maps satisfy `pred`; how long that took.
    pub fn wait_live(&self, timeout: Duration, pred: impl Fn(&State) -> bool) -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            // Reads race with applies; an inconsistent read is just retried.
            if let Ok(Some(s)) = self.live() {
                if pred(&s) {
                    return Ok(t0.elapsed());
                }
            }
            if t0.elapsed() > timeout {
                bail!(
                    "the live maps did not change as expected within {timeout:?}; now {:#?}\nlog:\n{}",
                    self.live().ok().flatten().map(|s| s.vips),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Interfaces with a pinned XDP link.
    pub fn attached(&self) -> Vec<String> {
        Pins::new(&self.pin_dir).attached()
    }

    /// Runs the `katran` binary on the host with `args`.
    pub fn katran(&self, args: &[&str]) -> Result<Output> {
        Command::new(katran_bin())
            .args(args)
            .output()
            .context("running katran")
    }

    /// `katran status [--json]` for this daemon's pins and status file.
    pub fn katran_status(&self, json: bool) -> Result<Output> {
        let mut cmd = Command::new(katran_bin());
        cmd.arg("status")
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--status-file")
            .arg(&self.status_file);
        if json {
            cmd.arg("--json");
        }
        cmd.output().context("running katran status")
    }

    /// A `katran` command in the LB's namespace, not waited for.
    /// Like [`Daemon::katran_in_lb`], its output going to the file `out`,
    /// which the test can read while it runs.
    pub fn katran_in_lb_logged(&self, args: &[&str], out: &Path) -> Result<Child> {
        let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.lb_ns))
            .arg(katran_bin())
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("spawning katran in the LB namespace")
    }

    pub fn katran_in_lb(&self, args: &[&str]) -> Result<Child> {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.lb_ns))
            .arg(&self.bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning katran in the LB namespace")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_pins(&self.pin_dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A Python process in a namespace whose standard input the test writes
/// and whose standard output it reads line by line; killed when dropped.
pub struct Proc {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    /// `python3 -u -c SCRIPT ARGS...` in namespace `ns`.
    pub fn python(ns: &str, script: &str, args: &[&str]) -> Result<Proc> {
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["python3", "-u", "-c", script])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning python3 in {ns}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            what: format!("python3 {args:?} in {ns}"),
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    /// The next line of output, waiting at most `timeout`.
    pub fn line(&self, timeout: Duration) -> Result<String> {
        self.lines
            .recv_timeout(timeout)
            .with_context(|| format!("{}: no output line within {timeout:?}", self.what))
    }

    pub fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin is closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Closes standard input: the scripts here take that as "finish".
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `SENDER SRC DST PORT RATE FLOWS`: datagrams carrying an 8-byte sequence
/// number, RATE a second, round-robin over FLOWS sockets (source ports),
/// until standard input closes; then prints `sent N ERRORS`.
const SENDER: &str = r#"
import os, select, socket, sys, time
src, dst, port, rate, flows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
socks = []
for _ in range(flows):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((src, 0))
    socks.append(s)
pad = b"k" * 56
seq = errors = 0
print("ready", flush=True)
t0 = time.monotonic()
while True:
    r, _, _ = select.select([0], [], [], 0.001)
    if r and not os.read(0, 4096):
        break
    due = int((time.monotonic() - t0) * rate)
    while seq < due:
        try:
            socks[seq % flows].sendto(seq.to_bytes(8, "big") + pad, (dst, port))
            seq += 1
        except OSError:
            errors += 1
            break
print(f"sent {seq} {errors} {time.monotonic() - t0:.3f}", flush=True)
"#;

/// `RECEIVER PORT OUT`: counts datagrams on PORT; answers each line on
/// standard input with `count UNIQUE`; when standard input closes, drains
/// the socket, writes every sequence number seen to OUT (8
/// bytes each) and prints `got UNIQUE DUPLICATES`.
const RECEIVER: &str = r#"
import os, select, socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 8 << 20)
s.bind(("::", port))
seen, dups = set(), 0
def take(data):
    global dups
    seq = int.from_bytes(data[:8], "big")
    if seq in seen:
        dups += 1
    else:
        seen.add(seq)
print("ready", flush=True)
while True:
    r, _, _ = select.select([s, 0], [], [])
    if s in r:
        take(s.recv(2048))
    if 0 in r:
        asked = os.read(0, 4096)
        if not asked:
            break
        for _ in range(asked.count(b"\n")):
            print(f"count {len(seen)}", flush=True)
s.setblocking(False)
try:
    while True:
        take(s.recv(2048))
except BlockingIOError:
    pass
with open(out, "wb") as f:
    for seq in sorted(seen):
        f.write(seq.to_bytes(8, "big"))
print(f"got {len(seen)} {dups}", flush=True)
"#;

/// What a [`UdpStream`] sent and what arrived.
#[derive(Debug)]
pub struct StreamReport {
    pub sent: u64,
    /// Distinct sequence numbers received over all reals.
    pub received: u64,
    pub duplicates: u64,
    /// Sends the client's kernel refused (not counted in `sent`).
    pub send_errors: u64,
    /// Per real, distinct sequence numbers received.
    pub per_real: Vec<u64>,
    /// Lost sequence numbers as ranges `(first, last)`.
    pub lost: Vec<(u64, u64)>,
    pub seconds: f64,
}

/// Sequence-numbered UDP datagrams from client 0 to a VIP, counted by a
/// receiver on every real.
pub struct UdpStream {
    sender: Proc,
    receivers: Vec<(Proc, PathBuf)>,
}

impl UdpStream {
    /// Starts receivers on every real's `port`, then the sender: `rate`
    /// datagrams a second to `vip`:`port` over `flows` source ports.
    /// Receivers keep their counts in `dir`.
    pub fn start(
        tb: &Testbed,
        vip: IpAddr,
        port: u16,
        rate: u32,
        flows: u32,
        dir: &Path,
    ) -> Result<UdpStream> {
        let mut receivers = Vec::new();
        for (i, real) in tb.reals.iter().enumerate() {
            let out = dir.join(format!("udp-{port}-real{i}.seqs"));
            let p = Proc::python(
                &real.ns,
                RECEIVER,
                &[&port.to_string(), &out.to_string_lossy()],
            )?;
            let ready = p.line(Duration::from_secs(10))?;
            if ready != "ready" {
                bail!("receiver on real{i} said {ready:?}");
            }
            receivers.push((p, out));
        }
        let client = &tb.clients[0];
        let src = match vip {
            IpAddr::V4(_) => client.v4.to_string(),
            IpAddr::V6(_) => client.v6.to_string(),
        };
        let sender = Proc::python(
            &client.ns,
            SENDER,
            &[
                &src,
                &vip.to_string(),
                &port.to_string(),
                &rate.to_string(),
                &flows.to_string(),
            ],
        )?;
        let ready = sender.line(Duration::from_secs(10))?;
        if ready != "ready" {
            bail!("sender said {ready:?}");
        }
        Ok(UdpStream { sender, receivers })
    }

    /// Datagrams received so far, summed over the reals.
    pub fn received(&mut self) -> Result<u64> {
        let mut n = 0;
        for (p, _) in &mut self.receivers {
            p.send("count")?;
            let line = p.line(Duration::from_secs(10))?;
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["count", c] => n += c.parse::<u64>()?,
                _ => bail!("receiver said {line:?}"),
            }
        }
        Ok(n)
    }

    /// Waits until `more` datagrams arrived beyond those received now (the
    /// stream flows), with a generous deadline.
    pub fn wait_flowing(&mut self, more: u64) -> Result<()> {
        let want = self.received()? + more;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received()?;
            if got >= want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the UDP stream stalled: {got} of {want} datagrams after 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the sender, lets what is in flight arrive, stops the receivers
    /// and compares.
    pub fn finish(mut self) -> Result<StreamReport> {
        self.sender.close_stdin();
        let line = self.sender.line(Duration::from_secs(10))?;
        let f: Vec<&str> = line.split_whitespace().collect();
        let (sent, send_errors, seconds) = match f.as_slice() {
            ["sent", n, e, t] => (n.parse::<u64>()?, e.parse::<u64>()?, t.parse::<f64>()?),
            _ => bail!("sender said {line:?}"),
        };
        // What is in flight arrives: wait for every datagram, with a
        // generous deadline past which the missing ones count as lost.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.received()? < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut per_real = Vec::new();
        let mut duplicates = 0;
        for (p, out) in &mut self.receivers {
            p.close_stdin();
            let line = p.line(Duration::from_secs(10))?;
            let f: Vec<&str> = line.split_whitespace().collect();
            let (unique, dups) = match f.as_slice() {
                ["got", n, d] => (n.parse::<u64>()?, d.parse::<u64>()?),
                _ => bail!("receiver said {line:?}"),
            };
            let bytes = fs::read(&*out).with_context(|| format!("reading {}", out.display()))?;
            let _ = fs::remove_file(&*out);
            for c in bytes.chunks_exact(8) {
                // a sequence number seen on two reals is a duplicate too
                if !seen.insert(u64::from_be_bytes(c.try_into()?)) {
                    duplicates += 1;
                }
            }
            per_real.push(unique);
            duplicates += dups;
        }
        let mut lost: Vec<(u64, u64)> = Vec::new();
        for seq in (0..sent).filter(|s| !seen.contains(s)) {
            match lost.last_mut() {
                Some((_, last)) if *last + 1 == seq => *last = seq,
                _ => lost.push((seq, seq)),
            }
        }
        Ok(StreamReport {
            sent,
            received: seen.range(..sent).count() as u64,
            duplicates,
            send_errors,
            per_real,
            lost,
            seconds,
        })
    }
}

/// `ECHO_SERVER NAME PORT`: a TCP server answering each line with
/// `NAME LINE`; prints `ready` once listening (IPv4 and IPv6).
pub const ECHO_SERVER: &str = r#"
import socket, socketserver, sys
name, port = sys.argv[1], int(sys.argv[2])
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(name.encode() + b" " + line)
            self.wfile.flush()
class Server(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
server = Server(("::", port), Handler)
print("ready", flush=True)
server.serve_forever()
"#;

/// `ECHO_CLIENT SRC DST PORT`: one TCP connection; prints `connected
/// SPORT`, then for each line of standard input sends it and prints the
/// answer (`NAME LINE`), or `err REASON`.
const ECHO_CLIENT: &str = r#"
import socket, sys
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(5)
s.bind((src, 0))
s.connect((dst, port))
f = s.makefile("rb")
print("connected", s.getsockname()[1], flush=True)
for line in sys.stdin:
    try:
        s.sendall(line.encode())
        answer = f.readline()
        if not answer:
            print("err closed", flush=True)
        else:
            print(answer.decode().rstrip("\n"), flush=True)
    except Exception as e:
        print("err " + repr(e), flush=True)
"#;

/// Starts an echo server named `real<i>` on `port` in every real (killed
/// with the testbed).
pub fn serve_echo(tb: &mut Testbed, port: u16) -> Result<()> {
    let port = port.to_string();
    for i in 0..tb.reals.len() {
        let ns = tb.reals[i].ns.clone();
        let name = format!("real{i}");
        tb.spawn(
            &ns,
            &["python3", "-c", ECHO_SERVER, &name, &port],
            Some("ready"),
        )?;
    }
    Ok(())
}

/// One long-lived TCP connection from client 0 through a VIP to an echo
/// server.
pub struct EchoConn {
    proc: Proc,
    pub sport: u16,
    n: usize,
}

impl EchoConn {
    pub fn connect(tb: &Testbed, vip: IpAddr, port: u16) -> Result<EchoConn> {
        let client = &tb.clients[0];
        let src = match vip {
            IpAddr::V4(_) => client.v4.to_string(),
            IpAddr::V6(_) => client.v6.to_string(),
        };
        let proc = Proc::python(
            &client.ns,
            ECHO_CLIENT,
            &[&src, &vip.to_string(), &port.to_string()],
        )?;
        let line = proc.line(Duration::from_secs(10))?;
        let sport = match line.split_once(' ') {
            Some(("connected", p)) => p.parse()?,
            _ => bail!("echo client said {line:?}"),
        };
        Ok(EchoConn { proc, sport, n: 0 })
    }

    /// Sends one line on the connection; the name of the real that echoed it.
    pub fn ping(&mut self) -> Result<String> {
        self.n += 1;
        let msg = format!("ping-{}", self.n);
        self.proc.send(&msg)?;
        let answer = self.proc.line(Duration::from_secs(10))?;
        match answer.split_once(' ') {
            Some((name, echoed)) if echoed == msg && name.starts_with("real") => {
                Ok(name.to_string())
            }
            _ => bail!("sent {msg:?} on the connection, got {answer:?}"),
        }
    }
}
