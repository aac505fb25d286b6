//! `katran stats --json`: one document per interval — the counters' totals
//! and their rates over the interval, every rate named with its unit
//! (`pps`, `bits_per_second`) instead of an unnamed pair.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::views::stats::{Rates, Snapshot};

#[derive(Debug, Serialize)]
pub struct VipTotals {
    pub vip: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct RealTotals {
    pub real: IpAddr,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    /// Every dataplane counter (`katran stats` names), summed over CPUs.
    pub counters: BTreeMap<&'static str, u64>,
    pub vips: Vec<VipTotals>,
    /// By real, over all its VIPs.
    pub reals: Vec<RealTotals>,
}

#[derive(Debug, Serialize)]
pub struct VipRate {
    pub vip: String,
    pub pps: f64,
    pub bits_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct RealRate {
    pub real: IpAddr,
    pub pps: f64,
    pub bits_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct RatesDoc {
    /// Every counter, per second.
    pub counters_per_second: BTreeMap<&'static str, f64>,
    /// Connection-table hits over the lookups that could hit (everything
    /// but TCP SYNs, which open new flows), in percent; `null` without any.
    pub conn_hit_percent_of_non_syn: Option<f64>,
    pub vips: Vec<VipRate>,
    pub reals: Vec<RealRate>,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub format_version: u32,
    /// When the second reading was taken: `YYYY-MM-DD HH:MM:SS UTC`.
    pub at: String,
    /// Seconds between the two readings.
    pub interval_seconds: f64,
    pub totals: Totals,
    pub rates: RatesDoc,
}

impl Stats {
    pub fn new(now: &Snapshot, r: &Rates, at: std::time::SystemTime) -> Stats {
        Stats {
            format_version: super::FORMAT_VERSION,
            at: crate::views::status::timestamp(at),
            interval_seconds: r.interval_s,
            totals: Totals {
                counters: now.global.clone(),
                vips: now
                    .vips
                    .iter()
                    .map(|(vip, t)| VipTotals {
                        vip: vip.clone(),
                        packets: t.packets,
                        bytes: t.bytes,
                    })
                    .collect(),
                reals: now
                    .reals
                    .iter()
                    .map(|(real, t)| RealTotals {
                        real: *real,
                        packets: t.packets,
                        bytes: t.bytes,
                    })
                    .collect(),
            },
            rates: RatesDoc {
                counters_per_second: r.global.clone(),
                conn_hit_percent_of_non_syn: r.conn_hit_pct,
                vips: r
                    .vips
                    .iter()
                    .map(|(vip, (pps, bps))| VipRate {
                        vip: vip.clone(),
                        pps: *pps,
                        bits_per_second: *bps,
                    })
                    .collect(),
                reals: r
                    .reals
                    .iter()
                    .map(|(real, (pps, bps))| RealRate {
                        real: *real,
                        pps: *pps,
                        bits_per_second: *bps,
                    })
                    .collect(),
            },
        }
    }
}
