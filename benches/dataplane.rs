//! Dataplane and control-plane benchmark.
//!
//! Dataplane: every path is timed by the kernel with BPF_PROG_TEST_RUN at
//! `repeat = 1` (one system call per packet on a fresh copy of the frame:
//! the kernel does not restore a frame the program rewrote between
//! repeats), for three programs side by side: ours, Katran's own balancer
//! (loaded from `../shared/bench/katran`, see `dataplane/katran.rs`) and a
//! program that only returns XDP_PASS (the floor). Each round runs every
//! path once on each program, paths and programs interleaved, so drift
//! (frequency, other load) spreads over all of them alike; the ratio of
//! interquartile means (the mean of the middle half of the runs) is what
//! holds between runs. Each table layout is loaded several times (fresh
//! maps for both programs each time), its runs split between the loads,
//! so that no single placement of the maps decides. Table settings are compared like
//! for like: our per-CPU tables with Katran's per-CPU LRU tables of the same
//! size, our shared table with its shared fallback table. This thread is
//! pinned to one CPU so flows stay in that CPU's table. One line per path:
//! `vs-katran PATH: ours N ns, katran N ns, floor N ns, ratio R`, or
//! `skipped: vs-katran: REASON` (a failure under KATRAN_REQUIRE_PRIVILEGED=1).
//!
//! Control plane: `apply` of a large configuration into freshly loaded maps,
//! then of the same configuration with one weight changed.
//!
//! Run with `cargo bench --bench dataplane` as root.

#[path = "dataplane/katran.rs"]
mod katran_side;
#[path = "dataplane/spacer.rs"]
mod spacer;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use katran::apply::apply;
use katran::hash::real_hash;
use katran::kernel::bpf::abi::types::lb_stat;
use katran::kernel::bpf::bpffs;
use katran::kernel::bpf::loader::{route_libbpf_log, Dataplane, LoadOptions};
use katran::kernel::live::load_options;
use katran::kernel::testrun::{run_once, run_timed, verdict_name, XDP_PASS, XDP_TX};
use katran::maglev::{ring_v1, ring_v2, Endpoint};
use katran::model::{Backend, MacAddr, Proto, RingKind, State, Vip, VipFlags, VipKey};
use katran_side::{Katran, Lru};
use libbpf_rs::MapHandle;
use spacer::{Rng, Spacer};

const WARMUP: usize = 1_000;
const RUNS: usize = 20_000;
/// Each table layout is loaded this many times, fresh maps for both
/// programs each time, each program's code moved by a spacer of its own
/// (see `dataplane/spacer.rs`), and its RUNS split between the loads: where
/// the kernel places the maps and the code moves a path's time by up to 20%
/// from one load to the next (for Katran as for ours), and pooling several
/// placements measures the programs rather than one placement. Sixteen:
/// Katran's pass path alone took 75 to 95 ns from one load to the next, and
/// the mean of eight moved the pass path's ratio between 0.71 and 0.80 from
/// run to run.
const PLACEMENTS: usize = 16;
/// Katran built with a new-flow limit no benchmark reaches, so that every
/// SYN is inserted as ours are (its README says why).
const KATRAN_OBJECT: &str = "balancer-norate.bpf.o";
/// Katran's default build, for the SYN flood: at most
/// KATRAN_MAX_CONN_RATE new flows per second per CPU are inserted.
const KATRAN_DEFAULT_OBJECT: &str = "balancer.bpf.o";
const KATRAN_MAX_CONN_RATE: u64 = 125_000;
/// SYN-flood runs per program, measured in blocks of FLOOD_BLOCK rounds,
/// split between the placements.
const FLOOD_RUNS: usize = 8_000;
const FLOOD_BLOCK: usize = 500;
const CONTROL_TRIALS: usize = 3;

