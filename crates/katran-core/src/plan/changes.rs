//! The changes between two [`State`]s that a person reads: settings, VIPs,
//! reals, weights, flags, health verdicts, server ids, down reals. Pure.
//! Ring slot moves need the rings themselves and come from the engine.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::Change;
use crate::model::{Backend, Globals, RingKind, State, Vip, VipKey};

fn names(v: &Vip) -> Vec<String> {
    v.flags.names().iter().map(|s| s.to_string()).collect()
}

/// The ring kind as the file spells it.
pub fn ring_name(kind: RingKind) -> &'static str {
    match kind {
        RingKind::MaglevV1 => "maglev-v1",
        RingKind::MaglevV2 => "maglev-v2",
    }
}

fn encap_name(g: &Globals) -> String {
    match g.encap {
        crate::model::Encap::Ipip => "ipip".into(),
        crate::model::Encap::Gue {
            port,
            src_v4,
            src_v6,
        } => format!("gue (port {port}, sources {src_v4}, {src_v6})"),
    }
}

/// Dataplane-wide values; `gateway` is how each side names its gateway.
pub fn settings(live: &State, want: &State, gateway: (String, String)) -> Vec<Change> {
    let (a, b) = (&live.globals, &want.globals);
    let sid = |k: Option<u8>| k.map_or_else(|| "off".into(), |k| format!("option kind {k}"));
    let pair = |x: &dyn ToString, y: &dyn ToString| (x.to_string(), y.to_string());
    [
        ("gateway_mac", gateway),
        ("encapsulation", (encap_name(a), encap_name(b))),
        ("ring", pair(&ring_name(live.ring), &ring_name(want.ring))),
        (
            "tcp_server_id",
            (sid(a.tcp_server_id_kind), sid(b.tcp_server_id_kind)),
        ),
        (
            "outer_source_v4_prefix",
            pair(&a.src_v4_prefix, &b.src_v4_prefix),
        ),
        (
            "outer_source_v6_prefix",
            pair(&a.src_v6_prefix, &b.src_v6_prefix),
        ),
        ("max_conn_rate", pair(&a.max_conn_rate, &b.max_conn_rate)),
        ("udp_timeout", pair(&a.udp_timeout_s, &b.udp_timeout_s)),
        ("max_frame_len", pair(&a.max_frame_len, &b.max_frame_len)),
    ]
    .into_iter()
    .filter(|(_, (from, to))| from != to)
    .map(|(name, (from, to))| Change::Setting {
        name: name.into(),
        from,
        to,
    })
    .collect()
}

fn reals_changes(vip: &str, old: &[Backend], new: &[Backend]) -> Vec<Change> {
    let o: BTreeMap<IpAddr, u32> = old.iter().map(|b| (b.addr, b.weight)).collect();
    let n: BTreeMap<IpAddr, u32> = new.iter().map(|b| (b.addr, b.weight)).collect();
    let mut out = Vec::new();
    for (addr, w) in &n {
        match o.get(addr) {
            None => out.push(Change::AddReal {
                vip: vip.into(),
                real: *addr,
                weight: *w,
            }),
            Some(ow) if ow != w => out.push(Change::Weight {
                vip: vip.into(),
                real: *addr,
                from: *ow,
                to: *w,
            }),
            Some(_) => {}
        }
    }
    for addr in o.keys().filter(|a| !n.contains_key(a)) {
        out.push(Change::RemoveReal {
            vip: vip.into(),
            real: *addr,
        });
    }
    out
}

/// Health verdicts that change for reals present on both sides (a new real
/// arrives with its verdict, a removed one leaves with it).
fn health_changes(live: &State, want: &State, key: &VipKey, o: &Vip, n: &Vip) -> Vec<Change> {
    let both: BTreeSet<IpAddr> = o
        .reals
        .iter()
        .map(|b| b.addr)
        .filter(|a| n.reals.iter().any(|b| b.addr == *a))
        .collect();
    both.into_iter()
        .filter_map(|real| {
            let (was, is) = (
                live.drained.contains(&(*key, real)),
                want.drained.contains(&(*key, real)),
            );
            (was != is).then(|| Change::Health {
                vip: key.to_string(),
                real,
                drained: is,
            })
        })
        .collect()
}

