//! The last step: a draft without errors becomes the [`Config`] the rest of
//! katran uses, defaults filled in, places dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::model::{Backend, Encap, Globals, MacAddr, RingKind, State, Vip, VipKey};

use crate::health::spec::{HealthCheck, AUTO_MARK_BASE};

use super::draft::{Draft, EncapKind, Mapping};
use super::schema;
use super::settings::{Gateway, Settings, XdpMode};
use super::Config;

pub fn config(d: &Draft) -> Config {
    let dp = d.dataplane.clone().unwrap_or_default();
    let base = Globals::default();
    let gateway = dp.gateway.value_or(Gateway::Auto);
    let settings = Settings {
        interfaces: dp.interfaces.value_or(Vec::new()),
        xdp_mode: dp.xdp_mode.value_or(XdpMode::Auto),
        gateway,
        ring_size: dp.ring_size.value_or(schema::DEFAULT_RING_SIZE),
        max_vips: dp.max_vips.value_or(schema::DEFAULT_MAX_VIPS),
        max_reals: dp.max_reals.value_or(schema::DEFAULT_MAX_REALS),
        conn_table_size: dp.conn_table_size.value_or(schema::DEFAULT_CONN_TABLE_SIZE),
        forwarding_cpus: dp.forwarding_cpus.given().map(|c| c.value.clone()),
        shared_conn_table: dp.shared_conn_table.value_or(false),
        vip_real_counters: dp.vip_real_counters.value_or(false),
        pin_dir: dp.pin_dir.value_or(PathBuf::from(schema::DEFAULT_PIN_DIR)),
    };
    let encap = match dp.encap.value_or(EncapKind::Ipip) {
        EncapKind::Ipip => Encap::Ipip,
        EncapKind::Gue => Encap::Gue {
            port: dp.gue_port.value_or(schema::DEFAULT_GUE_PORT),
            src_v4: dp.gue_source_v4.value_or(Ipv4Addr::UNSPECIFIED),
            src_v6: dp.gue_source_v6.value_or(Ipv6Addr::UNSPECIFIED),
        },
    };
    let globals = Globals {
        gateway_mac: match gateway {
            Gateway::Mac(m) => m,
            Gateway::Auto => MacAddr::default(),
        },
        encap,
        tcp_server_id_kind: dp.tcp_server_id.value_or(base.tcp_server_id_kind),
        src_v4_prefix: dp.outer_source_v4_prefix.value_or(base.src_v4_prefix),
        src_v6_prefix: dp.outer_source_v6_prefix.value_or(base.src_v6_prefix),
        max_conn_rate: dp.max_conn_rate.value_or(base.max_conn_rate),
        udp_timeout_s: dp.udp_timeout_s.value_or(base.udp_timeout_s),
        max_frame_len: dp.max_frame_len.value_or(base.max_frame_len),
    };
    let vips = d
        .vips
        .iter()
        .filter_map(|v| {
            let (addr, port) = v.address.given()?.value;
            let proto = v.proto.given()?.value;
            Some(Vip {
                key: VipKey { addr, port, proto },
                flags: v.flags,
                reals: v
                    .reals
                    .iter()
                    .map(|r| Backend {
                        addr: r.addr.value,
                        weight: r.weight.unwrap_or(schema::DEFAULT_WEIGHT),
                    })
                    .collect(),
            })
        })
        .collect();
    let state = State {
        globals,
        ring: dp.ring.value_or(RingKind::MaglevV2),
        vips,
        server_ids: map(&d.server_ids),
        down_reals: d.down_reals.iter().map(|r| r.value).collect(),
        drained: Default::default(),
    };
    let healthchecks: BTreeMap<VipKey, HealthCheck> = d
        .vips
        .iter()
        .filter_map(|v| {
            let (addr, port) = v.address.given()?.value;
            let proto = v.proto.given()?.value;
            let mut check = v.healthcheck.as_ref()?.check.clone();
            if check.port == 0 {
                check.port = port;
            }
            Some((VipKey { addr, port, proto }, check))
        })
        .collect();
    let somarks = with_auto_marks(map(&d.marks), &state, &healthchecks);
    Config {
        settings,
        state,
        somarks,
        healthchecks,
        announce: d.announce,
        metrics: d.metrics,
        failing: Default::default(),
    }
}

/// Every real of a checked VIP needs a socket mark for its probes to be
/// forwarded to it; those without one in the file get the lowest free mark
/// from `AUTO_MARK_BASE` up, in address order (stable for a given file).
fn with_auto_marks(
    mut marks: BTreeMap<u32, IpAddr>,
    state: &State,
    checks: &BTreeMap<VipKey, HealthCheck>,
) -> BTreeMap<u32, IpAddr> {
    let have: BTreeSet<IpAddr> = marks.values().copied().collect();
    let need: BTreeSet<IpAddr> = state
        .vips
        .iter()
        .filter(|v| checks.contains_key(&v.key))
        .flat_map(|v| v.reals.iter().map(|r| r.addr))
        .filter(|a| !have.contains(a))
        .collect();
    let mut next = AUTO_MARK_BASE;
    for addr in need {
        while marks.contains_key(&next) {
            next += 1;
        }
        marks.insert(next, addr);
        next += 1;
    }
    marks
}

fn map(list: &[Mapping]) -> BTreeMap<u32, IpAddr> {
    list.iter()
        .filter_map(|m| Some((m.id.given()?.value, m.real.given()?.value)))
        .collect()
}