const VIP_TCP4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const VIP_QUIC: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const VIP_UDP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 3);
const NOT_A_VIP: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
const VIP_TCP6: Ipv6Addr = Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 1);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10);
/// QUIC server id routed by the state (connection id version 1).
const QUIC_SERVER_ID: u32 = 1234;

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var_os("KATRAN_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
            eprintln!(
                "dataplane benchmark: needs root (KATRAN_REQUIRE_PRIVILEGED=1 forbids skipping)"
            );
            std::process::exit(1);
        }
        println!("skipped: dataplane benchmark: needs root");
        return;
    }
    // libbpf's messages go to `log`, which nothing here prints.
    route_libbpf_log();
    if let Err(e) = run() {
        eprintln!("dataplane benchmark failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let all = affinity()?;
    let cpu = pin_to_current_cpu()?;
    dataplane_section(cpu)?;
    println!();
    // an apply runs on every CPU it may (its ring builds are parallel), as
    // the daemon does
    set_affinity(&all)?;
    control_plane_section()?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Frames

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// TCP header (no options) followed by `payload` bytes.
fn tcp(sport: u16, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload);
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes()); // seq
    t.extend_from_slice(&(if flags & TCP_ACK != 0 { 1u32 } else { 0 }).to_be_bytes());
    t.push(5 << 4); // data offset
    t.push(flags);
    t.extend_from_slice(&65535u16.to_be_bytes()); // window
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    t.extend((0..payload).map(|i| i as u8));
    t
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, proto: Proto, l4: &[u8]) -> Vec<u8> {
    let mut f = ethernet(0x0800);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0]); // id 1, don't fragment
    ip.push(64);
    ip.push(proto.number());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

fn ipv6_frame(src: Ipv6Addr, dst: Ipv6Addr, proto: Proto, l4: &[u8]) -> Vec<u8> {
    let mut f = ethernet(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.push(proto.number());
    f.push(64);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(l4);
    f
}

/// Offsets inside an Ethernet + IPv4 frame.
const V4_SRC: usize = 14 + 12;
const V4_CSUM: usize = 14 + 10;
const V4_SPORT: usize = 14 + 20;

/// Gives a v4 frame its own client address and port (flow number `n`).
fn set_v4_client(frame: &mut [u8], n: u32) {
    // 100.64.0.0/10 holds 4M clients; ports cycle over 1024..=65023.
    let src = Ipv4Addr::from(0x6440_0000 | (n & 0x003f_ffff));
    let sport = 1024 + (n % 64_000) as u16;
    frame[V4_SRC..V4_SRC + 4].copy_from_slice(&src.octets());
    frame[V4_SPORT..V4_SPORT + 2].copy_from_slice(&sport.to_be_bytes());
    frame[V4_CSUM..V4_CSUM + 2].copy_from_slice(&[0, 0]);
    let sum = ipv4_checksum(&frame[14..34]);
    frame[V4_CSUM..V4_CSUM + 2].copy_from_slice(&sum.to_be_bytes());
}

/// A QUIC short-header payload whose destination connection id carries
/// `server_id` (Katran's id version 1: 16 bits after the 2-bit version).
fn quic_short_header(server_id: u32) -> Vec<u8> {
    assert!(server_id < 1 << 16);
    let mut p = vec![0x40]; // short header, fixed bit
    p.push(0x40 | (server_id >> 10) as u8);
    p.push((server_id >> 2) as u8);
    p.push(((server_id & 3) << 6) as u8);
    p.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55]); // rest of the 8-byte id
    p.extend((0..23).map(|i| i as u8)); // packet number and protected payload
    p
}

// ---------------------------------------------------------------------------
// Dataplane

fn reals_v4(base: u8, n: u8) -> Vec<Backend> {
    (1..=n)
        .map(|i| Backend {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, base, i)),
            weight: 1,
        })
        .collect()
}

