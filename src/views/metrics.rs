//! Prometheus metrics for `katran run` (`[metrics]` in the file, or
//! `--metrics-address`): the counters of `katran stats` and the state
//! behind `katran status`, as labelled families with HELP on each —
//! verdicts by `action`, drops by `reason`, traffic by `vip` and by `real`,
//! each real's health and effective weight by (`vip`, `real`), reloads by
//! `result`, the configuration generation, the build, connection-table
//! fill — in OpenMetrics or the classic text format (encoded by
//! `prometheus-client`). Only GET and HEAD; there is no control API on the
//! network. The HTTP side, with its limits on slow and oversized requests,
//! is `metrics_server`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::files::status_file::DaemonStatus;
use crate::kernel::live::{self, Pins};
use crate::model::State;
use crate::views::conn_fill::Fill;
use crate::views::metrics_server::{self, Answer, Request};
use crate::views::stats::{Snapshot, COUNTERS};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A gauge family, registered with its help.
fn gauges(reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, i64)>) {
    let family: Family<Labels, Gauge> = Family::default();
    for (l, v) in rows {
        family.get_or_create(&l).set(v);
    }
    reg.register(name, help, family);
}

/// A counter family, registered with its help.
fn counters(reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, u64)>) {
    let family: Family<Labels, Counter> = Family::default();
    for (l, v) in rows {
        family.get_or_create(&l).inc_by(v);
    }
    reg.register(name, help, family);
}

/// Whether a dataplane is pinned, as a gauge: 0 says loudly that nothing
/// is balanced (someone ran `katran down` or moved the pins).
fn register_pinned(reg: &mut Registry, pinned: bool) {
    let g: Gauge = Gauge::default();
    g.set(i64::from(pinned));
    reg.register(
        "dataplane_pinned",
        "1 while the dataplane is pinned under the pin directory, 0 when it is gone",
        g,
    );
}

/// `katran_build_info{version,dataplane}`: this katran's version and the
/// pinned dataplane's build stamp (`none` when nothing is pinned).
fn register_build_info(reg: &mut Registry, dataplane: &str) {
    gauges(
        reg,
        "build_info",
        "Always 1: katran's version and the build stamp of the pinned dataplane",
        vec![(
            labels(&[("version", crate::version()), ("dataplane", dataplane)]),
            1,
        )],
    );
}

fn encoded(reg: &Registry) -> Result<String> {
    let mut out = String::new();
    encode(&mut out, reg).context("encoding metrics")?;
    Ok(out)
}

/// The exposition when no dataplane is pinned: that gauge at 0, the build.
pub fn render_missing() -> Result<String> {
    let mut reg = Registry::with_prefix("katran");
    register_pinned(&mut reg, false);
    register_build_info(&mut reg, "none");
    encoded(&reg)
}

/// Which build of the dataplane runs (label `build`), and which this
/// katran would load (`this_build`): they differ until the next apply
/// replaces the dataplane.
fn register_build(reg: &mut Registry, build: &str) {
    gauges(
        reg,
        "dataplane_build",
        "The pinned dataplane's build stamp and this katran's",
        vec![(
            labels(&[("build", build), ("this_build", crate::kernel::bpf::STAMP)]),
            1,
        )],
    );
}

/// Everything one scrape shows.
pub struct Inputs<'a> {
    pub snapshot: &'a Snapshot,
    /// The pinned dataplane's build stamp.
    pub build: &'a str,
    /// The configuration read back from the maps (`None`: nothing applied).
    pub live: Option<&'a State>,
    /// What the daemon reports (reloads, health), when it runs.
    pub daemon: Option<&'a DaemonStatus>,
    pub conn: &'a [Fill],
    /// Announced VIP addresses: (routing table, address).
    pub announced: &'a [(u32, std::net::IpAddr)],
}

/// Global counters that are one family with a label: (family, help,
/// label, counter-name prefix). Every other counter is a family of its own.
const LABELLED: &[(&str, &str, &str, &str)] = &[
    (
        "xdp_verdicts",
        "Frames by XDP verdict: pass (to the kernel), tx (forwarded to a real or answered), drop",
        "action",
        "xdp_",
    ),
    (
        "drops",
        "Frames dropped, by reason (see katran stats and docs/dataplane.md)",
        "reason",
        "drop_",
    ),
];

fn register_global(reg: &mut Registry, s: &Snapshot) {
    let value = |name: &str| s.global.get(name).copied().unwrap_or(0);
    for (family, help, label, prefix) in LABELLED {
        let rows = COUNTERS
            .iter()
            .filter_map(|(name, _, _)| Some((name.strip_prefix(prefix)?, value(name))))
            .map(|(l, v)| (labels(&[(label, l)]), v))
            .collect();
        counters(reg, family, help, rows);
    }
    for (name, _, help) in COUNTERS {
        if LABELLED.iter().any(|(_, _, _, p)| name.starts_with(p)) {
            continue;
        }
        let c: Counter = Counter::default();
        c.inc_by(value(name));
        reg.register(*name, *help, c);
    }
}

