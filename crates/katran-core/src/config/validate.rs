//! Checks that need more than one value: duplicates, references from server
//! ids, marks and down reals to the reals of the VIPs, flag combinations,
//! GUE sources for the address families in use, and the map-size limits.
//! Values that were wrong on their own are skipped here, not re-reported.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::model::{Proto, VipKey};

use super::draft::{Dataplane, Draft, EncapKind, Mapping, Val, Vip};
use super::schema;
use super::source::{Problems, Source, Span};
use super::values;

pub fn check(d: &Draft, src: &Source<'_>, p: &mut Problems) {
    let dp = d.dataplane.clone().unwrap_or_default();
    let reals = RealIndex::new(&d.vips);
    vips(d, src, p);
    flags(d, p);
    gue(&dp, &reals, src, p);
    limits(&dp, d, &reals, p);
    server_ids(&dp, d, &reals, src, p);
    marks(d, &reals, src, p);
    down_reals(d, &reals, src, p);
}

/// Every real address, with the VIPs (indexes) it belongs to, in file order.
struct RealIndex {
    order: Vec<(IpAddr, Span)>,
    vips: HashMap<IpAddr, Vec<usize>>,
}

impl RealIndex {
    fn new(vips: &[Vip]) -> Self {
        let mut idx = RealIndex {
            order: Vec::new(),
            vips: HashMap::new(),
        };
        for (i, v) in vips.iter().enumerate() {
            for r in &v.reals {
                let list = idx.vips.entry(r.addr.value).or_default();
                if list.is_empty() {
                    idx.order.push((r.addr.value, r.addr.span));
                }
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        idx
    }

    fn contains(&self, a: IpAddr) -> bool {
        self.vips.contains_key(&a)
    }
}

fn key(v: &Vip) -> Option<VipKey> {
    let (addr, port) = v.address.given()?.value;
    let proto = v.proto.given()?.value;
    Some(VipKey { addr, port, proto })
}

/// "VIP 10.0.0.1:80/tcp", or "this VIP" when its address or proto is wrong.
fn name(v: &Vip) -> String {
    key(v).map_or_else(|| "this VIP".to_string(), |k| format!("VIP {k}"))
}

fn vips(d: &Draft, src: &Source<'_>, p: &mut Problems) {
    if d.vips.is_empty() && d.dataplane.is_some() {
        p.warn(
            Span::FILE_START,
            "the file defines no VIP: nothing will be balanced",
        )
        .help("add a [[vip]] table with address, proto and reals");
    }
    let mut seen: HashMap<VipKey, Span> = HashMap::new();
    for v in &d.vips {
        if let (Some(k), Some(a)) = (key(v), v.address.span()) {
            if let Some(first) = seen.get(&k) {
                p.error(
                    a,
                    format!(
                        "duplicate VIP {k} (first defined on line {})",
                        src.line_of(*first)
                    ),
                )
                .help("each address, port and protocol makes one VIP: merge the two [[vip]] tables or change this one");
            } else {
                seen.insert(k, a);
            }
        }
        let mut reals: HashMap<IpAddr, Span> = HashMap::new();
        for r in &v.reals {
            if let Some(first) = reals.get(&r.addr.value) {
                p.error(
                    r.addr.span,
                    format!(
                        "duplicate real {} in {} (first listed on line {})",
                        r.addr.value,
                        name(v),
                        src.line_of(*first)
                    ),
                )
                .help("list each real once per VIP; to send it more flows, raise its weight");
            } else {
                reals.insert(r.addr.value, r.addr.span);
            }
        }
        if v.reals_invalid {
            continue;
        }
        if v.reals.is_empty() {
            p.warn(
                v.span,
                format!("{} has no reals: its packets are dropped", name(v)),
            )
            .help("add reals = [\"10.1.0.1\", ...], or remove the VIP");
        } else if v.reals.iter().all(|r| r.weight == Some(0)) {
            p.warn(
                v.reals_span.unwrap_or(v.span),
                format!(
                    "every real of {} has weight 0: new flows are dropped",
                    name(v)
                ),
            )
            .help("give at least one real a weight above 0");
        }
    }
}

fn flags(d: &Draft, p: &mut Problems) {
    for v in &d.vips {
        let at = |flag: &str| {
            v.flag_spans
                .iter()
                .find(|f| f.value == flag)
                .map_or(v.span, |f| f.span)
        };
        let tcp = v.proto.given().map(|s| s.value) == Some(Proto::Tcp);
        for flag in ["quic", "udp-flow-migration"] {
            let on = if flag == "quic" {
                v.flags.quic
            } else {
                v.flags.udp_flow_migration
            };
            if on && tcp {
                p.error(
                    at(flag),
                    format!("flag \"{flag}\" needs a UDP VIP, but {} is TCP", name(v)),
                )
                .help(format!(
                    "set proto = \"udp\", or remove \"{flag}\" from this VIP's flags"
                ));
            }
        }
        if v.flags.dport_hash && v.flags.no_src_port {
            let (a, b) = (at("dport-hash"), at("no-src-port"));
            let later = if a.start > b.start { a } else { b };
            p.error(
                later,
                "flags \"dport-hash\" and \"no-src-port\" conflict: dport-hash already ignores the source address and port",
            )
            .help("keep one: \"dport-hash\" (one real per destination port) or \"no-src-port\" (one real per client address)");
        }
        if v.flags.dport_hash {
            if let Some(port) = v.address.given().map(|a| a.value.1).filter(|&p| p != 0) {
                p.warn(
                    at("dport-hash"),
                    format!("flag \"dport-hash\" on a VIP with the fixed port {port} sends every flow to the same real"),
                )
                .help("dport-hash is meant for port-0 (every port) VIPs: remove it, or make the VIP's port 0");
            }
        }
        if v.flags.udp_flow_migration && v.flags.no_conn_table && !tcp {
            p.warn(
                at("udp-flow-migration"),
                "flag \"udp-flow-migration\" has no effect with \"no-conn-table\": flows are migrated in the connection table",
            )
            .help("remove one of the two flags");
        }
    }
}

fn gue(dp: &Dataplane, reals: &RealIndex, src: &Source<'_>, p: &mut Problems) {
    match dp.encap.or(EncapKind::Ipip) {
        None => {}
        Some(EncapKind::Ipip) => {
            for k in &dp.gue_keys {
                p.error(
                    k.span,
                    format!("`{}` only applies with encap = \"gue\"", k.value),
                )
                .help(format!(
                    "set encap = \"gue\" in [dataplane], or remove {}",
                    k.value
                ));
            }
        }
        Some(EncapKind::Gue) => {
            let at = dp.encap.span().unwrap_or(dp.span);
            let v4_missing = matches!(dp.gue_source_v4, Val::Absent);
            let v6_missing = matches!(dp.gue_source_v6, Val::Absent);
            for (missing, key, family) in [
                (v4_missing, "gue_source_v4", "IPv4"),
                (v6_missing, "gue_source_v6", "IPv6"),
            ] {
                let first = reals
                    .order
                    .iter()
                    .find(|(a, _)| a.is_ipv4() == (family == "IPv4"));
                if let (true, Some((a, s))) = (missing, first) {
                    p.error(
                        at,
                        format!(
                            "encap = \"gue\" needs {key}: real {a} (line {}) is {family}",
                            src.line_of(*s)
                        ),
                    )
                    .help(format!("add {key} = \"...\" to [dataplane]: an {family} address of this host, the outer source of GUE packets to {family} reals"));
                }
            }
        }
    }
}

fn limits(dp: &Dataplane, d: &Draft, reals: &RealIndex, p: &mut Problems) {
    if let Some(max) = dp.max_vips.or(schema::DEFAULT_MAX_VIPS) {
        let n = d.vips.len();
        if let Some(v) = d.vips.get(max as usize) {
            p.error(v.span, format!("too many VIPs: {n}, but max_vips is {max}"))
                .help(format!(
                    "raise max_vips in [dataplane] to at least {n} (it sizes the VIP maps)"
                ));
        }
    }
    if let Some(max) = dp.max_reals.or(schema::DEFAULT_MAX_REALS) {
        let n = reals.order.len();
        if let Some((a, s)) = reals.order.get(max as usize) {
            p.error(
                *s,
                format!("too many reals: {n} distinct addresses, but max_reals is {max}; {a} is one too many"),
            )
            .help(format!(
                "raise max_reals in [dataplane] to at least {n} (it sizes the reals map)"
            ));
        }
    }
    let Some(ring) = dp.ring_size.or(schema::DEFAULT_RING_SIZE) else {
        return;
    };
    for v in &d.vips {
        let n = v.reals.len();
        if n as u64 >= u64::from(ring) {
            let want = u32::try_from(n.saturating_mul(100))
                .unwrap_or(u32::MAX)
                .min(schema::MAX_RING_SIZE);
            let prime = (want..=schema::MAX_RING_SIZE)
                .find(|&k| values::is_prime(k))
                .unwrap_or(schema::MAX_RING_SIZE);
            p.error(
                v.reals_span.unwrap_or(v.span),
                format!("{} has {n} reals, but ring_size is only {ring}", name(v)),
            )
            .help(format!(
                "Maglev needs more ring slots than reals, about 100 per real for an even spread: raise ring_size, e.g. to {prime}"
            ));
        }
    }
    if let Some(max_vips) = dp.max_vips.or(schema::DEFAULT_MAX_VIPS) {
        let slots = 2 * u64::from(max_vips) * u64::from(ring);
        if slots > u64::from(u32::MAX) + 1 {
            let at = dp
                .ring_size
                .span()
                .or(dp.max_vips.span())
                .unwrap_or(dp.span);
            p.error(
                at,
                format!("the rings would need {slots} slots (2 x max_vips x ring_size), more than the 2^32 the dataplane can index"),
            )
            .help("lower ring_size or max_vips");
        }
    }
}

/// Reports duplicate ids and ids naming no real; `what` is "server id" or
/// "socket mark".
fn mappings(list: &[Mapping], what: &str, reals: &RealIndex, src: &Source<'_>, p: &mut Problems) {
    let mut seen: HashMap<u32, Span> = HashMap::new();
    for m in list {
        if let Some(id) = m.id.given() {
            if let Some(first) = seen.get(&id.value) {
                p.error(
                    id.span,
                    format!(
                        "{what} {} is used twice (first on line {})",
                        id.value,
                        src.line_of(*first)
                    ),
                )
                .help(format!("each {what} names one real: pick an unused number"));
            } else {
                seen.insert(id.value, id.span);
            }
        }
        if let Some(r) = m.real.given() {
            if !reals.contains(r.value) {
                let id =
                    m.id.given()
                        .map_or(String::new(), |i| format!(" {}", i.value));
                p.error(
                    r.span,
                    format!(
                        "{what}{id} names {}, which is not a real of any VIP",
                        r.value
                    ),
                )
                .help(format!(
                    "add {} to the reals of a VIP, or correct the address",
                    r.value
                ));
            }
        }
    }
}

fn server_ids(dp: &Dataplane, d: &Draft, reals: &RealIndex, src: &Source<'_>, p: &mut Problems) {
    mappings(&d.server_ids, "server id", reals, src, p);
    let Some(first) = d.server_ids.first() else {
        return;
    };
    let quic = d.vips.iter().any(|v| v.flags.quic);
    let tcp = match dp.tcp_server_id.or(None) {
        Some(kind) => kind.is_some(),
        None => return,
    };
    if !quic && !tcp {
        p.warn(
            first.span,
            "server ids have no effect: no VIP has the \"quic\" flag and tcp_server_id is off",
        )
        .help("add \"quic\" to a UDP VIP's flags, or set tcp_server_id = true in [dataplane]");
    }
    if !tcp {
        for m in &d.server_ids {
            if let Some(id) = m.id.given().filter(|i| i.value > 0x00ff_ffff) {
                p.warn(
                    id.span,
                    format!("server id {} does not fit in a QUIC connection id (at most 16777215)", id.value),
                )
                .help("QUIC ids carry 24 bits at most; only TCP server ids (tcp_server_id) use all 32");
            }
        }
    }
}

fn marks(d: &Draft, reals: &RealIndex, src: &Source<'_>, p: &mut Problems) {
    mappings(&d.marks, "socket mark", reals, src, p);
}

fn down_reals(d: &Draft, reals: &RealIndex, src: &Source<'_>, p: &mut Problems) {
    let mut seen: HashMap<IpAddr, Span> = HashMap::new();
    for r in &d.down_reals {
        if let Some(first) = seen.get(&r.value) {
            p.error(
                r.span,
                format!(
                    "down real {} is listed twice (first on line {})",
                    r.value,
                    src.line_of(*first)
                ),
            )
            .help("list each down real once");
            continue;
        }
        seen.insert(r.value, r.span);
        let Some(vips) = reals.vips.get(&r.value) else {
            p.error(
                r.span,
                format!("down real {} is not a real of any VIP", r.value),
            )
            .help(format!(
                "add {} to the reals of a VIP, or correct the address",
                r.value
            ));
            continue;
        };
        let migrating = vips
            .iter()
            .any(|&i| d.vips.get(i).is_some_and(|v| v.flags.udp_flow_migration));
        if !migrating {
            p.warn(
                r.span,
                format!("down real {} has no effect: none of its VIPs has the \"udp-flow-migration\" flag", r.value),
            )
            .help("add \"udp-flow-migration\" to the flags of its UDP VIPs, or drain it with weight 0");
        }
    }
}