fn dataplane_state() -> State {
    let vip = |addr: IpAddr, port: u16, proto: Proto, flags: VipFlags, reals| Vip {
        key: VipKey { addr, port, proto },
        flags,
        reals,
    };
    let quic_reals = reals_v4(3, 16);
    let mut state = State {
        ring: RingKind::MaglevV2,
        ..State::default()
    };
    state.globals.gateway_mac = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
    // The rate check still runs on every insert (as in production); the
    // limit is only raised so that the benchmark's many new flows per
    // second are all inserted.
    state.globals.max_conn_rate = 100_000_000;
    state.vips = vec![
        vip(
            IpAddr::V4(VIP_TCP4),
            80,
            Proto::Tcp,
            VipFlags::default(),
            reals_v4(1, 16),
        ),
        vip(
            IpAddr::V6(VIP_TCP6),
            80,
            Proto::Tcp,
            VipFlags::default(),
            (1..=16u16)
                .map(|i| Backend {
                    addr: IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 2, 0, 0, 0, i)),
                    weight: 1,
                })
                .collect(),
        ),
        vip(
            IpAddr::V4(VIP_QUIC),
            443,
            Proto::Udp,
            VipFlags {
                quic: true,
                ..VipFlags::default()
            },
            quic_reals.clone(),
        ),
        vip(
            IpAddr::V4(VIP_UDP),
            53,
            Proto::Udp,
            VipFlags::default(),
            reals_v4(4, 16),
        ),
    ];
    state.server_ids.insert(QUIC_SERVER_ID, quic_reals[5].addr);
    state
}

/// Connection-table settings, each compared with Katran's like for like:
/// our per-CPU tables with its per-CPU LRU tables of the same size, our
/// shared table with its shared `fallback_cache`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tables {
    PerCpu,
    Shared,
}

impl Tables {
    /// The benchmark state in the shared folder Katran is provisioned from.
    fn toml(self) -> &'static str {
        match self {
            Tables::PerCpu => "bench_pcpu.toml",
            Tables::Shared => "bench_shared.toml",
        }
    }

    fn katran_lru(self) -> Lru {
        match self {
            Tables::PerCpu => Lru::PerCpu(PER_CPU_TABLE),
            Tables::Shared => Lru::Fallback,
        }
    }

    /// Load options equal to what `toml()` asks for, when it is absent.
    fn builtin_options(self) -> LoadOptions {
        match self {
            Tables::PerCpu => LoadOptions {
                conn_table_size: PER_CPU_TABLE,
                ..LoadOptions::default()
            },
            Tables::Shared => LoadOptions {
                fallback_table_size: SHARED_TABLE,
                forwarding_cpus: Some(Vec::new()),
                ..LoadOptions::default()
            },
        }
    }
}

/// Entries of each per-CPU table (ours and Katran's).
const PER_CPU_TABLE: u32 = 65_536;
/// Entries of our shared table (Katran's fallback_cache holds 1,000).
const SHARED_TABLE: u32 = 1024;

/// Loads ours with the settings and state of the TOML file Katran gets,
/// or, without the shared folder, with the built-in copy of that state;
/// `max_conn_rate` replaces the file's when given.
fn load_ours(tables: Tables, dir: &Path, max_conn_rate: Option<u32>) -> Result<Dataplane> {
    let path = dir.join(tables.toml());
    let (options, mut state) = if path.exists() {
        let loaded = katran::config::load(&path).map_err(|e| anyhow!("{e}"))?;
        (load_options(&loaded.config.settings), loaded.config.state)
    } else {
        (tables.builtin_options(), dataplane_state())
    };
    if let Some(rate) = max_conn_rate {
        state.globals.max_conn_rate = rate;
    }
    let dp = Dataplane::load(&options).context("loading the balancer")?;
    apply(&mut dp.store()?, &state).context("applying the benchmark state")?;
    Ok(dp)
}

/// One measured path: a frame and the verdict every balancer gives it.
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    /// A new client address and port for every round.
    new_flow: bool,
    verdict: u32,
    /// ns per run, by program: ours, Katran's, the XDP_PASS floor.
    samples: [Vec<u64>; 3],
}

const OURS: usize = 0;
const KATRAN: usize = 1;
const FLOOR: usize = 2;

impl Case {
    fn new(name: &'static str, frame: Vec<u8>, new_flow: bool, verdict: u32) -> Case {
        Case {
            name,
            frame,
            new_flow,
            verdict,
            samples: Default::default(),
        }
    }

    fn median(&mut self, prog: usize) -> u64 {
        let s = &mut self.samples[prog];
        s.sort_unstable();
        percentile(s, 50)
    }

    /// Mean of the middle half: as robust as the median, and finer than
    /// the kernel's clock steps (about 10 ns here).
    fn interquartile_mean(&mut self, prog: usize) -> f64 {
        let s = &mut self.samples[prog];
        s.sort_unstable();
        let mid = &s[s.len() / 4..s.len() * 3 / 4];
        mid.iter().sum::<u64>() as f64 / mid.len() as f64
    }
}

