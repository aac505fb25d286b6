//! Rise/fall bookkeeping for one real, and what the results mean for the
//! configuration that is applied. Pure: unit-tested without a network.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{State, VipKey};

/// The health of one real of one checked VIP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealHealth {
    pub healthy: bool,
    /// Unix seconds of the last change (or of the first probe).
    pub since: u64,
    pub ok_streak: u32,
    pub fail_streak: u32,
    pub last_error: Option<String>,
    pub probes: u64,
}

impl RealHealth {
    /// Reals start healthy: a daemon restart must not drain a fleet while
    /// the first probes are on their way.
    pub fn new(now: u64) -> RealHealth {
        RealHealth {
            healthy: true,
            since: now,
            ok_streak: 0,
            fail_streak: 0,
            last_error: None,
            probes: 0,
        }
    }

    /// Records one probe; returns true when the real changed state.
    pub fn record(&mut self, result: &Result<(), String>, rise: u32, fall: u32, now: u64) -> bool {
        self.probes += 1;
        match result {
            Ok(()) => {
                self.ok_streak += 1;
                self.fail_streak = 0;
            }
            Err(e) => {
                self.fail_streak += 1;
                self.ok_streak = 0;
                self.last_error = Some(e.clone());
            }
        }
        let flip = if self.healthy {
            self.fail_streak >= fall
        } else {
            self.ok_streak >= rise
        };
        if flip {
            self.healthy = !self.healthy;
            self.since = now;
        }
        flip
    }
}

/// The state to apply: reals failing their VIP's check are drained (their
/// ring weight is 0: no new flows, existing ones stay; the file's weight is
/// kept beside the verdict). When every serving real of a VIP fails, the
/// VIP keeps its weights — forwarding to possibly broken reals beats
/// dropping everything — and the VIP is returned so it can be reported.
pub fn effective(state: &State, down: &BTreeSet<(VipKey, IpAddr)>) -> (State, Vec<VipKey>) {
    let mut out = state.clone();
    let mut all_down = Vec::new();
    for vip in &mut out.vips {
        let serving: Vec<IpAddr> = vip
            .reals
            .iter()
            .filter(|r| r.weight > 0)
            .map(|r| r.addr)
            .collect();
        let failing = serving
            .iter()
            .filter(|a| down.contains(&(vip.key, **a)))
            .count();
        if failing == 0 {
            continue;
        }
        if failing == serving.len() {
            all_down.push(vip.key);
            continue;
        }
        for r in &vip.reals {
            if down.contains(&(vip.key, r.addr)) {
                out.drained.insert((vip.key, r.addr));
            }
        }
    }
    (out, all_down)
}

/// The unhealthy (VIP, real) pairs of a health table.
pub fn down_set(table: &BTreeMap<(VipKey, IpAddr), RealHealth>) -> BTreeSet<(VipKey, IpAddr)> {
    table
        .iter()
        .filter(|(_, h)| !h.healthy)
        .map(|(k, _)| *k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Proto, Vip, VipFlags};

    fn fail() -> Result<(), String> {
        Err("refused".into())
    }

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut h = RealHealth::new(0);
        assert!(!h.record(&fail(), 2, 3, 1));
        assert!(!h.record(&fail(), 2, 3, 2));
        assert!(h.record(&fail(), 2, 3, 3));
        assert!(!h.healthy);
        assert_eq!(h.since, 3);
        assert!(!h.record(&Ok(()), 2, 3, 4));
        assert!(
            !h.record(&fail(), 2, 3, 5),
            "a failure resets the rise count"
        );
        assert!(!h.record(&Ok(()), 2, 3, 6));
        assert!(h.record(&Ok(()), 2, 3, 7));
        assert!(h.healthy);
        assert_eq!(h.last_error.as_deref(), Some("refused"));
    }

    fn state() -> State {
        let v = |a: &str, reals: &[(&str, u32)]| Vip {
            key: VipKey {
                addr: a.parse().unwrap(),
                port: 80,
                proto: Proto::Tcp,
            },
            flags: VipFlags::default(),
            reals: reals
                .iter()
                .map(|(a, w)| Backend {
                    addr: a.parse().unwrap(),
                    weight: *w,
                })
                .collect(),
        };
        State {
            vips: vec![
                v(
                    "10.0.0.1",
                    &[("10.1.0.1", 1), ("10.1.0.2", 2), ("10.1.0.3", 0)],
                ),
                v("10.0.0.2", &[("10.1.0.1", 1)]),
            ],
            ..State::default()
        }
    }

    #[test]
    fn failing_reals_are_drained_only_in_their_vip() {
        let s = state();
        let down = BTreeSet::from([(s.vips[0].key, "10.1.0.1".parse().unwrap())]);
        let (e, all) = effective(&s, &down);
        assert!(all.is_empty());
        let a1 = "10.1.0.1".parse().unwrap();
        assert_eq!(e.drained, BTreeSet::from([(s.vips[0].key, a1)]));
        assert_eq!(e.ring_weight(&s.vips[0].key, &e.vips[0].reals[0]), 0);
        assert_eq!(e.vips[0].reals[0].weight, 1, "the file's weight is kept");
        assert_eq!(
            e.ring_weight(&s.vips[1].key, &e.vips[1].reals[0]),
            1,
            "same real, other VIP: untouched"
        );
    }

    #[test]
    fn a_vip_whose_every_real_fails_keeps_forwarding() {
        let s = state();
        let k = s.vips[0].key;
        let down = BTreeSet::from([
            (k, "10.1.0.1".parse().unwrap()),
            (k, "10.1.0.2".parse().unwrap()),
        ]);
        let (e, all) = effective(&s, &down);
        assert_eq!(all, vec![k]);
        assert_eq!(e.vips[0], s.vips[0]);
        assert!(e.drained.is_empty());
    }
}