/// `katran_<family>_packets_total` and `_bytes_total`, one row per label set.
fn traffic(
    reg: &mut Registry,
    family: &str,
    help: (&str, &str),
    rows: Vec<(Labels, &crate::views::stats::Traffic)>,
) {
    let pick = |f: fn(&crate::views::stats::Traffic) -> u64| {
        rows.iter().map(|(l, t)| (l.clone(), f(t))).collect()
    };
    counters(
        reg,
        &format!("{family}_packets"),
        help.0,
        pick(|t| t.packets),
    );
    counters(reg, &format!("{family}_bytes"), help.1, pick(|t| t.bytes));
}

fn register_traffic(reg: &mut Registry, s: &Snapshot) {
    let vips = s
        .vips
        .iter()
        .map(|(k, t)| (labels(&[("vip", k)]), t))
        .collect();
    traffic(
        reg,
        "vip",
        ("Packets forwarded per VIP", "IP bytes forwarded per VIP"),
        vips,
    );
    let reals = s
        .reals
        .iter()
        .map(|(k, t)| (labels(&[("real", &k.to_string())]), t))
        .collect();
    traffic(
        reg,
        "real",
        (
            "Packets forwarded per real, over all its VIPs (the dataplane counts by real)",
            "IP bytes forwarded per real, over all its VIPs",
        ),
        reals,
    );
    if s.vip_reals.is_empty() {
        return;
    }
    let pairs = s
        .vip_reals
        .iter()
        .map(|((v, r), t)| (labels(&[("vip", v), ("real", &r.to_string())]), t))
        .collect();
    traffic(
        reg,
        "vip_real",
        (
            "Packets forwarded per (VIP, real) (counted when the file sets vip_real_counters)",
            "IP bytes forwarded per (VIP, real)",
        ),
        pairs,
    );
}

/// Per (vip, real): the weight in the file, the weight the ring is built
/// with, and health.
fn register_reals(reg: &mut Registry, live: &State, daemon: Option<&DaemonStatus>) {
    let health: BTreeMap<(&str, &str), bool> = daemon
        .iter()
        .flat_map(|d| d.health.iter())
        .map(|(v, r, h)| ((v.as_str(), r.as_str()), h.healthy))
        .collect();
    let (mut weight, mut effective, mut healthy) = (Vec::new(), Vec::new(), Vec::new());
    for v in &live.vips {
        let vip = v.key.to_string();
        for r in &v.reals {
            let real = r.addr.to_string();
            let l = labels(&[("vip", &vip), ("real", &real)]);
            let drained = live.drained.contains(&(v.key, r.addr));
            let ok = health
                .get(&(vip.as_str(), real.as_str()))
                .copied()
                .unwrap_or(!drained);
            weight.push((l.clone(), i64::from(r.weight)));
            effective.push((l.clone(), i64::from(live.ring_weight(&v.key, r))));
            healthy.push((l, i64::from(ok)));
        }
    }
    gauges(
        reg,
        "real_weight",
        "Each real's weight in its VIP as the file gives it",
        weight,
    );
    gauges(
        reg,
        "real_effective_weight",
        "The weight each real's share of its VIP's ring is built with: 0 while drained by a failing health check",
        effective,
    );
    gauges(
        reg,
        "real_healthy",
        "1 while the real passes its VIP's health check (or the VIP has none and it is not drained), 0 while it fails",
        healthy,
    );
}

fn register_daemon(reg: &mut Registry, d: Option<&DaemonStatus>) {
    let get = |f: fn(&DaemonStatus) -> u64| d.map_or(0, f);
    counters(
        reg,
        "reloads",
        "Reloads of the file by the daemon (file changes, SIGHUP), by result: ok or failed",
        vec![
            (labels(&[("result", "ok")]), get(|d| d.reloads_ok)),
            (labels(&[("result", "failed")]), get(|d| d.reloads_failed)),
        ],
    );
    let one = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        reg.register(name, help, g);
    };
    one(
        reg,
        "config_generation",
        "Configurations the daemon applied since it started (start, good reloads, health and gateway changes)",
        get(|d| d.generation),
    );
    one(
        reg,
        "reload_failures_in_a_row",
        "Failed reloads since the last good one (the last good configuration stays in force)",
        get(|d| d.failures),
    );
    one(
        reg,
        "last_applied_timestamp_seconds",
        "Unix time of the last configuration the daemon applied (0: none)",
        d.and_then(|d| d.last_applied.as_ref()).map_or(0, |e| e.at),
    );
}

