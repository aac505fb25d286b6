//! The daemon (`katran run`) as production runs it: the real binary in the
//! balancer's namespace, attaching XDP itself, forwarding real traffic on
//! the namespace testbed (see `testbed/daemon.rs`). Scenarios: reloads on
//! in-place edits, renames and SIGHUP; a broken file keeps the last good
//! configuration forwarding and is reported; `kill -9` and a restart drop
//! nothing (an established connection survives); 100 reloads in a row lose
//! no packet of an unchanged VIP; a concurrent `katran apply` is serialized
//! and noticed.
//!
//! Every wait is for the event itself (the maps, the status file, the log,
//! the lock's waiters) with a generous deadline; how long things took is
//! printed, never asserted, so a loaded machine is slower, not red.
//!
//! Needs root, `python3`, `ip`, `ethtool` and `nsenter`; prints
//! `skipped: ...` otherwise. The scenarios run one at a time (they measure
//! latencies and packet loss on a small machine).

use crate::common;
use crate::testbed;

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use katran::model::State;
use testbed::daemon::{serve_echo, vip_table, Daemon, EchoConn, UdpStream};
use testbed::http::{get_many, serve_names};
use testbed::{ip, Testbed, VIP4};

/// Generous bound for every wait: the event, not the time, is checked.
const WAIT: Duration = Duration::from_secs(30);

/// One scenario at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Root and the tools the scenarios run; prints why not otherwise.
fn can_run(name: &str) -> bool {
    let name = format!("daemon {name}");
    if !common::privileged(&name) {
        return false;
    }
    common::tools(&name, &["python3", "ip", "ethtool", "nsenter"])
}

/// A testbed whose balancer the daemon attaches, and that daemon (declared
/// in this order by callers so the daemon and its pins go first).
fn testbed(reals: usize) -> Testbed {
    Testbed::builder()
        .reals(reals)
        .attach_balancer(false)
        .build()
        .expect("testbed")
}

fn real_addrs(tb: &Testbed) -> Vec<IpAddr> {
    tb.reals.iter().map(|r| IpAddr::V4(r.v4)).collect()
}

/// Reals with these weights (weight 0 leaves the real out).
fn weighted(reals: &[IpAddr], weights: &[u32]) -> Vec<(IpAddr, u32)> {
    reals
        .iter()
        .zip(weights)
        .filter(|(_, w)| **w > 0)
        .map(|(a, w)| (*a, *w))
        .collect()
}

/// The state a file describes (what the daemon applies).
fn state_of(text: &str) -> State {
    match katran::config::parse(text, "k.toml") {
        Ok(l) => l.config.state,
        Err(e) => panic!("the test's own file is wrong:\n{e}\n{text}"),
    }
}

/// Equal up to the order of VIPs.
fn same(a: &State, b: &State) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    a.vips.sort_by_key(|v| v.key);
    b.vips.sort_by_key(|v| v.key);
    a == b
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `n` HTTP requests to VIP4:80 that must all succeed; answers per real.
fn http_ok(tb: &Testbed, first_sport: u16, n: usize) -> std::collections::BTreeMap<String, usize> {
    let t = get_many(tb, 0, ip(VIP4), 80, first_sport, n).expect("http client");
    assert!(t.errors.is_empty(), "failed requests: {:?}", t.errors);
    t.by_real
}

/// One SIGHUP reload, waited for: every reload asked for before it is done.
fn settle(d: &Daemon) -> katran::files::status_file::DaemonStatus {
    let stamp = d.status_stamp();
    d.hangup().expect("SIGHUP");
    d.wait_status(stamp, WAIT, |s| {
        s.last_applied
            .as_ref()
            .is_some_and(|e| e.message == "no changes")
    })
    .expect("the settling reload")
    .1
}

