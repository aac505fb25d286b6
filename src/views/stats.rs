//! Counters: read from the per-CPU maps and summed, named after the
//! dataplane's `enum lb_stat` (the values come from the generated skeleton,
//! only the printable names live here), and turned into rates between two
//! snapshots. A counter that went down (maps recreated) restarts its rate
//! from zero instead of underflowing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use anyhow::{Context, Result};
use libbpf_rs::MapHandle;
use serde::Serialize;

use crate::kernel::bpf::abi::types;
use crate::kernel::bpf::kernel_store::KernelStore;
use crate::kernel::bpf::percpu;
use crate::model::VipKey;
use crate::store::MapStore;

use types::lb_stat as S;

/// Every global counter: name, index in `struct lb_counters`, help text.
pub const COUNTERS: &[(&str, S, &str)] = &[
    ("xdp_pass", S::STAT_XDP_PASS, "Frames passed to the kernel"),
    (
        "xdp_tx",
        S::STAT_XDP_TX,
        "Frames sent back out (forwarded to a real, echo replies)",
    ),
    ("xdp_drop", S::STAT_XDP_DROP, "Frames dropped"),
    (
        "conn_hit",
        S::STAT_CONN_HIT,
        "Flows found in the connection table",
    ),
    (
        "conn_miss_tcp_syn",
        S::STAT_CONN_MISS_TCP_SYN,
        "New TCP flows (SYN)",
    ),
    (
        "conn_miss_tcp_nonsyn",
        S::STAT_CONN_MISS_TCP_NONSYN,
        "TCP non-SYN packets not in the table",
    ),
    (
        "conn_miss_udp",
        S::STAT_CONN_MISS_UDP,
        "UDP packets not in the table",
    ),
    (
        "fallback_table",
        S::STAT_FALLBACK_TABLE,
        "Packets on CPUs left out of forwarding_cpus (shared table used)",
    ),
    (
        "conn_rate_limited",
        S::STAT_CONN_RATE_LIMITED,
        "Table inserts skipped above the new-flow rate",
    ),
    (
        "icmp_echo_reply",
        S::STAT_ICMP_ECHO_REPLY,
        "ICMP echo requests to VIPs answered",
    ),
    (
        "icmp_too_big_v4",
        S::STAT_ICMP_TOO_BIG_V4,
        "ICMP fragmentation-needed forwarded to reals",
    ),
    (
        "icmp_too_big_v6",
        S::STAT_ICMP_TOO_BIG_V6,
        "ICMPv6 packet-too-big forwarded to reals",
    ),
    (
        "quic_cid_routed",
        S::STAT_QUIC_CID_ROUTED,
        "QUIC packets routed by connection id",
    ),
    (
        "quic_cid_unknown",
        S::STAT_QUIC_CID_UNKNOWN,
        "QUIC server ids without a mapping",
    ),
    (
        "quic_ch_routed",
        S::STAT_QUIC_CH_ROUTED,
        "QUIC packets without a usable id (hashed)",
    ),
    (
        "tcp_sid_routed",
        S::STAT_TCP_SID_ROUTED,
        "TCP packets routed by server-id option",
    ),
    (
        "tcp_sid_miss",
        S::STAT_TCP_SID_MISS,
        "TCP packets without a usable server id",
    ),
    (
        "udp_flow_migrated",
        S::STAT_UDP_FLOW_MIGRATED,
        "UDP flows moved off reals marked down",
    ),
    (
        "drop_malformed",
        S::STAT_DROP_MALFORMED,
        "Drops: truncated or inconsistent headers",
    ),
    (
        "drop_ipv4_options",
        S::STAT_DROP_IPV4_OPTIONS,
        "Drops: IPv4 options",
    ),
    (
        "drop_fragment",
        S::STAT_DROP_FRAGMENT,
        "Drops: IP fragments",
    ),
    (
        "drop_no_real",
        S::STAT_DROP_NO_REAL,
        "Drops: VIP without reals",
    ),
    (
        "drop_too_big",
        S::STAT_DROP_TOO_BIG,
        "Drops: frame above max_frame_len",
    ),
    (
        "drop_encap",
        S::STAT_DROP_ENCAP,
        "Drops: frame could not be grown",
    ),
    (
        "drop_no_ctl",
        S::STAT_DROP_NO_CTL,
        "Drops: no control values",
    ),
    (
        "conn_evicted",
        S::STAT_CONN_EVICTED,
        "Per-CPU table entries replaced because their set was full",
    ),
    (
        "prev_ring",
        S::STAT_PREV_RING,
        "During a replacement: unknown flows sent where the replaced dataplane's ring sends them",
    ),
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    #[serde(skip)]
    pub at: Option<Instant>,
    pub global: BTreeMap<&'static str, u64>,
    pub vips: BTreeMap<String, Traffic>,
    pub reals: BTreeMap<IpAddr, Traffic>,
    /// Per (VIP, real), when the dataplane counts them (`vip_real_counters`).
    #[serde(skip)]
    pub vip_reals: BTreeMap<(String, IpAddr), Traffic>,
}

/// The global counters of each CPU, indexed by `lb_stat` (the `stats` map
/// holds one `struct lb_counters` per CPU).
pub fn global_per_cpu(stats: &MapHandle) -> Result<Vec<Vec<u64>>> {
    let per_cpu = percpu::copies::<types::lb_counters>(stats, 0)
        .context("reading the global counters")?
        .unwrap_or_default();
    Ok(per_cpu.iter().map(|c| c.v.to_vec()).collect())
}

