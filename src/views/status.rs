//! `katran status`: the configuration the dataplane forwards by, read back
//! from the maps, plus what the daemon reported (last reload, failures).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::apply::read_live;
use crate::files::status_file::DaemonStatus;
use crate::kernel::bpf::attach;
use crate::kernel::live::{self, Pins};
use crate::model::Encap;
use crate::store::MapStore;
use crate::views::json::status as doc;

/// How XDP is attached to `iface` as the kernel reports it, or what the
/// daemon recorded when the interface is in another namespace.
fn xdp_mode(iface: &str, daemon: Option<&DaemonStatus>) -> String {
    let here = attach::ifindex(iface)
        .and_then(attach::query)
        .ok()
        .and_then(|q| q.attached());
    match here {
        Some((_, how)) => how.to_string(),
        None => daemon
            .and_then(|d| d.attached.iter().find(|(i, _)| i == iface))
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| "unknown (interface not in this network namespace)".into()),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a moment (days to a civil date as in
/// Howard Hinnant's `civil_from_days`, which needs no time-zone data).
pub fn timestamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

fn ago(at: u64) -> String {
    let now = crate::files::status_file::Event::now("").at;
    format!("{}s ago", now.saturating_sub(at))
}

/// `katran status` (text) when the daemon reports trouble: its last reload
/// failed, its dataplane is not in place, or every real of a VIP fails.
pub const EXIT_DEGRADED: u8 = 4;

pub fn show(pin_dir: &Path, status_file: &Path, json_out: bool) -> Result<ExitCode> {
    let pins = Pins::new(pin_dir);
    let stamp = live::stamp(&pins).ok().flatten();
    let this_build = crate::kernel::bpf::STAMP;
    let other_build = pins.exists() && stamp.as_deref() != Some(this_build);
    let unreadable = |e: String| doc::Status {
        format_version: crate::views::json::FORMAT_VERSION,
        condition: doc::Condition::Unreadable,
        pin_dir: pin_dir.to_path_buf(),
        generation: None,
        program_id: None,
        build: stamp.clone(),
        this_build,
        error: Some(e),
        attached: Vec::new(),
        live: None,
        daemon: None,
        announced: Vec::new(),
        not_announced: Vec::new(),
        drained: false,
    };
    let store = match live::open(&pins) {
        Ok(s) => s,
        Err(e) if other_build && json_out => {
            crate::views::json::print(&unreadable(format!("{e:#}")))?;
            return Ok(ExitCode::FAILURE);
        }
        Err(e) if other_build => {
            println!(
                "dataplane pinned at {} by another build of katran ({}; this one is {this_build}), \
                 which this version cannot read: {e:#}\n`katran apply` replaces it without \
                 dropping connections",
                pin_dir.display(),
                stamp.as_deref().unwrap_or("unstamped")
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e),
    };
    let daemon = DaemonStatus::read(status_file).ok();
    let (gen, state) = match &store {
        Some(s) => (Some(s.active_gen()?), read_live(s)?),
        None => (None, None),
    };
    let prog = live::prog_id(&pins).ok().flatten();
    let modes: Vec<(String, String)> = pins
        .attached()
        .into_iter()
        .map(|i| {
            let m = xdp_mode(&i, daemon.as_ref());
            (i, m)
        })
        .collect();
    let routes = crate::kernel::netlink::katran_routes().unwrap_or_default();
    let drained = crate::kernel::announce::draining(pin_dir);
    // SAFETY: signal 0 only checks that the process exists.
    let alive = |pid: u32| unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    let troubled = daemon.as_ref().is_some_and(|d| {
        d.last_error.is_some() || d.dataplane_missing.is_some() || !d.all_reals_down.is_empty()
    });
    if json_out {
        let condition = match (&state, troubled) {
            (None, _) => doc::Condition::NoDataplane,
            (Some(_), true) => doc::Condition::Degraded,
            (Some(_), false) => doc::Condition::Ok,
        };
        let not_announced = state
            .as_ref()
            .map(|s| crate::kernel::announce::not_serving(s, &Default::default()))
            .unwrap_or_default();
        crate::views::json::print(&doc::Status {
            format_version: crate::views::json::FORMAT_VERSION,
            condition,
            pin_dir: pin_dir.to_path_buf(),
            generation: gen,
            program_id: prog,
            build: stamp,
            this_build,
            error: None,
            attached: modes
                .iter()
                .map(|(i, m)| doc::Attachment {
                    interface: i.clone(),
                    mode: m.clone(),
                })
                .collect(),
            live: state.as_ref().map(doc::Live::new),
            daemon: daemon.as_ref().map(|d| doc::Daemon::new(d, alive(d.pid))),
            announced: routes
                .iter()
                .map(|(t, a)| doc::Announced {
                    address: *a,
                    table: *t,
                })
                .collect(),
            not_announced: not_announced
                .into_iter()
                .map(|(address, why)| doc::NotAnnounced {
                    address,
                    why: why.to_string(),
                })
                .collect(),
            drained,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(state) = state else {
        println!("no dataplane pinned at {}", pin_dir.display());
        if let Some(d) = &daemon {
            println!(
                "daemon: pid {}, config {}: its dataplane is gone; SIGHUP it (systemctl reload katran) to restore it",
                d.pid, d.config
            );
        }
        return Ok(ExitCode::from(3));
    };
    let attached: Vec<String> = modes.iter().map(|(i, m)| format!("{i} ({m})")).collect();
    let build = match &stamp {
        Some(s) if s == this_build => s.clone(),
        other => format!(
            "{} (this katran is {this_build}: the next apply replaces it)",
            other.as_deref().unwrap_or("unstamped")
        ),
    };
    println!(
        "dataplane pinned at {}, program id {}, build {build}, generation {}, attached to [{}]",
        pin_dir.display(),
        prog.map_or("?".into(), |p| p.to_string()),
        gen.unwrap_or(0),
        attached.join(", ")
    );
    let encap = match state.globals.encap {
        Encap::Ipip => "ipip".to_string(),
        Encap::Gue { port, .. } => format!("gue (port {port})"),
    };
    println!(
        "gateway {}, encapsulation {encap}, ring {}",
        state.globals.gateway_mac,
        doc::ring_name(state.ring)
    );
    let health: std::collections::BTreeMap<
        (String, String),
        &katran_core::health::tracker::RealHealth,
    > = daemon
        .iter()
        .flat_map(|d| d.health.iter().map(|(v, r, h)| ((v.clone(), r.clone()), h)))
        .collect();
    for v in &state.vips {
        let flags = v.flags.names();
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", flags.join(", "))
        };
        println!("vip {}{flags}", v.key);
        for r in &v.reals {
            let note = if r.weight == 0 { "  (drained)" } else { "" };
            let h = match health.get(&(v.key.to_string(), r.addr.to_string())) {
                None => String::new(),
                Some(h) if h.healthy => format!("  healthy since {}", ago(h.since)),
                Some(h) => format!(
                    "  FAILING since {}: {}",
                    ago(h.since),
                    h.last_error.as_deref().unwrap_or("no answer")
                ),
            };
            println!(
                "    {:<40} weight {}{note}{h}",
                r.addr.to_string(),
                r.weight
            );
        }
    }
    if drained {
        println!("DRAINED (katran drain): nothing is announced until `katran drain --undo`");
    }
    for (table, addr) in &routes {
        println!("announced {addr} (table {table})");
    }
    for (addr, why) in crate::kernel::announce::not_serving(&state, &Default::default()) {
        println!("not announced {addr}: {why}");
    }
    match daemon {
        None => println!("daemon: not running (no {})", status_file.display()),
        Some(d) => {
            let state = if alive(d.pid) {
                ""
            } else {
                " (NOT RUNNING: the process is gone; the dataplane keeps forwarding)"
            };
            println!("daemon: pid {}{state}, config {}", d.pid, d.config);
            if let Some(a) = &d.last_applied {
                println!("  last applied {}: {}", ago(a.at), a.message);
            }
            if let Some(e) = &d.last_error {
                let kind = d
                    .last_error_kind
                    .map(|k| format!(", {}", k.describe()))
                    .unwrap_or_default();
                println!(
                    "  LAST RELOAD FAILED {} ({} failure(s) in a row{kind}): {}",
                    ago(e.at),
                    d.failures,
                    e.message
                );
            }
            if let Some(m) = &d.dataplane_missing {
                println!(
                    "  DATAPLANE NOT IN PLACE since {}: {}; SIGHUP the daemon (systemctl reload katran) to restore it",
                    ago(m.at),
                    m.message
                );
            }
            for vip in &d.all_reals_down {
                println!("  EVERY real of {vip} fails its health check: still forwarding to them");
            }
            if let Some(x) = &d.external_change {
                println!("  note {}: {}", ago(x.at), x.message);
            }
            if troubled {
                return Ok(ExitCode::from(EXIT_DEGRADED));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::timestamp;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_193_754);
        assert_eq!(timestamp(t), "2026-12-02 06:42:34 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29 00:00:00 UTC");
    }
}