/// VIP-level changes in order: for each desired VIP (file order) its
/// additions or modifications, then removed VIPs, server ids, down reals.
/// The returned keys are the VIPs on both sides whose reals, weights or
/// verdicts changed (their ring moves are the engine's to count).
pub fn vips(live: &State, want: &State) -> (Vec<Change>, BTreeMap<VipKey, usize>) {
    let mut changes = Vec::new();
    let mut ring_at = BTreeMap::new();
    let old: BTreeMap<VipKey, &Vip> = live.vips.iter().map(|v| (v.key, v)).collect();
    let new: BTreeSet<VipKey> = want.vips.iter().map(|v| v.key).collect();
    for v in &want.vips {
        let name = v.key.to_string();
        match old.get(&v.key) {
            None => {
                changes.push(Change::AddVip {
                    vip: name.clone(),
                    flags: names(v),
                    reals: v.reals.len(),
                });
                changes.extend(reals_changes(&name, &[], &v.reals));
                for b in &v.reals {
                    if want.drained.contains(&(v.key, b.addr)) {
                        changes.push(Change::Health {
                            vip: name.clone(),
                            real: b.addr,
                            drained: true,
                        });
                    }
                }
            }
            Some(o) => {
                if o.flags != v.flags {
                    changes.push(Change::VipFlags {
                        vip: name.clone(),
                        from: names(o),
                        to: names(v),
                    });
                }
                changes.extend(reals_changes(&name, &o.reals, &v.reals));
                changes.extend(health_changes(live, want, &v.key, o, v));
                // the ring-moves line goes right after this VIP's changes
                ring_at.insert(v.key, changes.len());
            }
        }
    }
    for key in old.keys().filter(|k| !new.contains(k)) {
        changes.push(Change::RemoveVip {
            vip: key.to_string(),
        });
    }
    for (id, addr) in &want.server_ids {
        if live.server_ids.get(id) != Some(addr) {
            changes.push(Change::ServerId {
                id: *id,
                from: live.server_ids.get(id).copied(),
                to: Some(*addr),
            });
        }
    }
    for (id, addr) in &live.server_ids {
        if !want.server_ids.contains_key(id) {
            changes.push(Change::ServerId {
                id: *id,
                from: Some(*addr),
                to: None,
            });
        }
    }
    let od: BTreeSet<IpAddr> = live.down_reals.iter().copied().collect();
    let nd: BTreeSet<IpAddr> = want.down_reals.iter().copied().collect();
    for r in nd.difference(&od) {
        changes.push(Change::DownReal {
            real: *r,
            down: true,
        });
    }
    for r in od.difference(&nd) {
        changes.push(Change::DownReal {
            real: *r,
            down: false,
        });
    }
    (changes, ring_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Encap, MacAddr, Proto, VipFlags};

    fn base() -> State {
        State {
            vips: vec![Vip {
                key: VipKey {
                    addr: "10.0.0.1".parse().unwrap(),
                    port: 80,
                    proto: Proto::Tcp,
                },
                flags: VipFlags::default(),
                reals: vec![Backend {
                    addr: "10.1.0.1".parse().unwrap(),
                    weight: 1,
                }],
            }],
            ..State::default()
        }
    }

    fn names_of(a: &State, b: &State) -> Vec<String> {
        let mac = |s: &State| s.globals.gateway_mac.to_string();
        settings(a, b, (mac(a), mac(b)))
            .into_iter()
            .map(|c| match c {
                Change::Setting { name, .. } => name,
                other => panic!("not a setting: {other}"),
            })
            .collect()
    }

    #[test]
    fn every_dataplane_setting_is_its_own_change() {
        let a = base();
        type Edit = (&'static str, fn(&mut State));
        let edits: Vec<Edit> = vec![
            ("gateway_mac", |s| {
                s.globals.gateway_mac = MacAddr([2, 0, 0, 0, 0, 9])
            }),
            ("encapsulation", |s| {
                s.globals.encap = Encap::Gue {
                    port: 9886,
                    src_v4: "10.9.0.1".parse().unwrap(),
                    src_v6: "fc00::9".parse().unwrap(),
                }
            }),
            ("ring", |s| s.ring = RingKind::MaglevV1),
            ("tcp_server_id", |s| {
                s.globals.tcp_server_id_kind = Some(254)
            }),
            ("outer_source_v4_prefix", |s| {
                s.globals.src_v4_prefix = "10.20.0.0".parse().unwrap()
            }),
            ("outer_source_v6_prefix", |s| {
                s.globals.src_v6_prefix = "fc00::".parse().unwrap()
            }),
            ("max_conn_rate", |s| s.globals.max_conn_rate = 1),
            ("udp_timeout", |s| s.globals.udp_timeout_s = 1),
            ("max_frame_len", |s| s.globals.max_frame_len = 9000),
        ];
        for (name, edit) in edits {
            let mut b = a.clone();
            edit(&mut b);
            assert_eq!(names_of(&a, &b), vec![name.to_string()]);
            assert!(names_of(&a, &a).is_empty());
        }
    }

    #[test]
    fn vip_level_changes_cover_flags_reals_weights_verdicts_ids_and_down_reals() {
        let a = base();
        let key = a.vips[0].key;
        let real: IpAddr = "10.1.0.1".parse().unwrap();
        let mut b = a.clone();
        b.vips[0].flags.no_src_port = true;
        b.vips[0].reals[0].weight = 4;
        b.vips[0].reals.push(Backend {
            addr: "10.1.0.2".parse().unwrap(),
            weight: 1,
        });
        b.drained.insert((key, real));
        b.server_ids.insert(3, real);
        b.down_reals.push(real);
        let (c, ring_at) = vips(&a, &b);
        let ops: Vec<&str> = c
            .iter()
            .map(|c| match c {
                Change::VipFlags { .. } => "flags",
                Change::Weight { .. } => "weight",
                Change::AddReal { .. } => "add-real",
                Change::Health { .. } => "health",
                Change::ServerId { .. } => "server-id",
                Change::DownReal { .. } => "down-real",
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(
            ops,
            [
                "flags",
                "weight",
                "add-real",
                "health",
                "server-id",
                "down-real"
            ]
        );
        assert_eq!(ring_at[&key], 4, "ring moves follow the VIP's own changes");
        let (back, _) = vips(&b, &a);
        assert!(back.iter().any(|c| matches!(c, Change::RemoveReal { .. })));
        assert!(back
            .iter()
            .any(|c| matches!(c, Change::Health { drained: false, .. })));
    }
}