/// The global counters summed over CPUs, indexed by `lb_stat`.
pub fn global(stats: &MapHandle) -> Result<Vec<u64>> {
    let mut sum = vec![0u64; S::STAT__COUNT.0 as usize];
    for row in global_per_cpu(stats)? {
        for (s, v) in sum.iter_mut().zip(row) {
            *s += v;
        }
    }
    Ok(sum)
}

/// One global counter summed over CPUs.
pub fn global_one(stats: &MapHandle, which: S) -> Result<u64> {
    Ok(global(stats)?[which.0 as usize])
}

fn traffic(map: &MapHandle, idx: u32) -> Result<Traffic> {
    let per_cpu = percpu::copies::<types::traffic_counter>(map, idx)
        .with_context(|| format!("reading counters at {idx}"))?
        .unwrap_or_default();
    Ok(per_cpu.iter().fold(Traffic::default(), |t, c| Traffic {
        packets: t.packets + c.packets,
        bytes: t.bytes + c.bytes,
    }))
}

pub fn snapshot(store: &KernelStore) -> Result<Snapshot> {
    let sums = self::global(&store.maps.stats)?;
    let mut global = BTreeMap::new();
    for (name, idx, _) in COUNTERS {
        global.insert(*name, sums[idx.0 as usize]);
    }
    let gen = store.active_gen()?;
    let mut vips = BTreeMap::new();
    let mut live: Vec<(VipKey, u32, u32)> = store
        .vips()?
        .into_iter()
        .filter(|v| v.gen == gen)
        .map(|v| (v.key, v.vip_num, v.ring_id))
        .collect();
    live.sort();
    for (key, num, _) in &live {
        vips.insert(key.to_string(), traffic(&store.maps.vip_stats, *num)?);
    }
    let mut reals = BTreeMap::new();
    let all = store.reals()?;
    for (idx, r) in &all {
        if r.in_gen[gen as usize] {
            reals.insert(r.addr, traffic(&store.maps.real_stats, *idx)?);
        }
    }
    let mut vip_reals = BTreeMap::new();
    if store.vip_real_counting() {
        let slots = store.limits().max_reals + 1;
        let backends = store.backends()?;
        for (key, num, ring_id) in &live {
            for b in backends.iter().filter(|b| b.ring_id == *ring_id) {
                if let Some(r) = all.get(&b.real) {
                    let t = traffic(&store.maps.vip_real_stats, num * slots + b.real)?;
                    vip_reals.insert((key.to_string(), r.addr), t);
                }
            }
        }
    }
    Ok(Snapshot {
        at: Some(Instant::now()),
        global,
        vips,
        reals,
        vip_reals,
    })
}

/// Per-second rate between two readings of a counter; a counter that went
/// backwards was reset, so its new value is all that happened since.
pub fn rate(old: u64, new: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    let delta = if new >= old { new - old } else { new };
    delta as f64 / secs
}

/// Rates between two snapshots, by the same names.
#[derive(Clone, Debug, Serialize)]
pub struct Rates {
    pub interval_s: f64,
    pub global: BTreeMap<&'static str, f64>,
    pub vips: BTreeMap<String, (f64, f64)>,
    pub reals: BTreeMap<IpAddr, (f64, f64)>,
    /// Connection-table hits over lookups that could hit (non-SYN), in %.
    pub conn_hit_pct: Option<f64>,
}

pub fn rates(a: &Snapshot, b: &Snapshot) -> Rates {
    let secs = match (a.at, b.at) {
        (Some(x), Some(y)) => y.saturating_duration_since(x).as_secs_f64(),
        _ => 0.0,
    };
    let g = |n: &str| {
        (
            a.global.get(n).copied().unwrap_or(0),
            b.global.get(n).copied().unwrap_or(0),
        )
    };
    let global = COUNTERS
        .iter()
        .map(|(n, _, _)| {
            let (x, y) = g(n);
            (*n, rate(x, y, secs))
        })
        .collect::<BTreeMap<_, _>>();
    let pair = |o: Option<&Traffic>, n: &Traffic| {
        let o = o.copied().unwrap_or_default();
        (
            rate(o.packets, n.packets, secs),
            rate(o.bytes, n.bytes, secs) * 8.0,
        )
    };
    let vips = b
        .vips
        .iter()
        .map(|(k, t)| (k.clone(), pair(a.vips.get(k), t)))
        .collect();
    let reals = b
        .reals
        .iter()
        .map(|(k, t)| (*k, pair(a.reals.get(k), t)))
        .collect();
    let hits = global["conn_hit"];
    let lookups = hits + global["conn_miss_tcp_nonsyn"] + global["conn_miss_udp"];
    Rates {
        interval_s: secs,
        conn_hit_pct: (lookups > 0.0).then(|| hits * 100.0 / lookups),
        global,
        vips,
        reals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_named_once() {
        let mut seen: Vec<u32> = COUNTERS.iter().map(|c| c.1 .0).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), COUNTERS.len());
        assert_eq!(seen, (0..S::STAT__COUNT.0).collect::<Vec<_>>());
    }

    #[test]
    fn a_reset_counter_does_not_underflow() {
        assert_eq!(rate(100, 150, 1.0), 50.0);
        assert_eq!(rate(1000, 30, 1.0), 30.0);
        assert_eq!(rate(5, 5, 0.0), 0.0);
    }
}
