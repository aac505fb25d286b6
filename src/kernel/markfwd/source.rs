//! The interface health-check frames leave by, as the kernel describes it
//! over rtnetlink ([`crate::kernel::netlink`]): whether it is Ethernet, and the
//! addresses the outer headers are sent from.
//!
//! The default outer source of each family is the interface's first address
//! of global scope in the kernel's order (the order `ip addr` lists them in,
//! the primary address first), skipping IPv6 addresses that are tentative,
//! failed duplicate detection or are temporary (privacy) addresses. The real must route its answers back
//! to that address, as it routes answers to any host. Callers may override
//! either family by setting the fields of [`Sources`] before `ensure`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use crate::kernel::netlink;

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
    /// The link is Ethernet: the program rewrites an Ethernet header.
    pub ether: bool,
    pub sources: Sources,
}

/// Asks the kernel about `iface` (in the calling thread's network namespace).
pub fn interface(iface: &str) -> Result<Interface> {
    let link = netlink::link(iface)?;
    let addrs = netlink::addresses(link.index)?;
    Ok(Interface {
        ether: link.ether,
        sources: first_usable(&addrs),
    })
}

/// The first address of each family that is global, settled (not tentative
/// or failed duplicate detection) and not a temporary (privacy) address.
fn first_usable(addrs: &[netlink::Address]) -> Sources {
    let mut usable = addrs
        .iter()
        .filter(|a| a.global && !a.tentative && !a.dadfailed && !a.temporary)
        .map(|a| a.ip);
    Sources {
        v4: usable.clone().find_map(|ip| match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }),
        v6: usable.find_map(|ip| match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str, global: bool) -> netlink::Address {
        netlink::Address {
            ip: ip.parse().expect("literal"),
            prefix_len: 24,
            global,
            tentative: false,
            dadfailed: false,
            temporary: false,
        }
    }

    #[test]
    fn first_global_settled_address_of_each_family() {
        let addrs = [
            addr("169.254.1.1", false),
            addr("10.0.0.5", true),
            addr("10.0.0.6", true),
            netlink::Address {
                tentative: true,
                ..addr("fd00::8", true)
            },
            netlink::Address {
                dadfailed: true,
                ..addr("fd00::9", true)
            },
            netlink::Address {
                temporary: true,
                ..addr("fd00::a", true)
            },
            addr("fe80::1", false),
            addr("fd00::b", true),
        ];
        let s = first_usable(&addrs);
        assert_eq!(s.v4, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(s.v6, Some("fd00::b".parse().expect("literal")));
    }

    #[test]
    fn no_usable_addresses_no_sources() {
        assert_eq!(first_usable(&[]), Sources::default());
        let local_only = [addr("127.0.0.1", false), addr("::1", false)];
        assert_eq!(first_usable(&local_only), Sources::default());
    }
}
