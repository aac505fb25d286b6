//! `gateway_mac = "auto"`: the MAC of the default route's next hop, asked
//! of the kernel (through iproute2) at apply time.

use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::model::MacAddr;

fn ip_json(args: &[&str]) -> Result<Value> {
    let out = Command::new("ip")
        .args(["-j"])
        .args(args)
        .output()
        .context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("parsing `ip -j {}`", args.join(" ")))
}

fn neighbour(gw: &str, dev: &str) -> Result<Option<MacAddr>> {
    let v = ip_json(&["neigh", "show", "to", gw, "dev", dev])?;
    let mac = v
        .as_array()
        .and_then(|a| a.iter().find_map(|n| n.get("lladdr")?.as_str()))
        .map(|s| s.parse::<MacAddr>());
    match mac {
        Some(Ok(m)) => Ok(Some(m)),
        Some(Err(e)) => bail!("neighbour {gw} on {dev}: {e}"),
        None => Ok(None),
    }
}

/// The default route's gateway MAC (IPv4 default route first, then IPv6).
pub fn resolve() -> Result<MacAddr> {
    for family in ["-4", "-6"] {
        let routes = ip_json(&[family, "route", "show", "default"])?;
        let Some(route) = routes.as_array().and_then(|a| a.first()) else {
            continue;
        };
        let (Some(gw), Some(dev)) = (route["gateway"].as_str(), route["dev"].as_str()) else {
            continue;
        };
        if let Some(mac) = neighbour(gw, dev)? {
            return Ok(mac);
        }
        // Not resolved yet: a datagram to the discard port makes the kernel ask.
        let addr: IpAddr = gw
            .parse()
            .with_context(|| format!("gateway address {gw}"))?;
        let bind = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        if let Ok(sock) = UdpSocket::bind(bind) {
            let _ = sock.send_to(b"", (addr, 9));
        }
        for _ in 0..20 {
            sleep(Duration::from_millis(50));
            if let Some(mac) = neighbour(gw, dev)? {
                return Ok(mac);
            }
        }
        bail!(
            "the default gateway {gw} on {dev} did not answer ARP/ND; set gateway_mac in the file"
        );
    }
    bail!("no default route to take the gateway MAC from; set gateway_mac in the file")
}
