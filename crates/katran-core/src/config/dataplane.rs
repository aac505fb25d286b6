//! Reading `[dataplane]`: each key checked on its own (type, range, form).
//! Whether keys agree with each other and with the VIPs is `validate`'s job.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use toml_edit::Value;

use crate::model::RingKind;

use super::draft::{Dataplane, EncapKind, Val};
use super::reader::{Entry, Fields, Node};
use super::schema;
use super::settings::{Gateway, XdpMode};
use super::source::{Problems, Sp};
use super::values::{self, Bad};

pub fn read(f: &mut Fields<'_>, p: &mut Problems) -> Dataplane {
    let mut d = Dataplane {
        span: f.span,
        ..Dataplane::default()
    };
    match f.require("interfaces", p) {
        None => d.interfaces = Val::Invalid,
        Some(e) => d.interfaces = interfaces(&e, p).map_or(Val::Invalid, Val::Given),
    }
    d.xdp_mode = f.read("xdp_mode", p, |e, p| {
        e.word(
            p,
            schema::XDP_MODES,
            &[XdpMode::Native, XdpMode::Generic, XdpMode::Auto],
            "XDP mode",
        )
    });
    d.gateway = f.read("gateway_mac", p, |e, p| {
        e.parsed(p, |s| match s {
            "auto" => Ok(Gateway::Auto),
            _ => values::mac(s).map(Gateway::Mac),
        })
    });
    d.encap = f.read("encap", p, |e, p| {
        e.word(
            p,
            schema::ENCAPS,
            &[EncapKind::Ipip, EncapKind::Gue],
            "encapsulation",
        )
    });
    for name in ["gue_port", "gue_source_v4", "gue_source_v6"] {
        if let Some(e) = f.peek_key(name) {
            d.gue_keys.push(Sp::new(name, e));
        }
    }
    d.gue_port = f.read("gue_port", p, |e, p| {
        e.integer_in(1, 65_535, "GUE ports go from 1 to 65535", p)
    });
    d.gue_source_v4 = f.read("gue_source_v4", p, |e, p| {
        e.parsed(p, |s| match values::ip(s)? {
            IpAddr::V4(a) => values::usable(a.into(), "GUE source").map(|_| a),
            IpAddr::V6(_) => Err(Bad {
                message: format!("`gue_source_v4` must be an IPv4 address, not {s}"),
                help: "put the IPv6 source in gue_source_v6".into(),
            }),
        })
    });
    d.gue_source_v6 = f.read("gue_source_v6", p, |e, p| {
        e.parsed(p, |s| match values::ip(s)? {
            IpAddr::V6(a) => values::usable(a.into(), "GUE source").map(|_| a),
            IpAddr::V4(_) => Err(Bad {
                message: format!("`gue_source_v6` must be an IPv6 address, not {s}"),
                help: "put the IPv4 source in gue_source_v4".into(),
            }),
        })
    });
    d.ring = f.read("ring", p, |e, p| {
        e.word(
            p,
            schema::RINGS,
            &[RingKind::MaglevV2, RingKind::MaglevV1],
            "ring",
        )
    });
    d.ring_size = f.read("ring_size", p, ring_size);
    d.max_vips = f.read("max_vips", p, |e, p| {
        let hi = i64::from(schema::MAX_MAX_VIPS);
        e.integer_in(
            1,
            hi,
            "max_vips sizes the VIP maps: at least 1, at most 65536",
            p,
        )
    });
    d.max_reals = f.read("max_reals", p, |e, p| {
        let hi = i64::from(schema::MAX_MAX_REALS);
        e.integer_in(
            1,
            hi,
            "max_reals sizes the reals map: at least 1, at most 1048576",
            p,
        )
    });
    d.conn_table_size = f.read("conn_table_size", p, |e, p| {
        e.integer_in(
            i64::from(schema::MIN_CONN_TABLE_SIZE),
            i64::from(schema::MAX_CONN_TABLE_SIZE),
            "conn_table_size counts flow entries per CPU or of the shared table (56 bytes each)",
            p,
        )
    });
    d.forwarding_cpus = f.read("forwarding_cpus", p, forwarding_cpus);
    d.vip_real_counters = f.read("vip_real_counters", p, |e, p| e.boolean(p));
    if let Some(on) = d.vip_real_counters.given().filter(|on| on.value) {
        let vips = d.max_vips.value_or(schema::DEFAULT_MAX_VIPS);
        let reals = d.max_reals.value_or(schema::DEFAULT_MAX_REALS);
        if u64::from(vips) * (u64::from(reals) + 1) > u64::from(u32::MAX) {
            p.error(
                on.span,
                format!(
                    "per-(VIP, real) counters need max_vips x (max_reals + 1) entries, \
                     {vips} x {} is more than a map holds",
                    u64::from(reals) + 1
                ),
            )
            .help("lower max_vips or max_reals, or remove vip_real_counters");
        }
    }
    d.shared_conn_table = f.read("conn_table", p, |e, p| {
        e.word(
            p,
            schema::CONN_TABLES,
            &[false, true],
            "connection table kind",
        )
    });
    if let (Some(shared), Some(cpus)) = (d.shared_conn_table.given(), d.forwarding_cpus.given()) {
        if shared.value {
            p.error(
                cpus.span,
                "`forwarding_cpus` only applies to per-CPU connection tables",
            )
            .help("remove forwarding_cpus, or write conn_table = \"per-cpu\"");
        }
    }
    d.outer_source_v4_prefix = f.read("outer_source_v4_prefix", p, |e, p| e.parsed(p, v4_prefix));
    d.outer_source_v6_prefix = f.read("outer_source_v6_prefix", p, |e, p| e.parsed(p, v6_prefix));
    d.tcp_server_id = f.read("tcp_server_id", p, tcp_server_id);
    d.max_conn_rate = f.read("max_conn_rate", p, |e, p| {
        e.integer_in(
            0,
            i64::from(u32::MAX),
            "new flows per second per CPU; 0 means no limit",
            p,
        )
    });
    d.udp_timeout_s = f.read("udp_timeout", p, udp_timeout);
    d.max_frame_len = f.read("max_frame_len", p, max_frame_len);
    d.pin_dir = f.read("pin_dir", p, |e, p| e.parsed(p, pin_dir));
    d
}