/// What the counters of ours must show after the measured rounds: the
/// named counters together moved by `want`.
type Expect = (&'static [lb_stat], u64, &'static str);

/// Runs `cases` round after round, each case on every program in turn
/// (the order rotating), and checks from our counters that every measured
/// run took the path its case is named after. Katran's first output frame
/// of each case must be byte-identical to ours.
struct Session<'a> {
    ours: &'a Dataplane,
    katran: Option<&'a Katran>,
    flow_no: &'a mut u32,
    out: Vec<u8>,
}

/// The programs a session runs, each with its slot in `Case::samples`.
fn progs<'a>(ours: &'a Dataplane, katran: Option<&'a Katran>) -> Vec<(usize, BorrowedFd<'a>)> {
    let mut v = vec![(OURS, ours.balancer().as_fd())];
    if let Some(k) = katran {
        v.push((KATRAN, k.prog()));
    }
    v.push((FLOOR, ours.pass_floor().as_fd()));
    v
}

impl Session<'_> {
    fn next_flow(&mut self, case: &mut Case) {
        if case.new_flow {
            set_v4_client(&mut case.frame, *self.flow_no);
            *self.flow_no += 1;
        }
    }

    /// One round of one case: every program once, in an order set by `turn`.
    fn round(&mut self, case: &mut Case, turn: usize, record: bool) -> Result<()> {
        self.next_flow(case);
        let progs = progs(self.ours, self.katran);
        let n = progs.len();
        for k in 0..n {
            let (which, fd) = progs[(turn + k) % n];
            let want = if which == FLOOR {
                XDP_PASS
            } else {
                case.verdict
            };
            let (verdict, ns) = run_timed(&fd, &case.frame, &mut self.out)?;
            ensure!(
                verdict == want,
                "{} ({}): verdict {} (expected {})",
                case.name,
                ["ours", "katran", "floor"][which],
                verdict_name(verdict),
                verdict_name(want)
            );
            if record {
                case.samples[which].push(ns);
            }
        }
        Ok(())
    }

    /// The first packet of each case: puts established flows in the
    /// tables, and compares Katran's frame with ours.
    fn first(&mut self, case: &mut Case) -> Result<()> {
        self.next_flow(case);
        let (v, ours) = run_once(self.ours.balancer(), &case.frame)?;
        ensure!(
            v == case.verdict,
            "{}: verdict {}",
            case.name,
            verdict_name(v)
        );
        if let Some(k) = self.katran {
            let (kv, theirs) = run_once(&k.prog(), &case.frame)?;
            ensure!(
                kv == v && theirs == ours,
                "{}: Katran answers {} with a different frame than ours ({})",
                case.name,
                verdict_name(kv),
                verdict_name(v)
            );
        }
        Ok(())
    }

    /// SYNs of new flows beyond the new-flow rate. Before each block of
    /// rounds Katran is taken over its limit by a burst of SYNs (with most
    /// of its one-second window still ahead); a block during which its
    /// window ended (so some of its SYNs were inserted) is measured again.
    /// Ours is sent every SYN of the burst as well, so that both programs
    /// meet the measured SYNs as a flood leaves them: with their rings in
    /// the cache. Measures `runs` more runs of each program (whole blocks);
    /// returns how many SYNs ours was sent.
    fn measure_flood(&mut self, case: &mut Case, cpu: usize, runs: usize) -> Result<u64> {
        self.first(case)?;
        let (mut sent, mut bursts) = (1, 0);
        let until = case.samples[OURS].len() + runs;
        let rate = self.katran.map(|k| k.map("stats")).transpose()?;
        let mut burst = case.frame.clone();
        let started = Instant::now();
        while case.samples[OURS].len() < until {
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "could not take Katran over its new-flow limit"
            );
            let mut window = None;
            if let (Some(k), Some(stats)) = (self.katran, &rate) {
                loop {
                    let (count, start) = k.conn_rate(stats, cpu)?;
                    if count > KATRAN_MAX_CONN_RATE && monotonic_ns() < start + 600_000_000 {
                        window = Some(start);
                        break;
                    }
                    // ours is sent the same burst: a flood keeps both
                    // programs' rings and tables warm, not Katran's alone
                    for _ in 0..1000 {
                        set_v4_client(&mut burst, *self.flow_no);
                        *self.flow_no += 1;
                        run_timed(&k.prog(), &burst, &mut self.out)?;
                        run_timed(&self.ours.balancer().as_fd(), &burst, &mut self.out)?;
                        bursts += 1;
                    }
                }
            }
            let kept = case.samples.each_ref().map(Vec::len);
            for r in 0..FLOOD_BLOCK {
                self.round(case, r, true)?;
            }
            sent += FLOOD_BLOCK as u64 + bursts;
            bursts = 0;
            if let (Some(k), Some(stats), Some(start)) = (self.katran, &rate, window) {
                if k.conn_rate(stats, cpu)?.1 != start {
                    for (s, n) in case.samples.iter_mut().zip(kept) {
                        s.truncate(n);
                    }
                }
            }
        }
        Ok(sent)
    }

    fn measure(&mut self, cases: &mut [Case], rounds: usize, expect: &[Expect]) -> Result<()> {
        for case in cases.iter_mut() {
            self.first(case)?;
        }
        self.rounds(cases, 0, WARMUP, false)?;
        let stats = self.ours.maps()?.stats;
        let before = read_stats(&stats)?;
        self.rounds(cases, WARMUP, rounds, true)?;
        check_counters(&before, &read_stats(&stats)?, expect)
    }

    fn rounds(
        &mut self,
        cases: &mut [Case],
        from: usize,
        rounds: usize,
        record: bool,
    ) -> Result<()> {
        let n = cases.len();
        for round in from..from + rounds {
            for k in 0..n {
                self.round(&mut cases[(round + k) % n], round + k, record)?;
            }
        }
        Ok(())
    }
}

