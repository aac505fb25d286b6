//! Announcing VIPs to the routers: with `[announce] table = N`, katran keeps
//! one host route (/32 or /128, through `lo`, protocol
//! [`crate::kernel::netlink::RTPROT_KATRAN`]) per VIP address in routing table N,
//! and a routing daemon (BIRD, FRR) exports that table over BGP. An address
//! is announced while one of its VIPs has a real that takes traffic
//! (weight > 0, not drained by its health check); it is withdrawn when
//! none has, while the node is drained (`katran drain`), and when the
//! file has no `[announce]`.
//!
//! What to announce is decided here, from the state alone; the routes are
//! read and written through [`crate::kernel::netlink`] by `reconcile`, as part of
//! the plan.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::model::{State, VipKey};

/// Addresses with a VIP that has a real taking traffic and is not among
/// the `failing` ones (every real fails its check: still forwarded, not
/// announced).
pub fn serving(state: &State, failing: &BTreeSet<VipKey>) -> BTreeSet<IpAddr> {
    state
        .vips
        .iter()
        .filter(|v| !failing.contains(&v.key))
        .filter(|v| v.reals.iter().any(|r| state.ring_weight(&v.key, r) > 0))
        .map(|v| v.key.addr)
        .collect()
}

/// Addresses of a VIP that none of the address's VIPs serves, with why.
pub fn not_serving(state: &State, failing: &BTreeSet<VipKey>) -> Vec<(IpAddr, &'static str)> {
    let serving = serving(state, failing);
    let mut out: Vec<(IpAddr, &'static str)> = Vec::new();
    for v in &state.vips {
        let addr = v.key.addr;
        if serving.contains(&addr) || out.iter().any(|(a, _)| *a == addr) {
            continue;
        }
        let why = if failing.contains(&v.key) || v.reals.iter().any(|r| r.weight > 0) {
            "every real fails its health check"
        } else {
            "every real has weight 0"
        };
        out.push((addr, why));
    }
    out
}

/// The routes wanted: (table, address).
pub fn wanted(
    table: Option<u32>,
    draining: bool,
    state: &State,
    failing: &BTreeSet<VipKey>,
) -> BTreeSet<Route> {
    match table {
        Some(t) if !draining => serving(state, failing)
            .into_iter()
            .map(|a| (t, a))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// One announcement route: (routing table, address).
pub type Route = (u32, IpAddr);

/// Routes to add and to remove to go from `live` to `want`.
pub fn diff(live: &[Route], want: &BTreeSet<Route>) -> (Vec<Route>, Vec<Route>) {
    let have: BTreeSet<(u32, IpAddr)> = live.iter().copied().collect();
    (
        want.difference(&have).copied().collect(),
        have.difference(want).copied().collect(),
    )
}

/// The file whose presence says the node is drained (`katran drain`):
/// beside the daemon's lock, named after the pin directory, so it holds
/// across daemon restarts and ends with the machine's uptime.
pub fn drain_marker(pin_dir: &Path) -> PathBuf {
    let name = crate::files::daemon_lock::file_name(pin_dir);
    let base = name
        .strip_prefix("daemon.")
        .and_then(|n| n.strip_suffix(".lock"))
        .unwrap_or(&name);
    Path::new(crate::files::daemon_lock::RUN_DIR).join(format!("drained.{base}"))
}

/// Whether the node is drained.
pub fn draining(pin_dir: &Path) -> bool {
    drain_marker(pin_dir).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Proto, Vip, VipKey};

    fn vip(addr: &str, port: u16, weights: &[u32]) -> Vip {
        Vip {
            key: VipKey {
                addr: addr.parse().unwrap(),
                port,
                proto: Proto::Tcp,
            },
            flags: Default::default(),
            reals: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Backend {
                    addr: format!("10.1.0.{}", i + 1).parse().unwrap(),
                    weight: *w,
                })
                .collect(),
        }
    }

    #[test]
    fn an_address_is_announced_while_one_of_its_vips_serves() {
        let mut s = State {
            vips: vec![
                vip("10.0.0.1", 80, &[1, 1]),
                vip("10.0.0.1", 443, &[0]),
                vip("10.0.0.2", 80, &[0, 0]),
                vip("10.0.0.3", 80, &[1]),
            ],
            ..State::default()
        };
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        let none = BTreeSet::new();
        assert_eq!(
            serving(&s, &none),
            [a("10.0.0.1"), a("10.0.0.3")].into_iter().collect()
        );
        // 10.0.0.3's only real fails its check (the daemon keeps it
        // forwarding but names it failing)
        let failing: BTreeSet<VipKey> = [s.vips[3].key].into();
        assert_eq!(serving(&s, &failing), [a("10.0.0.1")].into_iter().collect());
        s.drained.insert((s.vips[3].key, a("10.1.0.1")));
        assert_eq!(serving(&s, &none), [a("10.0.0.1")].into_iter().collect());
        assert_eq!(
            not_serving(&s, &none),
            vec![
                (a("10.0.0.2"), "every real has weight 0"),
                (a("10.0.0.3"), "every real fails its health check")
            ]
        );
        assert_eq!(wanted(Some(100), false, &s, &none).len(), 1);
        assert!(wanted(Some(100), true, &s, &none).is_empty(), "drained");
        assert!(wanted(None, false, &s, &none).is_empty(), "no [announce]");
    }

    #[test]
    fn the_diff_adds_and_removes_by_table_and_address() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        let live = vec![
            (100, a("10.0.0.1")),
            (100, a("10.0.0.9")),
            (7, a("10.0.0.3")),
        ];
        let want: BTreeSet<_> = [(100, a("10.0.0.1")), (100, a("10.0.0.3"))].into();
        let (add, remove) = diff(&live, &want);
        assert_eq!(add, vec![(100, a("10.0.0.3"))]);
        assert_eq!(remove, vec![(7, a("10.0.0.3")), (100, a("10.0.0.9"))]);
    }
}