/// 1. In-place edit, write-and-rename, edit then SIGHUP at once, and an
///    edit behind a symlink into another directory: each goes live and is
///    reported.
#[test]
fn daemon_reloads_on_edit_rename_and_sighup() {
    let _serial = serial();
    if !can_run("reloads") {
        return;
    }
    let t0 = Instant::now();
    let mut tb = testbed(3);
    let d = &mut Daemon::new(&tb).expect("daemon");
    let r = real_addrs(&tb);
    let http = |w: &[u32]| vip_table("10.200.0.10:80", "tcp", &weighted(&r, w));
    let file0 = d.file(&[http(&[1, 1, 1])]);
    d.write_in_place(&file0).expect("write");
    d.start().expect("start");
    assert_eq!(d.attached(), ["eth0"], "the daemon attached the LB's eth0");
    assert!(same(&d.live().unwrap().unwrap(), &state_of(&file0)));
    serve_names(&mut tb, 80).expect("servers");
    let per_real = http_ok(&tb, 20000, 60);
    assert_eq!(per_real.len(), 3, "every real answers: {per_real:?}");

    // Each step: write somehow, then the maps must hold the new file and
    // the status file must report a new last_applied.
    let step = |name: &str, file: String, how: &dyn Fn(&Daemon, &str)| -> Duration {
        let before = d.status().expect("status").last_applied;
        let stamp = d.status_stamp();
        let want = state_of(&file);
        let t = Instant::now();
        how(d, &file);
        let live = d.wait_live(WAIT, |s| same(s, &want)).expect(name);
        let (_, status) = d
            .wait_status(stamp, WAIT, |s| {
                s.last_applied.is_some() && s.last_applied != before
            })
            .expect(name);
        println!(
            "  {name}: live in {:?}, status after {:?}: {:?}",
            live,
            t.elapsed(),
            status.last_applied.as_ref().map(|e| &e.message)
        );
        assert!(status.last_error.is_none(), "{name}: {status:?}");
        live
    };

    let mut latencies = Vec::new();
    latencies.push(step(
        "edit in place (weights 1,1,3)",
        d.file(&[http(&[1, 1, 3])]),
        &|d, f| d.write_in_place(f).expect("write"),
    ));
    latencies.push(step(
        "write k.toml.tmp + rename (second VIP)",
        d.file(&[
            http(&[1, 1, 3]),
            vip_table("10.200.0.10:8080", "tcp", &weighted(&r, &[1])),
        ]),
        &|d, f| d.write_by_rename(f).expect("write"),
    ));
    latencies.push(step(
        "edit + SIGHUP at once",
        d.file(&[http(&[2, 1, 1])]),
        &|d, f| {
            d.write_in_place(f).expect("write");
            d.hangup().expect("SIGHUP");
        },
    ));
    // The edit and the signal may make two reloads; the second finds no
    // changes. One more reload, by SIGHUP, comes after both: then nothing
    // else may have happened.
    let settled = settle(d);
    assert!(settled.last_error.is_none() && settled.failures == 0);
    assert!(same(
        &d.live().unwrap().unwrap(),
        &state_of(&d.file(&[http(&[2, 1, 1])]))
    ));

    // An edit behind a symlink into another directory: that directory is
    // watched too, so the edit is seen without a signal.
    let etc = d.dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let target = etc.join("k.toml");
    std::fs::write(&target, d.file(&[http(&[2, 1, 1])])).unwrap();
    let link = d.dir.join("k.toml.link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let stamp = d.status_stamp();
    std::fs::rename(&link, &d.config).unwrap();
    d.wait_status(stamp, WAIT, |s| {
        s.last_applied
            .as_ref()
            .is_some_and(|e| e.message == "no changes")
    })
    .expect("reload after the symlink replaced the file");
    settle(d);
    let edited = d.file(&[http(&[1, 2, 1])]);
    let mark = d.log().len();
    latencies.push(step("edit behind a symlink", edited, &|_, f| {
        std::fs::write(&target, f).unwrap()
    }));
    let since = d.log()[mark..].to_string();
    assert!(
        since.contains("reload (file changed)"),
        "log since the edit:\n{since}"
    );

    let per_real = http_ok(&tb, 21000, 60);
    let log = d.log();
    assert!(log.contains("reload (SIGHUP)"), "log:\n{log}");
    assert!(log.contains("reload (file changed)"), "log:\n{log}");
    println!(
        "daemon reloads: live after {latencies:?}; answers {per_real:?}; {:?} in all",
        t0.elapsed()
    );
}

/// 2. A broken file: the last good configuration keeps forwarding, `katran
///    status` shows the error (file:line:col) and the failure count; a fixed
///    file is applied and clears it.
#[test]
fn daemon_keeps_last_good_config_on_broken_file() {
    let _serial = serial();
    if !can_run("broken file") {
        return;
    }
    let t0 = Instant::now();
    let mut tb = testbed(3);
    let d = &mut Daemon::new(&tb).expect("daemon");
    let r = real_addrs(&tb);
    let http = |w: &[u32]| vip_table("10.200.0.10:80", "tcp", &weighted(&r, w));
    let good = d.file(&[http(&[1, 1, 0])]);
    d.write_in_place(&good).expect("write");
    d.start().expect("start");
    serve_names(&mut tb, 80).expect("servers");
    let per_real = http_ok(&tb, 20000, 60);
    assert!(!per_real.contains_key("real2"), "{per_real:?}");

    // A bad address on a known line: adding real2 fails.
    let bad_text = d
        .file(&[http(&[1, 1, 1])])
        .replace(&format!("\"{}\"", r[2]), "\"10.201.0.313\"");
    let bad_line = 1 + bad_text
        .lines()
        .position(|l| l.contains("10.201.0.313"))
        .expect("the bad line");
    let stamp = d.status_stamp();
    d.write_in_place(&bad_text).expect("write");
    let (took, st) = d
        .wait_status(stamp, WAIT, |s| s.failures == 1)
        .expect("the failure reported");
    let err = st.last_error.clone().expect("last_error").message;
    println!("  broken file reported after {took:?}: {err}");
    assert_eq!(
        st.last_error_kind,
        Some(katran::files::status_file::FailureKind::File)
    );
    let place = format!("{}:{bad_line}:", d.config.display());
    assert!(err.contains(&place), "{err:?} does not name {place}");
    let col: String = err[err.find(&place).unwrap() + place.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(
        col.parse::<usize>().is_ok_and(|c| c > 0),
        "no column in {err:?}"
    );
    // The same place `katran check` gives.
    let check = d
        .katran(&["check", "-c", &d.config.to_string_lossy()])
        .expect("check");
    assert!(!check.status.success());
    assert!(
        text(&check).contains(&format!(" --> {place}{col}\n")),
        "{}",
        text(&check)
    );

    // The old configuration keeps forwarding (no real2).
    assert!(same(&d.live().unwrap().unwrap(), &state_of(&good)));
    let per_real = http_ok(&tb, 21000, 100);
    assert!(!per_real.contains_key("real2"), "{per_real:?}");
    assert!(d.running(), "the daemon survived the broken file");

    // A second, syntactically broken file: two failures in a row.
    let syntax = bad_text.replace("proto = \"tcp\"", "proto = \"tcp");
    let stamp = d.status_stamp();
    d.write_by_rename(&syntax).expect("write");
    let (_, st) = d
        .wait_status(stamp, WAIT, |s| s.failures == 2)
        .expect("the second failure");
    let err2 = st.last_error.expect("last_error").message;
    println!("  second broken file: {err2}");
    assert!(err2.contains(&format!("{}:", d.config.display())), "{err2}");

    let out = d.katran_status(false).expect("katran status");
    let shown = text(&out);
    println!("  katran status:\n{shown}");
    assert_eq!(out.status.code(), Some(4), "{shown}");
    assert!(shown.contains("LAST RELOAD FAILED"), "{shown}");
    assert!(
        shown.contains("(2 failure(s) in a row, the file is invalid)"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{}:", d.config.display())),
        "{shown}"
    );
    let out = d.katran_status(true).expect("katran status --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(v["daemon"]["failures"], 2, "{v:#}");
    assert_eq!(v["daemon"]["last_error_kind"], "file", "{v:#}");
    assert!(v["daemon"]["last_error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains(&format!("{}:", d.config.display()))));
    assert_eq!(v["attached"][0]["interface"], "eth0", "{v:#}");
    // the status runs outside the LB namespace: the daemon's record says native
    assert_eq!(v["attached"][0]["mode"], "native", "{v:#}");
    assert!(v["program_id"].as_u64().is_some_and(|id| id > 0), "{v:#}");
    let per_real = http_ok(&tb, 22000, 60);
    assert!(!per_real.contains_key("real2"), "{per_real:?}");

    // A file the host refuses (an interface it lacks): told at the key too.
    let foreign = d
        .file(&[http(&[1, 1, 1])])
        .replace("\"eth0\"", "\"nosuch0\"");
    let iface_line = 1 + foreign
        .lines()
        .position(|l| l.contains("nosuch0"))
        .expect("the interfaces line");
    let stamp = d.status_stamp();
    d.write_in_place(&foreign).expect("write");
    let (_, st) = d
        .wait_status(stamp, WAIT, |s| s.failures == 3)
        .expect("the third failure");
    assert_eq!(
        st.last_error_kind,
        Some(katran::files::status_file::FailureKind::Host)
    );
    let err3 = st.last_error.expect("last_error").message;
    println!("  refused by the host: {err3}");
    let place = format!("{}:{iface_line}:", d.config.display());
    assert!(
        err3.starts_with(&place) && err3.contains("nosuch0"),
        "{err3:?} is not told at {place}"
    );

    // Fixed: applied, the error cleared.
    let fixed = d.file(&[http(&[1, 1, 1])]);
    let want = state_of(&fixed);
    let stamp = d.status_stamp();
    d.write_in_place(&fixed).expect("write");
    let live = d
        .wait_live(WAIT, |s| same(s, &want))
        .expect("fixed file live");
    let (_, st) = d
        .wait_status(stamp, WAIT, |s| s.failures == 0)
        .expect("error cleared");
    assert!(st.last_error.is_none(), "{st:?}");
    let out = d.katran_status(true).expect("katran status --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert!(v["daemon"]["last_error"].is_null(), "{v:#}");
    assert_eq!(v["daemon"]["failures"], 0);
    let shown = text(&d.katran_status(false).expect("katran status"));
    assert!(!shown.contains("FAILED"), "{shown}");
    let per_real = http_ok(&tb, 23000, 90);
    assert_eq!(per_real.len(), 3, "{per_real:?}");
    println!(
        "daemon broken file: fixed file live in {live:?}; answers {per_real:?}; {:?} in all",
        t0.elapsed()
    );
}

/// 3. `kill -9` during steady traffic: forwarding goes on with no daemon;
///    the restarted daemon adopts the dataplane with an empty plan; a TCP
///    connection established before survives it all.
#[test]
fn daemon_kill9_and_restart_drop_nothing() {
    let _serial = serial();
    if !can_run("kill -9") {
        return;
    }
    let t0 = Instant::now();
    let mut tb = testbed(3);
    let d = &mut Daemon::new(&tb).expect("daemon");
    let r = real_addrs(&tb);
    let all = weighted(&r, &[1, 1, 1]);
    let file = d.file(&[
        vip_table("10.200.0.10:80", "tcp", &all),
        vip_table("10.200.0.10:7000", "tcp", &all),
        vip_table("10.200.0.10:9000", "udp", &all),
    ]);
    d.write_in_place(&file).expect("write");
    d.start().expect("start");
    serve_names(&mut tb, 80).expect("http servers");
    serve_echo(&mut tb, 7000).expect("echo servers");
    let mut conn = EchoConn::connect(&tb, ip(VIP4), 7000).expect("connect");
    let real = conn.ping().expect("echo");
    let mut stream = UdpStream::start(&tb, ip(VIP4), 9000, 2000, 16, &d.dir).expect("udp stream");

    const CYCLES: usize = 3;
    let mut sport = 20000;
    for cycle in 0..CYCLES {
        stream.wait_flowing(300).expect("the stream flows");
        d.kill9().expect("kill -9");
        assert_eq!(d.attached(), ["eth0"], "the link stays pinned");
        // No daemon: new connections, the old one, the stream.
        let per_real = http_ok(&tb, sport, 100);
        sport += 100;
        assert_eq!(per_real.len(), 3, "{per_real:?}");
        assert_eq!(conn.ping().expect("echo without a daemon"), real);
        stream
            .wait_flowing(300)
            .expect("the stream flows with no daemon");
        let stale = text(&d.katran_status(false).expect("status"));

        d.start().expect("restart");
        let log = d.log();
        assert!(log.contains("adopted the dataplane"), "log:\n{log}");
        assert!(log.contains("start: no changes"), "log:\n{log}");
        let st = d.status().expect("status");
        let recorded: Vec<&str> = st.attached.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(
            recorded,
            ["eth0"],
            "an adopted dataplane's interface is in the status file"
        );
        assert_eq!(
            st.last_applied.map(|e| e.message).as_deref(),
            Some("no changes")
        );
        assert_eq!(d.attached(), ["eth0"]);
        assert_eq!(conn.ping().expect("echo after the restart"), real);
        if cycle == 0 {
            let daemon_line = stale.lines().find(|l| l.starts_with("daemon:"));
            println!("  with no daemon running, katran status said: {daemon_line:?}");
        }
    }
    let per_real = http_ok(&tb, sport, 100);
    assert_eq!(per_real.len(), 3, "{per_real:?}");
    assert_eq!(conn.ping().expect("echo at the end"), real);
    let rep = stream.finish().expect("stream report");
    println!(
        "daemon kill -9 x{CYCLES}: udp sent {} received {} (per real {:?}) duplicates {} \
         send errors {} over {:.1}s; lost {:?}; connection (sport {}) stayed on {real}; {:?} in all",
        rep.sent,
        rep.received,
        rep.per_real,
        rep.duplicates,
        rep.send_errors,
        rep.seconds,
        rep.lost,
        conn.sport,
        t0.elapsed()
    );
    assert!(rep.sent > 1000, "{rep:?}");
    assert_eq!(rep.received, rep.sent, "lost {:?}", rep.lost);
    assert_eq!(rep.duplicates, 0);
}

/// 4. 100 reloads in a row, each waited for, while a UDP stream runs to a
///    VIP the reloads never change: no datagram of it is lost.
#[test]
fn daemon_100_reloads_lose_nothing() {
    let _serial = serial();
    if !can_run("100 reloads") {
        return;
    }
    let t0 = Instant::now();
    let tb = testbed(3);
    let d = &mut Daemon::new(&tb).expect("daemon");
    let r = real_addrs(&tb);
    let steady = vip_table("10.200.0.10:9000", "udp", &weighted(&r, &[1, 1, 1]));
    // The second VIP cycles through: absent, on real0+real1, on real1+real2.
    let files = [
        d.file(std::slice::from_ref(&steady)),
        d.file(&[
            steady.clone(),
            vip_table("10.200.0.10:80", "tcp", &weighted(&r, &[1, 1, 0])),
        ]),
        d.file(&[
            steady.clone(),
            vip_table("10.200.0.10:80", "tcp", &weighted(&r, &[0, 1, 1])),
        ]),
    ];
    let states: Vec<State> = files.iter().map(|f| state_of(f)).collect();
    d.write_in_place(&files[0]).expect("write");
    d.start().expect("start");
    let mut stream = UdpStream::start(&tb, ip(VIP4), 9000, 3000, 16, &d.dir).expect("udp stream");
    stream.wait_flowing(1000).expect("the stream flows");

    const RELOADS: usize = 100;
    let mut latencies = Vec::with_capacity(RELOADS);
    let reloads_started = Instant::now();
    for i in 1..=RELOADS {
        let (prev, next) = ((i - 1) % 3, i % 3);
        let limits = katran::store::Limits::for_sizes(4099, 256, 4096);
        let summary = katran::cli::filediff::between(&states[prev], &states[next], limits)
            .expect("a plan")
            .summary();
        let stamp = d.status_stamp();
        let t = Instant::now();
        // Alternate the ways a file changes: in place, by rename, and an
        // edit followed at once by SIGHUP.
        match i % 3 {
            0 => d.write_in_place(&files[next]).expect("write"),
            1 => d.write_by_rename(&files[next]).expect("write"),
            _ => {
                d.write_in_place(&files[next]).expect("write");
                d.hangup().expect("SIGHUP");
            }
        }
        let (took, _) = d
            .wait_status(stamp, WAIT, |s| {
                s.last_error.is_none()
                    && s.last_applied
                        .as_ref()
                        .is_some_and(|e| e.message == summary)
            })
            .unwrap_or_else(|e| panic!("reload {i}: {e:#}"));
        let live = d.live().expect("live").expect("applied");
        assert!(same(&live, &states[next]), "reload {i}: live {live:?}");
        latencies.push(took.max(t.elapsed()));
    }
    let reloading = reloads_started.elapsed();
    stream
        .wait_flowing(1000)
        .expect("the stream flows after the reloads");
    let rep = stream.finish().expect("stream report");
    latencies.sort();
    println!(
        "daemon {RELOADS} reloads in {reloading:?} (each until the status file reported it: \
         min {:?}, median {:?}, max {:?}); udp to the unchanged VIP: sent {} received {} \
         (per real {:?}) duplicates {} send errors {} over {:.1}s; lost {:?}; {:?} in all",
        latencies[0],
        latencies[RELOADS / 2],
        latencies[RELOADS - 1],
        rep.sent,
        rep.received,
        rep.per_real,
        rep.duplicates,
        rep.send_errors,
        rep.seconds,
        rep.lost,
        t0.elapsed()
    );
    assert!(rep.sent > 10_000, "{rep:?}");
    assert_eq!(rep.received, rep.sent, "lost {:?}", rep.lost);
    assert_eq!(rep.duplicates, 0);
    assert!(d.running());
    assert_eq!(d.status().expect("status").failures, 0);
}

/// 5. `katran apply` from another process while the daemon runs: the apply
///    lock serializes them (neither writes while another holds it), the
///    result is one whole configuration, and the daemon notices the maps
///    changed under it.
#[test]
fn daemon_notices_concurrent_apply() {
    let _serial = serial();
    if !can_run("concurrent apply") {
        return;
    }
    let t0 = Instant::now();
    let mut tb = testbed(3);
    let d = &mut Daemon::new(&tb).expect("daemon");
    let r = real_addrs(&tb);
    let http = |w: &[u32]| vip_table("10.200.0.10:80", "tcp", &weighted(&r, w));
    let file_a = d.file(&[http(&[1, 1, 1])]);
    let file_b = d.file(&[http(&[1, 1, 2])]);
    let other = d.file(&[
        http(&[3, 0, 1]),
        vip_table("10.200.0.10:8080", "tcp", &weighted(&r, &[0, 1])),
    ]);
    let (a, b, c) = (state_of(&file_a), state_of(&file_b), state_of(&other));
    let other_path = d.dir.join("other.toml");
    std::fs::write(&other_path, &other).unwrap();
    let other_arg = other_path.to_string_lossy().into_owned();
    d.write_in_place(&file_a).expect("write");
    d.start().expect("start");
    serve_names(&mut tb, 80).expect("servers");
    http_ok(&tb, 20000, 30);

    // Hold the lock: neither the daemon's reload nor the apply may write.
    let lock = katran::kernel::live::lock(&d.pin_dir).expect("lock");
    let stamp = d.status_stamp();
    d.write_in_place(&file_b).expect("write");
    let apply_log = d.dir.join("apply.log");
    let apply = d
        .katran_in_lb_logged(&["apply", "-c", &other_arg], &apply_log)
        .expect("katran apply");
    // Both are blocked on the lock: each said it waits.
    let waiting = "waiting for another katran holding the lock";
    let t = Instant::now();
    while !(d.log().contains(waiting)
        && std::fs::read_to_string(&apply_log).is_ok_and(|l| l.contains(waiting)))
    {
        assert!(
            t.elapsed() < WAIT,
            "the daemon and the apply did not both wait for the lock; daemon log:\n{}\napply:\n{}",
            d.log(),
            std::fs::read_to_string(&apply_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        same(&d.live().unwrap().unwrap(), &a),
        "someone wrote the maps while the lock was held"
    );
    assert_eq!(
        d.status_stamp(),
        stamp,
        "the daemon's reload finished under the lock"
    );
    http_ok(&tb, 21000, 30);
    drop(lock);
    let done = apply.wait_with_output().expect("apply");
    let applied_at = Instant::now();
    let apply_text = std::fs::read_to_string(&apply_log).unwrap_or_default();
    assert!(done.status.success(), "{apply_text}");
    d.wait_status(stamp, WAIT, |s| {
        s.last_applied.is_some() && s.last_error.is_none()
    })
    .expect("the daemon's reload");
    let live = d.live().unwrap().unwrap();
    let apply_won = same(&live, &c);
    assert!(
        apply_won || same(&live, &b),
        "the maps hold neither file whole: {live:?}"
    );
    // Make sure the apply's state is the one left.
    let applied_at = if apply_won {
        applied_at
    } else {
        let out = d
            .katran_in_lb(&["apply", "-c", &other_arg])
            .expect("katran apply")
            .wait_with_output()
            .expect("apply");
        assert!(out.status.success(), "{}", text(&out));
        Instant::now()
    };
    assert!(same(&d.live().unwrap().unwrap(), &c));
    let (noticed, st) = d
        .wait_status(None, WAIT, |s| s.external_change.is_some())
        .expect("external change noticed");
    let noticed = noticed.max(applied_at.elapsed());
    println!(
        "  apply {} the race; noticed after {noticed:?}: {:?}",
        if apply_won { "won" } else { "lost" },
        st.external_change
    );
    assert!(
        d.log().contains("changed by another process"),
        "{}",
        d.log()
    );
    let per_real = http_ok(&tb, 22000, 60);
    assert!(
        !per_real.contains_key("real1"),
        "the apply's file: {per_real:?}"
    );

    // The next reload re-applies the daemon's file.
    let stamp = d.status_stamp();
    d.write_in_place(&file_a).expect("write");
    d.wait_live(WAIT, |s| same(s, &a)).expect("file re-applied");
    d.wait_status(stamp, WAIT, |s| s.last_applied.is_some())
        .expect("status");
    let per_real = http_ok(&tb, 23000, 60);
    assert_eq!(per_real.len(), 3, "{per_real:?}");
    println!(
        "daemon concurrent apply: serialized, noticed after {noticed:?}; {:?} in all",
        t0.elapsed()
    );
}

/// 6. Every external change is reported, and a report does not outlive the
///    reload that re-applied the file.
#[test]
fn daemon_reports_every_external_change() {
    let _serial = serial();
    if !can_run("every external change") {
        return;
    }
    let tb = testbed(2);
    let d = &mut Daemon::new(&tb).expect("daemon");
    let r = real_addrs(&tb);
    let file = d.file(&[vip_table("10.200.0.10:80", "tcp", &weighted(&r, &[1, 1]))]);
    let other = d.file(&[vip_table("10.200.0.10:80", "tcp", &weighted(&r, &[1, 2]))]);
    let other_path = d.dir.join("other.toml");
    std::fs::write(&other_path, &other).unwrap();
    let other_arg = other_path.to_string_lossy().into_owned();
    d.write_in_place(&file).expect("write");
    d.start().expect("start");
    let apply_other = || {
        let out = d
            .katran_in_lb(&["apply", "-c", &other_arg])
            .expect("katran apply")
            .wait_with_output()
            .expect("apply");
        assert!(out.status.success(), "{}", text(&out));
    };
    apply_other();
    let (_, st) = d
        .wait_status(None, WAIT, |s| s.external_change.is_some())
        .expect("first external change noticed");
    let first = st.external_change.expect("set");

    // The daemon re-applies its file: the maps match it again.
    let stamp = d.status_stamp();
    d.write_in_place(&file).expect("write");
    d.wait_live(WAIT, |s| same(s, &state_of(&file)))
        .expect("re-applied");
    let (_, st) = d
        .wait_status(stamp, WAIT, |s| s.last_applied.is_some())
        .expect("reload reported");
    assert_eq!(
        st.external_change, None,
        "the maps hold the file again, yet the status still reports an external change"
    );

    // A second external change: reported again (the status had cleared
    // it), and warned about a second time.
    apply_other();
    let second = d.wait_status(None, WAIT, |s| s.external_change.is_some());
    let warned = |n: usize| d.log().matches("changed by another process").count() >= n;
    let t = Instant::now();
    while !warned(2) && t.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        second.is_ok() && warned(2),
        "the second external change went unreported (status {:?}, first {first:?}); log:\n{}",
        d.status().map(|s| s.external_change),
        d.log()
    );
    assert_eq!(
        d.log().matches("changed by another process").count(),
        2,
        "one warning per change:\n{}",
        d.log()
    );
}

/// 7. The file as Kubernetes and people replace it: a ConfigMap update (the
///    `..data` symlink swapped to a new directory), the config directory
///    itself replaced, then an edit in place in the new directory. Each is
///    seen without a signal.
#[test]
fn daemon_follows_configmap_swaps_and_directory_replacement() {
    let _serial = serial();
    if !can_run("configmap") {
        return;
    }
    let tb = testbed(2);
    let d = &mut Daemon::new(&tb).expect("daemon");
    let r = real_addrs(&tb);
    let head = d.dataplane_table();
    let file = |w: &[u32]| head.clone() + &vip_table("10.200.0.10:80", "tcp", &weighted(&r, w));
    // conf/k.toml -> ..data/k.toml, ..data -> ..v1 (what the kubelet makes)
    let conf = d.dir.join("conf");
    let version = |name: &str, text: &str| {
        std::fs::create_dir_all(conf.join(name)).unwrap();
        std::fs::write(conf.join(name).join("k.toml"), text).unwrap();
    };
    version("..v1", &file(&[1, 1]));
    std::os::unix::fs::symlink("..v1", conf.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/k.toml", conf.join("k.toml")).unwrap();
    d.config = conf.join("k.toml");
    d.start().expect("start");
    assert!(same(&d.live().unwrap().unwrap(), &state_of(&file(&[1, 1]))));

    let goes_live = |name: &str, want: &str, how: &dyn Fn()| {
        let mark = d.log().len();
        how();
        let want = state_of(want);
        let took = d.wait_live(WAIT, |s| same(s, &want)).expect(name);
        let since = d.log()[mark..].to_string();
        assert!(since.contains("reload (file changed)"), "{name}:\n{since}");
        println!("  {name}: live after {took:?}");
    };
    goes_live("ConfigMap swap", &file(&[1, 2]), &|| {
        version("..v2", &file(&[1, 2]));
        std::os::unix::fs::symlink("..v2", conf.join("..data_tmp")).unwrap();
        std::fs::rename(conf.join("..data_tmp"), conf.join("..data")).unwrap();
        std::fs::remove_dir_all(conf.join("..v1")).unwrap();
    });
    goes_live("config directory replaced", &file(&[2, 1]), &|| {
        std::fs::rename(&conf, d.dir.join("conf.old")).unwrap();
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("k.toml"), file(&[2, 1])).unwrap();
    });
    goes_live(
        "edit in place in the new directory",
        &file(&[3, 1]),
        &|| d.write_in_place(&file(&[3, 1])).unwrap(),
    );
    let st = d.status().expect("status");
    assert!(st.last_error.is_none() && st.failures == 0, "{st:?}");
}

/// 8. One daemon per pin directory; `katran down` under a daemon is refused
///    unless forced, and then the daemon reports its dataplane gone and the
///    next reload restores it; a reload that moves `pin_dir` is refused and
///    pins nothing at the new place.
#[test]
fn daemon_owns_its_pin_directory() {
    let _serial = serial();
    if !can_run("one per pin_dir") {
        return;
    }
    let mut tb = testbed(2);
    let d = &mut Daemon::new(&tb).expect("daemon");
    let r = real_addrs(&tb);
    let file = d.file(&[vip_table("10.200.0.10:80", "tcp", &weighted(&r, &[1, 1]))]);
    d.write_in_place(&file).expect("write");
    d.start().expect("start");
    let first = d.pid().expect("pid");
    serve_names(&mut tb, 80).expect("servers");
    http_ok(&tb, 20000, 20);

    // A second daemon on the same pin directory: refused, naming the first.
    let other_status = d.dir.join("other-status.json");
    let out = d
        .katran_in_lb(&[
            "run",
            "-c",
            &d.config.to_string_lossy(),
            "--status-file",
            &other_status.to_string_lossy(),
        ])
        .expect("second daemon")
        .wait_with_output()
        .expect("second daemon's exit");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("pid {first} ")) && text(&out).contains("already manages"),
        "{}",
        text(&out)
    );
    assert!(!other_status.exists(), "the second daemon wrote a status");
    assert_eq!(d.status().expect("status").pid, first);

    // `down` under the daemon: refused, then forced.
    let pin_dir = d.pin_dir.to_string_lossy().into_owned();
    let out = d.katran(&["down", "--pin-dir", &pin_dir]).expect("down");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("pid {first} ")),
        "{}",
        text(&out)
    );
    assert!(d.live().unwrap().is_some(), "a refused down took something");
    let stamp = d.status_stamp();
    let out = d
        .katran(&["down", "--force", "--pin-dir", &pin_dir])
        .expect("down --force");
    assert!(out.status.success(), "{}", text(&out));
    let (took, st) = d
        .wait_status(stamp, WAIT, |s| s.dataplane_missing.is_some())
        .expect("the daemon notices");
    println!(
        "  dataplane gone, reported after {took:?}: {:?}",
        st.dataplane_missing
    );
    assert!(
        d.log().contains("the dataplane is not in place"),
        "{}",
        d.log()
    );
    let shown = text(&d.katran_status(false).expect("status"));
    assert!(shown.contains("its dataplane is gone"), "{shown}");

    // The next reload restores it, and traffic flows again.
    let stamp = d.status_stamp();
    d.hangup().expect("SIGHUP");
    d.wait_status(stamp, WAIT, |s| {
        s.dataplane_missing.is_none() && s.last_applied.is_some()
    })
    .expect("restored");
    assert!(same(&d.live().unwrap().unwrap(), &state_of(&file)));
    assert_eq!(d.attached(), ["eth0"]);
    http_ok(&tb, 21000, 20);

    // A reload that moves pin_dir: refused, nothing pinned at the new place.
    let elsewhere = format!("{pin_dir}-moved");
    let moved = file.replace(&pin_dir, &elsewhere);
    let stamp = d.status_stamp();
    d.write_in_place(&moved).expect("write");
    let (_, st) = d
        .wait_status(stamp, WAIT, |s| s.failures > 0)
        .expect("refused");
    let err = st.last_error.expect("error").message;
    assert!(err.contains("pin_dir changed"), "{err}");
    assert!(
        !std::path::Path::new(&elsewhere).exists(),
        "a second dataplane at {elsewhere}"
    );
    http_ok(&tb, 22000, 20);
}

/// 9. `gateway_mac = "auto"` follows the router: its MAC changes and the
///    balancer's neighbour table learns the new one (here from a datagram
///    the balancer's own stack sends, as any traffic would); the daemon applies
///    it without a reload and says so, and requests keep being answered.
#[test]
fn daemon_follows_the_gateway_mac() {
    let _serial = serial();
    if !can_run("gateway following") {
        return;
    }
    let mut tb = testbed(2);
    let d = &mut Daemon::new(&tb).expect("daemon");
    let r = real_addrs(&tb);
    let file = d
        .file(&[vip_table("10.200.0.10:80", "tcp", &weighted(&r, &[1, 1]))])
        .replace(
            &format!("gateway_mac = \"{}\"", tb.gateway_mac),
            "gateway_mac = \"auto\"",
        );
    assert!(file.contains("gateway_mac = \"auto\""), "{file}");
    d.write_in_place(&file).expect("write");
    d.start().expect("start");
    let old = tb.gateway_mac;
    assert_eq!(d.live().unwrap().unwrap().globals.gateway_mac, old);
    serve_names(&mut tb, 80).expect("servers");
    http_ok(&tb, 20000, 20);

    let new: katran::model::MacAddr = "02:aa:bb:cc:dd:01".parse().expect("mac");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    run(&[
        "ip",
        "-n",
        &tb.router,
        "link",
        "set",
        "dev",
        "lb",
        "address",
        &new.to_string(),
    ]);
    // the balancer's kernel learns it as it would from any traffic: a
    // datagram from its own stack makes it ask
    run(&["ip", "-n", &tb.lb.ns, "neigh", "flush", "dev", "eth0"]);
    testbed::netns::within(&tb.lb.ns, || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
        sock.send_to(b"", "10.99.0.1:9")?;
        Ok(())
    })
    .expect("a datagram to the router");
    let took = d
        .wait_live(WAIT, |s| s.globals.gateway_mac == new)
        .expect("the new gateway MAC applied");
    println!("  gateway MAC {old} -> {new}: live {took:?} after the neighbour table had it");
    let log = d.log();
    assert!(
        log.contains(&format!("gateway MAC changed from {old} to {new}")),
        "{log}"
    );
    http_ok(&tb, 21000, 20);
}