fn check_counters(before: &[u64], after: &[u64], expect: &[Expect]) -> Result<()> {
    for (stats, want, what) in expect {
        let got: u64 = stats
            .iter()
            .map(|s| after[s.0 as usize] - before[s.0 as usize])
            .sum();
        ensure!(
            got == *want,
            "the measured runs counted {got} {what}, expected {want}: \
             some path did not take the branch it is named after"
        );
    }
    Ok(())
}

fn read_stats(stats: &MapHandle) -> Result<Vec<u64>> {
    katran::views::stats::global(stats)
}

/// Pins this thread to the CPU it runs on, so every run uses one CPU's
/// connection table. Returns the CPU.
fn pin_to_current_cpu() -> Result<usize> {
    // SAFETY: plain libc calls on a zeroed, owned cpu_set_t.
    unsafe {
        let cpu = libc::sched_getcpu();
        ensure!(
            cpu >= 0,
            "sched_getcpu: {}",
            std::io::Error::last_os_error()
        );
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        set_affinity(&set)?;
        Ok(cpu as usize)
    }
}

/// The CPUs this thread may run on.
fn affinity() -> Result<libc::cpu_set_t> {
    // SAFETY: fills a zeroed, owned cpu_set_t of the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        Ok(set)
    }
}

fn set_affinity(set: &libc::cpu_set_t) -> Result<()> {
    // SAFETY: reads a cpu_set_t of the size given.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) } != 0 {
        bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn require_privileged() -> bool {
    std::env::var_os("KATRAN_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1")
}

fn dataplane_section(cpu: usize) -> Result<()> {
    let dir = katran_side::bench_dir();
    let katran_ok = match katran_side::unavailable(&dir) {
        None => true,
        Some(reason) if require_privileged() => {
            bail!("vs-katran cannot run: {reason} (KATRAN_REQUIRE_PRIVILEGED=1 forbids skipping)")
        }
        Some(reason) => {
            println!("skipped: vs-katran: {reason}");
            false
        }
    };
    if katran_ok {
        // Katran's script pins below /sys/fs/bpf but mounts nothing: on a
        // fresh machine (CI's) bpffs is not mounted until something does.
        bpffs::mount_if_missing().context("the bpf filesystem for Katran's pins")?;
    }
    let load_katran = |tables: Tables, object: &str, tag: &str| -> Result<Option<Katran>> {
        if !katran_ok {
            return Ok(None);
        }
        let config = dir.join(tables.toml()).display().to_string();
        Katran::load(&dir, object, tables.katran_lru(), &config, tag)
            .map(Some)
            .context("loading Katran")
    };

    let syn = ipv4_frame(CLIENT4, VIP_TCP4, Proto::Tcp, &tcp(40000, 80, TCP_SYN, 0));
    let ack4 = ipv4_frame(CLIENT4, VIP_TCP4, Proto::Tcp, &tcp(40001, 80, TCP_ACK, 32));
    let ack6 = ipv6_frame(CLIENT6, VIP_TCP6, Proto::Tcp, &tcp(40002, 80, TCP_ACK, 32));
    let quic = ipv4_frame(
        CLIENT4,
        VIP_QUIC,
        Proto::Udp,
        &udp(40003, 443, &quic_short_header(QUIC_SERVER_ID)),
    );
    let udp4 = ipv4_frame(CLIENT4, VIP_UDP, Proto::Udp, &udp(40004, 53, &[0x5a; 32]));
    let other = ipv4_frame(CLIENT4, NOT_A_VIP, Proto::Tcp, &tcp(40005, 80, TCP_ACK, 32));

    let mut flow_no = 0;
    let mut results: Vec<Case> = Vec::new();
    let started = Instant::now();
    let mut rng = Rng::from_clock();
    // `cases` on PLACEMENTS fresh loads of both programs, each after a
    // spacer of its own, the runs split between them.
    let mut measure_placed =
        |tables: Tables, tag: &str, cases: &mut [Case], expect: &[Expect]| -> Result<()> {
            for _ in 0..PLACEMENTS {
                let _moves_ours = Spacer::load(&mut rng)?;
                let ours = load_ours(tables, &dir, None)?;
                let _moves_katran = Spacer::load(&mut rng)?;
                let katran = load_katran(tables, KATRAN_OBJECT, tag)?;
                Session {
                    ours: &ours,
                    katran: katran.as_ref(),
                    flow_no: &mut flow_no,
                    out: vec![0u8; 512],
                }
                .measure(cases, RUNS / PLACEMENTS, expect)?;
            }
            Ok(())
        };

    // Per-CPU tables: every path.
    {
        let mut cases = vec![
            Case::new("non-VIP", other, false, XDP_PASS),
            Case::new("established v4 per-CPU", ack4.clone(), false, XDP_TX),
            Case::new("new flow per-CPU", syn.clone(), true, XDP_TX),
            Case::new("established v6", ack6, false, XDP_TX),
            Case::new("UDP", udp4, false, XDP_TX),
            Case::new("QUIC server id", quic, false, XDP_TX),
        ];
        let r = (RUNS / PLACEMENTS) as u64;
        use lb_stat as S;
        let expect: &[Expect] = &[
            (&[S::STAT_CONN_MISS_TCP_SYN], r, "new TCP flows"),
            (&[S::STAT_CONN_HIT], 3 * r, "connection-table hits"),
            (&[S::STAT_QUIC_CID_ROUTED], r, "QUIC id routings"),
            (&[S::STAT_XDP_PASS], r, "passes"),
            (&[S::STAT_XDP_TX], 5 * r, "transmits"),
            (&[S::STAT_CONN_MISS_TCP_NONSYN], 0, "TCP table misses"),
            (&[S::STAT_CONN_MISS_UDP], 0, "UDP table misses"),
            (&[S::STAT_CONN_RATE_LIMITED], 0, "rate-limited inserts"),
            (&[S::STAT_FALLBACK_TABLE], 0, "fallback-table uses"),
            (&[S::STAT_XDP_DROP], 0, "drops"),
        ];
        measure_placed(Tables::PerCpu, "pcpu", &mut cases, expect)?;
        results.extend(cases);
    }

    // The shared table: the paths that touch it on every packet. Its 1,024
    // entries are far fewer than the new flows, so an established flow may
    // now and then be evicted and come back as a table miss.
    {
        let mut cases = vec![
            Case::new("established v4 shared", ack4, false, XDP_TX),
            Case::new("new flow shared", syn.clone(), true, XDP_TX),
        ];
        let r = (RUNS / PLACEMENTS) as u64;
        use lb_stat as S;
        let expect: &[Expect] = &[
            (&[S::STAT_CONN_MISS_TCP_SYN], r, "new TCP flows"),
            (
                &[S::STAT_CONN_HIT, S::STAT_CONN_MISS_TCP_NONSYN],
                r,
                "connection-table hits and misses",
            ),
            (&[S::STAT_XDP_TX], 2 * r, "transmits"),
            (&[S::STAT_CONN_RATE_LIMITED], 0, "rate-limited inserts"),
        ];
        measure_placed(Tables::Shared, "shared", &mut cases, expect)?;
        results.extend(cases);
    }

    // A SYN flood: new flows beyond max_conn_rate, not inserted. Ours gets a
    // limit of one new flow per second, so all but about one SYN a second
    // are over it; Katran's default build is taken over its limit before
    // each measured block (see measure_flood).
    // Like the other paths, on PLACEMENTS loads; each fresh load may store
    // one more SYN before its rate is reached.
    {
        let mut case = Case::new("SYN flood (over max_conn_rate)", syn, true, XDP_TX);
        let (mut sent, mut limited, mut syns) = (0, 0, 0);
        for _ in 0..PLACEMENTS {
            let _moves_ours = Spacer::load(&mut rng)?;
            let ours = load_ours(Tables::PerCpu, &dir, Some(1))?;
            let _moves_katran = Spacer::load(&mut rng)?;
            let katran = load_katran(Tables::PerCpu, KATRAN_DEFAULT_OBJECT, "flood")?;
            let stats = ours.maps()?.stats;
            let before = read_stats(&stats)?;
            let mut s = Session {
                ours: &ours,
                katran: katran.as_ref(),
                flow_no: &mut flow_no,
                out: vec![0u8; 512],
            };
            sent += s.measure_flood(&mut case, cpu, FLOOD_RUNS / PLACEMENTS)?;
            let after = read_stats(&stats)?;
            let stat = |x: lb_stat| after[x.0 as usize] - before[x.0 as usize];
            limited += stat(lb_stat::STAT_CONN_RATE_LIMITED);
            syns += stat(lb_stat::STAT_CONN_MISS_TCP_SYN);
        }
        ensure!(
            syns == sent && limited + PLACEMENTS as u64 + started.elapsed().as_secs() >= sent,
            "SYN flood: {limited} of {sent} SYNs over the rate ({syns} counted as new flows)"
        );
        results.push(case);
    }

    // The kernel times each run in steps of about 10 ns, so a median sits
    // on a step and jumps by one between runs; the mean of the middle half
    // of the runs (the interquartile mean) is as robust to outliers and
    // resolves what lies between steps.
    println!(
        "dataplane, ours vs Katran's balancer (BPF_PROG_TEST_RUN, repeat=1; per path \
         {RUNS} runs of each program after {WARMUP} warm-up rounds, ours / Katran / \
         XDP_PASS floor interleaved, interquartile means in ns/packet; pinned to CPU {cpu}; \
         {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    // KATRAN_BENCH_DETAIL=1: the medians and the ratio above the floor
    // under each line.
    let detail = std::env::var_os("KATRAN_BENCH_DETAIL").is_some_and(|v| v == "1");
    for mut case in results {
        let (ours, floor) = (
            case.interquartile_mean(OURS),
            case.interquartile_mean(FLOOR),
        );
        if katran_ok {
            let theirs = case.interquartile_mean(KATRAN);
            println!(
                "vs-katran {}: ours {ours:.1} ns, katran {theirs:.1} ns, floor {floor:.1} ns, \
                 ratio {:.2}",
                case.name,
                ours / theirs
            );
            if detail {
                let (o, k, f) = (case.median(OURS), case.median(KATRAN), case.median(FLOOR));
                println!(
                    "    medians: ours {o}, katran {k}, floor {f}, ratio {:.3}; \
                     above the floor {:.3}",
                    o as f64 / k as f64,
                    (ours - floor) / (theirs - floor)
                );
            }
        } else {
            println!(
                "dataplane {}: ours {ours:.1} ns, floor {floor:.1} ns",
                case.name
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Control plane

const CP_VIPS: u32 = 256;
const CP_REALS_PER_VIP: u32 = 64;

fn large_state() -> State {
    let mut state = State {
        ring: RingKind::MaglevV2,
        ..State::default()
    };
    state.vips = (0..CP_VIPS)
        .map(|v| Vip {
            key: VipKey {
                addr: IpAddr::V4(Ipv4Addr::new(10, 100, (v >> 8) as u8, v as u8)),
                port: 80,
                proto: Proto::Tcp,
            },
            flags: VipFlags::default(),
            reals: (0..CP_REALS_PER_VIP)
                .map(|r| Backend {
                    // 10.128.0.1 upwards: every real distinct
                    addr: IpAddr::V4(Ipv4Addr::from(0x0a80_0001 + v * CP_REALS_PER_VIP + r)),
                    weight: 100,
                })
                .collect(),
        })
        .collect();
    state
}

fn median_ms(mut d: Vec<Duration>) -> f64 {
    d.sort_unstable();
    d[d.len() / 2].as_secs_f64() * 1e3
}

/// Median time to build one 65537-slot ring for 64 reals of mixed weights.
fn ring_build_ms() -> (f64, f64) {
    let eps: Vec<Endpoint> = (0..64u32)
        .map(|i| Endpoint {
            id: i + 1,
            hash: real_hash(IpAddr::V6(Ipv6Addr::new(
                0xfc00,
                0,
                0,
                0,
                0,
                0,
                0,
                i as u16 + 1,
            ))),
            weight: 1 + i % 4,
        })
        .collect();
    let (mut v1, mut v2) = (Vec::new(), Vec::new());
    for _ in 0..CONTROL_TRIALS {
        let t = Instant::now();
        std::hint::black_box(ring_v1(&eps, 65537));
        v1.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(ring_v2(&eps, 65537));
        v2.push(t.elapsed());
    }
    (median_ms(v1), median_ms(v2))
}

fn control_plane_section() -> Result<()> {
    let options = LoadOptions {
        ring_size: 65537,
        max_vips: CP_VIPS,
        max_reals: CP_VIPS * CP_REALS_PER_VIP,
        ..LoadOptions::default()
    };
    let full = large_state();
    let mut changed = full.clone();
    changed.vips[CP_VIPS as usize / 2].reals[7].weight = 50;

    let mut from_empty = Vec::new();
    let mut one_weight = Vec::new();
    let mut changed_slots = 0;
    for _ in 0..CONTROL_TRIALS {
        // A fresh load each time: the apply starts from empty maps.
        let dp = Dataplane::load(&options).context("loading the balancer")?;
        let mut store = dp.store()?;
        let t = Instant::now();
        apply(&mut store, &full).context("applying the large state")?;
        from_empty.push(t.elapsed());
        // The generation an apply writes holds the configuration of two
        // applies ago, and an unchanged file writes nothing: apply the large
        // state once more with one setting changed, so that both halves hold
        // its rings, as on a running balancer, before timing the change.
        let mut tweaked = full.clone();
        tweaked.globals.max_conn_rate += 1;
        apply(&mut store, &tweaked).context("applying the large state again")?;
        let t = Instant::now();
        let report = apply(&mut store, &changed).context("applying the one-weight change")?;
        one_weight.push(t.elapsed());
        ensure!(
            report.ring_slots > 0 && report.map_writes < 64,
            "the one-weight change wrote {report:?}"
        );
        changed_slots = report.ring_slots;
    }

    let (ring_v1_ms, ring_v2_ms) = ring_build_ms();
    println!(
        "control plane (apply, {CP_VIPS} VIPs x {CP_REALS_PER_VIP} reals, ring 65537, \
         MaglevV2; median of {CONTROL_TRIALS})"
    );
    println!("{:<28}{:>10}", "operation", "ms");
    println!("{:<28}{:>10.1}", "one ring, 64 reals, V1", ring_v1_ms);
    println!("{:<28}{:>10.1}", "one ring, 64 reals, V2", ring_v2_ms);
    println!("{:<28}{:>10.1}", "apply from empty", median_ms(from_empty));
    println!(
        "{:<28}{:>10.1}   ({changed_slots} ring slots rewritten)",
        "one-weight change",
        median_ms(one_weight)
    );
    Ok(())
}
