//! Prometheus metrics for `katran run --metrics-address`: the counters of
//! `katran stats`, with `vip` / `real` labels, in the text exposition format
//! (encoded by `prometheus-client`). Served only on loopback and only
//! `GET /metrics`: there is no control API on the network.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::live::{self, Pins};
use crate::stats::{Snapshot, COUNTERS};

type Labels = Vec<(String, String)>;

/// The text exposition of one snapshot.
pub fn render(s: &Snapshot) -> Result<String> {
    let mut reg = Registry::with_prefix("katran");
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
    let mut out = String::new();
    encode(&mut out, &reg).context("encoding metrics")?;
    Ok(out)
}

fn respond(mut stream: TcpStream, pins: &Pins) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let (status, body) = if line.starts_with("GET /metrics ") {
        match live::open(pins).and_then(|s| {
            let s = s.context("no dataplane pinned")?;
            render(&crate::stats::snapshot(&s)?)
        }) {
            Ok(body) => ("200 OK", body),
            Err(e) => ("503 Service Unavailable", format!("{e:#}\n")),
        }
    } else {
        ("404 Not Found", "only GET /metrics\n".to_string())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// Binds `addr` (loopback only) and serves metrics from a thread; returns
/// the bound address.
pub fn serve(addr: SocketAddr, pin_dir: PathBuf) -> Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        bail!("metrics are served on loopback only; {addr} is not a loopback address");
    }
    let listener =
        TcpListener::bind(addr).with_context(|| format!("binding the metrics address {addr}"))?;
    let bound = listener.local_addr()?;
    std::thread::spawn(move || {
        let pins = Pins::new(&pin_dir);
        for stream in listener.incoming().flatten() {
            if let Err(e) = respond(stream, &pins) {
                log::debug!("metrics request: {e:#}");
            }
        }
    });
    Ok(bound)
}