fn interfaces(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<Vec<String>>> {
    let items = e.array(p)?;
    if items.is_empty() {
        p.error(e.span, "`interfaces` is empty")
            .help("name at least one interface to attach to, e.g. interfaces = [\"eth0\"]");
        return None;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut names = Vec::new();
    let mut ok = true;
    for item in &items {
        let Some(s) = item.string(p) else {
            ok = false;
            continue;
        };
        if let Err(b) = values::interface_name(s.value) {
            item.report(b, p);
            ok = false;
            continue;
        }
        if seen.insert(s.value, s.span.start).is_some() {
            p.error(s.span, format!("interface \"{}\" is listed twice", s.value))
                .help("list each interface once");
            ok = false;
            continue;
        }
        names.push(s.value.to_string());
    }
    ok.then(|| Sp::new(names, e.span))
}

fn ring_size(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<u32>> {
    let lo = schema::MIN_RING_SIZE;
    let hi = schema::MAX_RING_SIZE;
    let n: Sp<u32> = e.integer_in(
        i64::from(lo),
        i64::from(hi),
        "the ring size is a prime from 17 to 1000003; 65537 suits up to a few hundred reals per VIP",
        p,
    )?;
    if values::is_prime(n.value) {
        return Some(n);
    }
    let help = match values::primes_around(n.value) {
        (Some(a), Some(b)) => {
            format!("Maglev needs a prime ring size; the nearest are {a} and {b}")
        }
        (Some(a), None) | (None, Some(a)) => {
            format!("Maglev needs a prime ring size; the nearest is {a}")
        }
        (None, None) => "Maglev needs a prime ring size, e.g. 65537".to_string(),
    };
    p.error(n.span, format!("`ring_size` {} is not a prime", n.value))
        .help(help);
    None
}

fn forwarding_cpus(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<Vec<u32>>> {
    let items = e.array(p)?;
    if items.is_empty() {
        p.error(e.span, "`forwarding_cpus` is empty")
            .help("leave forwarding_cpus out to give every CPU its own connection table");
        return None;
    }
    let mut cpus: Vec<u32> = Vec::new();
    let mut ok = true;
    for item in &items {
        let Some(c) = item.integer_in::<u32>(
            0,
            i64::from(schema::MAX_CPU),
            "CPU numbers go from 0 to 8191",
            p,
        ) else {
            ok = false;
            continue;
        };
        if cpus.contains(&c.value) {
            p.error(c.span, format!("CPU {} is listed twice", c.value))
                .help("list each CPU once");
            ok = false;
            continue;
        }
        cpus.push(c.value);
    }
    ok.then(|| Sp::new(cpus, e.span))
}

fn v4_prefix(s: &str) -> Result<Ipv4Addr, Bad> {
    let a = match values::ip(s)? {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => {
            return Err(Bad {
                message: format!("`outer_source_v4_prefix` must be an IPv4 address, not {s}"),
                help: "put the IPv6 prefix in outer_source_v6_prefix".into(),
            })
        }
    };
    let o = a.octets();
    if o[2] != 0 || o[3] != 0 {
        return Err(Bad {
            message: format!("only the first two bytes of `outer_source_v4_prefix` are used, but {a} sets the last two"),
            help: format!(
                "write \"{}.{}.0.0\"; the last two bytes of each outer source come from the flow",
                o[0], o[1]
            ),
        });
    }
    Ok(a)
}

fn v6_prefix(s: &str) -> Result<Ipv6Addr, Bad> {
    let a = match values::ip(s)? {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => {
            return Err(Bad {
                message: format!("`outer_source_v6_prefix` must be an IPv6 address, not {s}"),
                help: "put the IPv4 prefix in outer_source_v4_prefix".into(),
            })
        }
    };
    let seg = a.segments();
    if seg[6] != 0 || seg[7] != 0 {
        let mut kept = seg;
        kept[6] = 0;
        kept[7] = 0;
        return Err(Bad {
            message: format!("only the first twelve bytes of `outer_source_v6_prefix` are used, but {a} sets the last four"),
            help: format!(
                "write \"{}\"; the last four bytes of each outer source come from the flow",
                Ipv6Addr::from(kept)
            ),
        });
    }
    Ok(a)
}

fn tcp_server_id(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<Option<u8>>> {
    match e.node {
        Node::Value(Value::Boolean(b)) => Some(Sp::new(
            b.value().then_some(schema::DEFAULT_TCP_SERVER_ID_KIND),
            e.span,
        )),
        Node::Value(Value::Integer(i)) => match values::tcp_option_kind(*i.value()) {
            Ok(k) => Some(Sp::new(Some(k), e.span)),
            Err(b) => {
                e.report(b, p);
                None
            }
        },
        _ => {
            e.wrong_type("a boolean or an option kind (integer)", p);
            None
        }
    }
}

fn udp_timeout(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<u32>> {
    let secs = match e.node {
        Node::Value(Value::Integer(i)) => {
            let n = *i.value();
            u64::try_from(n).unwrap_or(0)
        }
        Node::Value(Value::String(s)) => match values::duration_s(s.value()) {
            Ok(n) => n,
            Err(b) => {
                e.report(b, p);
                return None;
            }
        },
        _ => {
            e.wrong_type("a duration (\"30s\") or seconds (integer)", p);
            return None;
        }
    };
    if !(schema::MIN_UDP_TIMEOUT_S..=schema::MAX_UDP_TIMEOUT_S).contains(&secs) {
        p.error(e.span, "`udp_timeout` must be from 1 second to 24 hours")
            .help("write e.g. udp_timeout = \"30s\"");
        return None;
    }
    u32::try_from(secs).ok().map(|s| Sp::new(s, e.span))
}

fn max_frame_len(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<u16>> {
    let n = e.integer(p)?;
    match u16::try_from(n.value) {
        Ok(v) if v == 0 || i64::from(v) >= schema::MIN_FRAME_LEN => Some(Sp::new(v, n.span)),
        _ => {
            p.error(
                n.span,
                format!("`max_frame_len` must be 0 or from 60 to 65535, not {}", n.value),
            )
            .help("the longest Ethernet frame (without FCS) to forward, e.g. 1514 for a 1500-byte MTU; 0 means no limit");
            None
        }
    }
}

/// Pins live on the bpf filesystem: `pin_dir` must name a directory below
/// `/sys/fs/bpf`, written plainly (no `.` or `..`, no empty component), so
/// that what `check` accepts is where apply pins. Apply also checks the
/// real filesystem type.
fn pin_dir(s: &str) -> Result<PathBuf, Bad> {
    const HELP: &str = "write a directory on the bpf filesystem, e.g. \"/sys/fs/bpf/katran\"";
    if !s.starts_with('/') || s.contains('\0') {
        return Err(Bad {
            message: format!("`pin_dir` \"{s}\" is not an absolute path"),
            help: HELP.into(),
        });
    }
    let rest = s.trim_end_matches('/').strip_prefix("/sys/fs/bpf/");
    let plain = rest.is_some_and(|r| {
        !r.is_empty() && r.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
    });
    if !plain {
        return Err(Bad {
            message: format!(
                "`pin_dir` \"{s}\" is not a plain path below /sys/fs/bpf/ (the bpf filesystem)"
            ),
            help: HELP.into(),
        });
    }
    Ok(PathBuf::from(s))
}
