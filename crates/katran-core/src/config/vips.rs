//! Reading `[[vip]]` tables and their reals, each value checked on its own.
//! Duplicates, flag combinations and limits are `validate`'s job.

use std::net::IpAddr;

use toml_edit::Value;

use crate::model::Proto;

use super::draft::{Real, Val, Vip};
use super::reader::{self, Entry, Fields, Node};
use super::schema;
use super::source::{Problems, Sp};
use super::values;

pub fn read(e: &Entry<'_>, p: &mut Problems) -> Vec<Vip> {
    reader::table_list(e, &schema::VIP, p)
        .into_iter()
        .map(|mut f| {
            let v = vip(&mut f, p);
            f.finish(p);
            v
        })
        .collect()
}

fn vip(f: &mut Fields<'_>, p: &mut Problems) -> Vip {
    let mut v = Vip {
        span: f.span,
        ..Vip::default()
    };
    v.address = match f.require("address", p) {
        None => Val::Invalid,
        Some(e) => vip_address(&e, p).map_or(Val::Invalid, Val::Given),
    };
    v.proto = match f.require("proto", p) {
        None => Val::Invalid,
        Some(e) => e
            .word(p, schema::PROTOS, &[Proto::Tcp, Proto::Udp], "protocol")
            .map_or(Val::Invalid, Val::Given),
    };
    if let Some(e) = f.take("flags") {
        flags(&e, &mut v, p);
    }
    if let Some(e) = f.take("reals") {
        v.reals_span = Some(e.span);
        reals(&e, &mut v, p);
    }
    if let Some(e) = f.take("healthcheck") {
        v.healthcheck = super::health::read(&e, p);
        let any_port = matches!(&v.address, Val::Given(a) if a.value.1 == 0);
        if any_port && v.healthcheck.as_ref().is_some_and(|h| !h.port_given) {
            p.error(
                e.span,
                "this VIP takes every port: its health check must name the port to probe",
            )
            .help("add e.g. port = 80 to the healthcheck table");
        }
    }
    v
}

fn vip_address(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<(IpAddr, u16)>> {
    let s = e.string(p)?;
    let checked = values::addr_port(s.value)
        .and_then(|(a, port)| values::usable(a, "VIP").map(|_| (a, port)));
    match checked {
        Ok((a, port)) => {
            if let Some(v4) = values::ipv4_mapped(a) {
                p.warn(
                    s.span,
                    format!("VIP {a} is an IPv4-mapped IPv6 address: IPv4 clients reach {v4} over IPv4, so this VIP matches no traffic"),
                )
                .help(format!("for IPv4 clients write \"{v4}:{port}\""));
            }
            Some(Sp::new((a, port), s.span))
        }
        Err(b) => {
            e.report(b, p);
            None
        }
    }
}

fn flags(e: &Entry<'_>, v: &mut Vip, p: &mut Problems) {
    let Some(items) = e.array(p) else {
        return;
    };
    for item in &items {
        let Some(s) = item.string(p) else {
            continue;
        };
        let i = match values::one_of(s.value, schema::FLAGS, "flag") {
            Ok(i) => i,
            Err(b) => {
                item.report(b, p);
                continue;
            }
        };
        let name = schema::FLAGS[i];
        let f = &mut v.flags;
        let slot = match name {
            "no-src-port" => &mut f.no_src_port,
            "dport-hash" => &mut f.dport_hash,
            "no-conn-table" => &mut f.no_conn_table,
            "quic" => &mut f.quic,
            _ => &mut f.udp_flow_migration,
        };
        if *slot {
            p.error(s.span, format!("flag \"{name}\" is listed twice"))
                .help("list each flag once");
            continue;
        }
        *slot = true;
        v.flag_spans.push(Sp::new(name, s.span));
    }
}

fn reals(e: &Entry<'_>, v: &mut Vip, p: &mut Problems) {
    let entries: Vec<Entry<'_>> = match e.node {
        Node::Value(Value::Array(_)) => e.array(p).unwrap_or_default(),
        Node::Tables(a) => a
            .iter()
            .map(|t| Entry {
                what: "each `[[vip.reals]]`".into(),
                node: Node::Table(t),
                span: t.span().map_or(e.span, Into::into),
                key: e.key,
                example: e.example,
            })
            .collect(),
        _ => {
            e.wrong_type("an array", p);
            v.reals_invalid = true;
            return;
        }
    };
    for item in &entries {
        match real(item, p) {
            Some(r) => v.reals.push(r),
            None => v.reals_invalid = true,
        }
    }
}

/// A real: `"10.1.0.1"` or `{ address = "10.1.0.1", weight = 2 }`.
fn real(e: &Entry<'_>, p: &mut Problems) -> Option<Real> {
    let (addr_entry, weight) = match e.node {
        Node::Value(Value::String(_)) => (e.clone(), Some(schema::DEFAULT_WEIGHT)),
        Node::Value(Value::InlineTable(_)) | Node::Table(_) => {
            let mut f = Fields::of(e.node, e.span, &schema::REAL)?;
            let a = f.require("address", p);
            let w = match f.take("weight") {
                None => Some(schema::DEFAULT_WEIGHT),
                Some(w) => w
                    .integer_in::<u32>(
                        0,
                        i64::from(schema::MAX_WEIGHT),
                        "weights go from 0 (drain: no new flows) to 65535; a real gets new flows in proportion to its weight",
                        p,
                    )
                    .map(|w| w.value),
            };
            f.finish(p);
            (a?, w)
        }
        _ => {
            e.wrong_type(
                "an address string or an inline table { address = ..., weight = ... }",
                p,
            );
            return None;
        }
    };
    let s = addr_entry.string(p)?;
    let addr = values::ip(s.value).and_then(|a| values::usable(a, "real").map(|_| a));
    let addr = match addr {
        Ok(a) => a,
        Err(b) => {
            addr_entry.report(b, p);
            return None;
        }
    };
    if let Some(v4) = values::ipv4_mapped(addr) {
        p.warn(
            s.span,
            format!("real {addr} is an IPv4-mapped IPv6 address: it would be sent IPv6 packets"),
        )
        .help(format!("for an IPv4 real write \"{v4}\""));
    }
    Some(Real {
        addr: Sp::new(addr, s.span),
        weight,
    })
}
