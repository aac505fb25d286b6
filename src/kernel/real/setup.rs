//! Host preparation for a real server: the VIP must be a local address (on
//! `lo`, so the real answers for it without announcing it on the network),
//! and reverse-path filtering must not drop decapsulated packets, whose
//! client source arrived through a tunnel the routing table knows nothing of.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};

use crate::kernel::netlink;

/// Puts `vip` on `lo` (as /32 or /128) and turns reverse-path filtering off
/// on `all`, `default` and every interface. Idempotent.
pub fn setup(vip: IpAddr) -> Result<()> {
    netlink::set_up("lo")?;
    let prefix = if vip.is_ipv4() { 32 } else { 128 };
    netlink::replace_address("lo", vip, prefix)?;
    disable_rp_filter()
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
