//! Prometheus metrics for `katran run --metrics-address`: the counters of
//! `katran stats`, with `vip` / `real` labels, in the text exposition format
//! (encoded by `prometheus-client`). Served only on loopback and only
//! `GET /metrics`: there is no control API on the network. The HTTP side,
//! with its limits on slow and oversized requests, is `metrics_server`.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::live::{self, Pins};
use crate::metrics_server::{self, Answer, Request};
use crate::stats::{Snapshot, COUNTERS};

type Labels = Vec<(String, String)>;

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

/// The exposition when no dataplane is pinned: only the gauge, at 0.
pub fn render_missing() -> Result<String> {
    let mut reg = Registry::with_prefix("katran");
    register_pinned(&mut reg, false);
    let mut out = String::new();
    encode(&mut out, &reg).context("encoding metrics")?;
    Ok(out)
}

/// Which build of the dataplane runs (label `build`), and which this
/// katran would load (`this_build`): they differ until the next apply
/// replaces the dataplane.
fn register_build(reg: &mut Registry, build: &str) {
    let info: Family<Labels, Gauge> = Family::default();
    info.get_or_create(&vec![
        ("build".to_string(), build.to_string()),
        ("this_build".to_string(), crate::bpf::STAMP.to_string()),
    ])
    .set(1);
    reg.register(
        "dataplane_build",
        "The pinned dataplane's build stamp and this katran's",
        info,
    );
}

/// The text exposition of one snapshot of the dataplane of build `build`.
pub fn render(s: &Snapshot, build: &str) -> Result<String> {
    let mut reg = Registry::with_prefix("katran");
    register_pinned(&mut reg, true);
    register_build(&mut reg, build);
    for (name, _, help) in COUNTERS {
        let c: Counter = Counter::default();
        c.inc_by(s.global.get(name).copied().unwrap_or(0));
        reg.register(*name, *help, c);
    }
    let vip_p: Family<Labels, Counter> = Family::default();
    let vip_b: Family<Labels, Counter> = Family::default();
    for (vip, t) in &s.vips {
        let l = vec![("vip".to_string(), vip.clone())];
        vip_p.get_or_create(&l).inc_by(t.packets);
        vip_b.get_or_create(&l).inc_by(t.bytes);
    }
    reg.register("vip_packets", "Packets forwarded per VIP", vip_p);
    reg.register("vip_bytes", "IP bytes forwarded per VIP", vip_b);
    let real_p: Family<Labels, Counter> = Family::default();
    let real_b: Family<Labels, Counter> = Family::default();
    for (real, t) in &s.reals {
        let l = vec![("real".to_string(), real.to_string())];
        real_p.get_or_create(&l).inc_by(t.packets);
        real_b.get_or_create(&l).inc_by(t.bytes);
    }
    reg.register("real_packets", "Packets forwarded per real", real_p);
    reg.register("real_bytes", "IP bytes forwarded per real", real_b);
    let announced: Family<Labels, Gauge> = Family::default();
    for (table, addr) in crate::netlink::katran_routes().unwrap_or_default() {
        announced
            .get_or_create(&vec![
                ("address".to_string(), addr.to_string()),
                ("table".to_string(), table.to_string()),
            ])
            .set(1);
    }
    reg.register(
        "announced",
        "VIP addresses announced to the routers ([announce]), by routing table",
        announced,
    );
    let mut out = String::new();
    encode(&mut out, &reg).context("encoding metrics")?;
    Ok(out)
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

/// The answer to one request: `/metrics` in OpenMetrics when the client
/// accepts it (Prometheus does), in the classic text format otherwise.
fn answer(req: &Request, pins: &Pins) -> Answer {
    if req.method != "GET" && req.method != "HEAD" {
        return Answer::text("405 Method Not Allowed", "GET or HEAD\n");
    }
    if req.path == "/" {
        return Answer::text("200 OK", "katran: metrics at /metrics\n");
    }
    if req.path != "/metrics" {
        return Answer::text("404 Not Found", "metrics are at /metrics\n");
    }
    let body = live::open(pins).and_then(|s| match s {
        Some(s) => {
            let build = live::stamp(pins)?.unwrap_or_else(|| "unstamped".into());
            render(&crate::stats::snapshot(&s)?, &build)
        }
        None => render_missing(),
    });
    match body {
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

/// Binds `addr` (loopback only) and serves metrics from a thread (see
/// [`crate::metrics_server`] for the limits); returns the bound address.
pub fn serve(addr: SocketAddr, pin_dir: PathBuf) -> Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        bail!("metrics are served on loopback only; {addr} is not a loopback address");
    }
    let listener =
        TcpListener::bind(addr).with_context(|| format!("binding the metrics address {addr}"))?;
    let bound = listener.local_addr()?;
    std::thread::spawn(move || {
        let pins = Pins::new(&pin_dir);
        metrics_server::run(listener, move |line| answer(line, &pins));
    });
    Ok(bound)
}