fn register_conn(reg: &mut Registry, fill: &[Fill]) {
    let row = |f: &Fill, v: u64| {
        (
            labels(&[("table", f.table)]),
            i64::try_from(v).unwrap_or(i64::MAX),
        )
    };
    gauges(
        reg,
        "conn_table_capacity",
        "Flows a connection table holds: per-cpu over every CPU with a table of its own, and shared",
        fill.iter().map(|f| row(f, f.capacity)).collect(),
    );
    gauges(
        reg,
        "conn_table_entries",
        "Flows in a connection table now (tables above 262144 sets or keys are not counted)",
        fill.iter()
            .filter_map(|f| Some(row(f, f.entries?)))
            .collect(),
    );
}

/// The OpenMetrics exposition of one scrape.
pub fn render(i: &Inputs<'_>) -> Result<String> {
    let mut reg = Registry::with_prefix("katran");
    register_pinned(&mut reg, true);
    register_build(&mut reg, i.build);
    register_build_info(&mut reg, i.build);
    register_global(&mut reg, i.snapshot);
    register_traffic(&mut reg, i.snapshot);
    if let Some(live) = i.live {
        register_reals(&mut reg, live, i.daemon);
    }
    register_daemon(&mut reg, i.daemon);
    register_conn(&mut reg, i.conn);
    gauges(
        &mut reg,
        "announced",
        "VIP addresses announced to the routers ([announce]), by routing table",
        i.announced
            .iter()
            .map(|(t, a)| {
                (
                    labels(&[("address", &a.to_string()), ("table", &t.to_string())]),
                    1,
                )
            })
            .collect(),
    );
    encoded(&reg)
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition: counter
/// families are named with their `_total` suffix, and OpenMetrics-only
/// lines (`# UNIT`, `# EOF`) go. Samples are the same in both.
pub fn to_text_004(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One scrape of the dataplane pinned at `pins`.
fn scrape(pins: &Pins, status_file: Option<&PathBuf>) -> Result<String> {
    let Some(store) = live::open(pins)? else {
        return render_missing();
    };
    let build = live::stamp(pins)?.unwrap_or_else(|| "unstamped".into());
    let snapshot = crate::views::stats::snapshot(&store)?;
    let state = crate::apply::read_live(&store)?;
    let daemon = status_file.and_then(|f| DaemonStatus::read(f).ok());
    let conn = crate::views::conn_fill::read(&store)?;
    let announced = crate::kernel::netlink::katran_routes().unwrap_or_default();
    render(&Inputs {
        snapshot: &snapshot,
        build: &build,
        live: state.as_ref(),
        daemon: daemon.as_ref(),
        conn: &conn,
        announced: &announced,
    })
}

/// The answer to one request: `/metrics` in OpenMetrics when the client
/// accepts it (Prometheus does), in the classic text format otherwise.
fn answer(req: &Request, pins: &Pins, status_file: Option<&PathBuf>) -> Answer {
    if req.method != "GET" && req.method != "HEAD" {
        return Answer::text("405 Method Not Allowed", "GET or HEAD\n");
    }
    if req.path == "/" {
        return Answer::text("200 OK", "katran: metrics at /metrics\n");
    }
    if req.path != "/metrics" {
        return Answer::text("404 Not Found", "metrics are at /metrics\n");
    }
    match scrape(pins, status_file) {
        Ok(body) if req.accept.contains("application/openmetrics-text") => Answer {
            status: "200 OK",
            content_type: OPENMETRICS,
            body,
        },
        Ok(body) => Answer {
            status: "200 OK",
            content_type: TEXT_004,
            body: to_text_004(&body),
        },
        Err(e) => Answer::text("503 Service Unavailable", format!("{e:#}\n")),
    }
}

/// `--metrics-address` serves on loopback only (another address must be
/// written in the file's `[metrics]`).
pub fn loopback_only(addr: SocketAddr) -> Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        bail!(
            "--metrics-address serves on loopback only; {addr} is not a loopback address \
             (to serve elsewhere, write it in the file: [metrics] address = \"{addr}\")"
        );
    }
    Ok(addr)
}

/// Binds `addr` and serves metrics from a thread (see
/// [`crate::views::metrics_server`] for the limits), with the daemon's reloads
/// and health from `status_file`; returns the bound address.
pub fn serve(
    addr: SocketAddr,
    pin_dir: PathBuf,
    status_file: Option<PathBuf>,
) -> Result<SocketAddr> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("binding the metrics address {addr}"))?;
    let bound = listener.local_addr()?;
    std::thread::spawn(move || {
        let pins = Pins::new(&pin_dir);
        metrics_server::run(listener, move |req| {
            answer(req, &pins, status_file.as_ref())
        });
    });
    Ok(bound)
}
