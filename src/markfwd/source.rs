//! The interface health-check frames leave by, as iproute2 describes it
//! (`ip -j addr show dev IF`): whether it is Ethernet, and the addresses
//! the outer headers are sent from.
//!
//! The default outer source of each family is the interface's first address
//! of global scope in the order `ip` lists them (the primary address first),
//! skipping IPv6 addresses that are tentative, failed duplicate detection or
//! are temporary (privacy) addresses. The real must route its answers back
//! to that address, as it routes answers to any host. Callers may override
//! either family by setting the fields of [`Sources`] before `ensure`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Outer source addresses, per family; `None`: reals of that family are
/// unreachable (their marked frames are dropped and counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl Sources {
    /// The default sources: the first usable address of each family on `iface`.
    pub fn of_interface(iface: &str) -> Result<Sources> {
        Ok(interface(iface)?.sources)
    }

    /// Whether a real of `addr`'s family has an outer source.
    pub fn covers(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(_) => self.v4.is_some(),
            IpAddr::V6(_) => self.v6.is_some(),
        }
    }
}

/// What `ensure` needs to know about an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// `link_type` is `ether`: the program rewrites an Ethernet header.
    pub ether: bool,
    pub sources: Sources,
}

/// Asks iproute2 about `iface` (in the calling thread's network namespace).
pub fn interface(iface: &str) -> Result<Interface> {
    let out = Command::new("ip")
        .args(["-j", "addr", "show", "dev", iface])
        .output()
        .context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip -j addr show dev {iface}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("parsing `ip -j addr show dev {iface}`"))?;
    parse(&v).with_context(|| format!("no interface {iface} in `ip -j addr` output"))
}

/// Reads the first entry of `ip -j addr show dev IF` output.
pub fn parse(v: &Value) -> Option<Interface> {
    let link = v.as_array()?.first()?;
    let addrs = link["addr_info"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let usable = |a: &&Value| {
        a["scope"].as_str() == Some("global")
            && ["tentative", "dadfailed", "temporary"]
                .iter()
                .all(|f| a[*f].as_bool() != Some(true))
    };
    let first = |family: &str| {
        addrs
            .iter()
            .filter(|a| a["family"].as_str() == Some(family))
            .filter(usable)
            .find_map(|a| a["local"].as_str()?.parse::<IpAddr>().ok())
    };
    Some(Interface {
        ether: link["link_type"].as_str() == Some("ether"),
        sources: Sources {
            v4: match first("inet") {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            },
            v6: match first("inet6") {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_global_address_of_each_family() {
        let v: Value = serde_json::from_str(
            r#"[{"ifname":"eth0","link_type":"ether","addr_info":[
                {"family":"inet","local":"169.254.1.1","scope":"link"},
                {"family":"inet","local":"10.0.0.5","scope":"global"},
                {"family":"inet","local":"10.0.0.6","scope":"global","secondary":true},
                {"family":"inet6","local":"fd00::9","scope":"global","tentative":true},
                {"family":"inet6","local":"fd00::a","scope":"global","temporary":true},
                {"family":"inet6","local":"fd00::b","scope":"global"},
                {"family":"inet6","local":"fe80::1","scope":"link"}]}]"#,
        )
        .expect("json");
        let i = parse(&v).expect("an interface");
        assert!(i.ether);
        assert_eq!(i.sources.v4, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(i.sources.v6, Some("fd00::b".parse().expect("literal")));
    }

    #[test]
    fn no_addresses_no_sources() {
        let v: Value =
            serde_json::from_str(r#"[{"ifname":"wg0","link_type":"none","addr_info":[]}]"#)
                .expect("json");
        let i = parse(&v).expect("an interface");
        assert!(!i.ether);
        assert_eq!(i.sources, Sources::default());
        assert!(parse(&serde_json::json!([])).is_none());
    }
}
