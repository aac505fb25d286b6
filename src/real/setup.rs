//! Host preparation for a real server: the VIP must be a local address (on
//! `lo`, so the real answers for it without announcing it on the network),
//! and reverse-path filtering must not drop decapsulated packets, whose
//! client source arrived through a tunnel the routing table knows nothing of.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Puts `vip` on `lo` (as /32 or /128) and turns reverse-path filtering off
/// on `all`, `default` and every interface. Idempotent.
pub fn setup(vip: IpAddr) -> Result<()> {
    ip(&["link", "set", "dev", "lo", "up"])?;
    let (family, prefix) = match vip {
        IpAddr::V4(_) => ("-4", 32),
        IpAddr::V6(_) => ("-6", 128),
    };
    let addr = format!("{vip}/{prefix}");
    ip(&[family, "addr", "replace", &addr, "dev", "lo"])
        .with_context(|| format!("putting VIP {vip} on lo"))?;
    disable_rp_filter()
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn disable_rp_filter() -> Result<()> {
    let conf = Path::new("/proc/sys/net/ipv4/conf");
    let entries = fs::read_dir(conf).with_context(|| format!("listing {}", conf.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", conf.display()))?
            .path()
            .join("rp_filter");
        fs::write(&path, "0").with_context(|| format!("writing 0 to {}", path.display()))?;
    }
    Ok(())
}
