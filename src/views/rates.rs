//! `katran stats`: rates over an interval (once, or repeatedly with
//! `--watch`), as a table for people or JSON for tools.

use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::kernel::live::{self, Pins};
use crate::views::stats::{rates, snapshot, Rates, Snapshot};

fn human(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2}G", x / 1e9),
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn print_table(r: &Rates, total: &Snapshot) {
    let g = |n: &str| r.global[n];
    println!(
        "packets/s: {} forwarded or answered (XDP_TX), {} passed, {} dropped",
        human(g("xdp_tx")),
        human(g("xdp_pass")),
        human(g("xdp_drop"))
    );
    let hit = r
        .conn_hit_pct
        .map(|p| format!("{p:.1}%"))
        .unwrap_or_else(|| "-".into());
    println!(
        "connection table: {hit} of non-SYN lookups hit; misses/s: TCP SYN (new flows) {}, \
         TCP non-SYN {}, UDP {}; rate-limited {}/s; evicted {}/s; on CPUs left out of \
         forwarding_cpus (shared table) {}/s",
        human(g("conn_miss_tcp_syn")),
        human(g("conn_miss_tcp_nonsyn")),
        human(g("conn_miss_udp")),
        human(g("conn_rate_limited")),
        human(g("conn_evicted")),
        human(g("fallback_table"))
    );
    println!(
        "icmp/s: too-big v4 {}, v6 {}, echo replies {}; server ids/s: QUIC {} (unknown {}), TCP {}",
        human(g("icmp_too_big_v4")),
        human(g("icmp_too_big_v6")),
        human(g("icmp_echo_reply")),
        human(g("quic_cid_routed")),
        human(g("quic_cid_unknown")),
        human(g("tcp_sid_routed"))
    );
    let drops: Vec<String> = r
        .global
        .iter()
        .filter(|(n, _)| n.starts_with("drop_"))
        .map(|(n, v)| format!("{} {}", &n[5..], human(*v)))
        .collect();
    println!("drops/s: {}", drops.join(", "));
    println!(
        "{:<44} {:>10} {:>10} {:>14}",
        "VIP", "packets/s", "bits/s", "packets total"
    );
    for (k, (pps, bps)) in &r.vips {
        println!(
            "{k:<44} {:>10} {:>10} {:>14}",
            human(*pps),
            human(*bps),
            total.vips[k].packets
        );
    }
    println!(
        "{:<44} {:>10} {:>10} {:>14}",
        "REAL", "packets/s", "bits/s", "packets total"
    );
    for (k, (pps, bps)) in &r.reals {
        println!(
            "{:<44} {:>10} {:>10} {:>14}",
            k.to_string(),
            human(*pps),
            human(*bps),
            total.reals[k].packets
        );
    }
}

pub fn run(pin_dir: &Path, interval: f64, watch: bool, json_out: bool) -> Result<()> {
    if !(0.05..=3600.0).contains(&interval) {
        bail!("--interval must be between 0.05 and 3600 seconds");
    }
    let Some(store) = live::open(&Pins::new(pin_dir))? else {
        bail!("no dataplane pinned at {}", pin_dir.display());
    };
    let mut last = snapshot(&store)?;
    loop {
        sleep(Duration::from_secs_f64(interval));
        let now = snapshot(&store)?;
        let r = rates(&last, &now);
        if json_out {
            // one document per line, so --watch is a stream of them
            let doc = crate::views::json::stats::Stats::new(&now, &r, std::time::SystemTime::now());
            println!("{}", serde_json::to_string(&doc)?);
        } else {
            if watch {
                print!("\x1b[2J\x1b[H");
                println!(
                    "{} (every {interval} s)",
                    crate::views::status::timestamp(std::time::SystemTime::now())
                );
            }
            print_table(&r, &now);
        }
        if !watch {
            return Ok(());
        }
        last = now;
    }
}
