//! `katran drain`: take this balancer out of the fleet without breaking a
//! connection. Every announcement is withdrawn, so the routers send new
//! packets to the other balancers (which pick the same real by the same
//! ring), while this one keeps forwarding what still arrives until the
//! routers have moved every flow; then it reports the traffic drained.
//!
//! The drained state is a marker file ([`crate::kernel::announce::drain_marker`]):
//! a running daemon (told with SIGHUP) and every later apply see it and
//! announce nothing until `katran drain --undo`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::Config;
use crate::kernel::announce;
use crate::kernel::live::{self, Pins};
use crate::kernel::netlink;

/// Packets to VIPs counted so far.
fn vip_packets(pins: &Pins) -> Result<u64> {
    let store = live::open(pins)?.context("no dataplane is pinned")?;
    let s = crate::views::stats::snapshot(&store)?;
    Ok(s.vips.values().map(|t| t.packets).sum())
}

/// Tells the daemon to apply again (it reads the marker), or applies the
/// routes itself when none runs. Waits until the routes are as wanted.
fn settle(cfg: &Config, pins: &Pins, what: &str) -> Result<usize> {
    let table = cfg.announce.map(|a| a.table);
    let live_state = match live::open(pins)? {
        Some(store) => crate::apply::read_live(&store)?,
        None => None,
    };
    let want = match &live_state {
        Some(state) => announce::wanted(
            table,
            announce::draining(&pins.dir),
            state,
            &Default::default(),
        ),
        None => Default::default(),
    };
    let daemon = crate::files::daemon_lock::holder_pid(&pins.dir)?;
    match daemon {
        Some(pid) => {
            // SAFETY: a signal to the daemon named by its lock.
            if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("signalling the daemon (pid {pid})"));
            }
            eprintln!("asked the daemon (pid {pid}) to {what}");
        }
        None => {
            let (add, remove) = announce::diff(&netlink::katran_routes()?, &want);
            for (t, a) in remove {
                netlink::remove_route(t, a)?;
            }
            for (t, a) in add {
                netlink::add_route(t, a)?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live: std::collections::BTreeSet<_> = netlink::katran_routes()?.into_iter().collect();
        // the daemon also withholds VIPs whose every real fails its check,
        // which the maps do not say
        let done = live == want || (daemon.is_some() && !live.is_empty() && live.is_subset(&want));
        if done {
            return Ok(live.len());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the announcements did not settle within 30 s: {} live, {} wanted",
                live.len(),
                want.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Withdraws every announcement and waits, printing packets per second,
/// until no packet reached a VIP for three seconds in a row (exit 0) or
/// `timeout` passed (exit 1).
pub fn drain(cfg: &Config, timeout: Duration) -> Result<ExitCode> {
    let pins = Pins::new(&cfg.settings.pin_dir);
    let marker = announce::drain_marker(&pins.dir);
    crate::files::daemon_lock::ensure_run_dir()?;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&marker)
        .and_then(|mut f| writeln!(f, "drained by katran drain"))
        .with_context(|| format!("writing {}", marker.display()))?;
    let left = settle(cfg, &pins, "withdraw its announcements")?;
    println!("withdrew every announcement ({left} left); waiting for traffic to drain");
    let start = Instant::now();
    let mut last = vip_packets(&pins)?;
    let mut quiet = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = vip_packets(&pins)?;
        let pps = now.saturating_sub(last);
        last = now;
        println!(
            "  {:>4} s: {pps} packets/s to VIPs",
            start.elapsed().as_secs()
        );
        quiet = if pps == 0 { quiet + 1 } else { 0 };
        if quiet >= 3 {
            println!("drained: no packet reached a VIP for 3 s; safe to stop or take down");
            return Ok(ExitCode::SUCCESS);
        }
        if start.elapsed() >= timeout {
            println!(
                "still {pps} packets/s after {} s; the node stays drained (katran drain --undo \
                 announces again)",
                timeout.as_secs()
            );
            return Ok(ExitCode::FAILURE);
        }
    }
}

/// Ends a drain: removes the marker and announces again.
pub fn undo(cfg: &Config) -> Result<ExitCode> {
    let pins = Pins::new(&cfg.settings.pin_dir);
    let marker = announce::drain_marker(&pins.dir);
    match fs::remove_file(&marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", marker.display())),
    }
    let n = settle(cfg, &pins, "announce again")?;
    println!("announcing again: {n} route(s)");
    Ok(ExitCode::SUCCESS)
}
