//! Interface addresses: listing them (the health-check source addresses
//! come from the interface's own) and putting one on an interface (a
//! real server's VIP on `lo`).

use std::net::IpAddr;

use anyhow::{Context, Result};
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{dump, exchange};

/// One address of an interface, as `ip addr show` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    /// The local address (`inet`/`inet6` in `ip addr`).
    pub ip: IpAddr,
    pub prefix_len: u8,
    /// Scope global: reachable beyond this link and host.
    pub global: bool,
    /// IPv6 duplicate address detection has not finished.
    pub tentative: bool,
    /// IPv6 duplicate address detection found the address in use.
    pub dadfailed: bool,
    /// An IPv6 temporary (privacy) address.
    pub temporary: bool,
}

fn from_message(m: &AddressMessage) -> Option<Address> {
    // IFA_LOCAL is the interface's own end; IPv6 sends only IFA_ADDRESS
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    // the 32-bit IFA_FLAGS attribute, when sent, supersedes the header's 8
    let flags = m
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(m.header.flags.bits())));
    let ip = local.or(address)?;
    Some(Address {
        ip,
        prefix_len: m.header.prefix_len,
        global: m.header.scope == AddressScope::Universe,
        tentative: flags.contains(AddressFlags::Tentative),
        dadfailed: flags.contains(AddressFlags::Dadfailed),
        // the bit means "secondary" for IPv4, "temporary" for IPv6
        temporary: ip.is_ipv6() && flags.contains(AddressFlags::Secondary),
    })
}

/// The addresses of the interface with index `ifindex`, IPv4 then IPv6,
/// each family in the kernel's order (an IPv4 primary before its
/// secondaries), as `ip addr show dev IF` lists them.
pub fn addresses(ifindex: u32) -> Result<Vec<Address>> {
    let answers = dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
        .with_context(|| format!("listing the addresses of interface index {ifindex}"))?;
    Ok(answers
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) if a.header.index == ifindex => from_message(a),
            _ => None,
        })
        .collect())
}

/// Puts `ip`/`prefix_len` on the interface `iface`, or leaves it there if
/// it is (`ip addr replace`).
pub fn replace_address(iface: &str, ip: IpAddr, prefix_len: u8) -> Result<()> {
    let what = || format!("putting {ip}/{prefix_len} on {iface}");
    let ifindex = super::link(iface).with_context(what)?.index;
    let mut m = AddressMessage::default();
    m.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.prefix_len = prefix_len;
    m.header.scope = AddressScope::Universe;
    m.header.index = ifindex;
    m.attributes = vec![AddressAttribute::Local(ip), AddressAttribute::Address(ip)];
    exchange(
        RouteNetlinkMessage::NewAddress(m),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
    )
    .with_context(what)
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::AddressHeaderFlags;

    fn message(attributes: Vec<AddressAttribute>, header_flags: u8) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.prefix_len = 24;
        m.header.flags = AddressHeaderFlags::from_bits_retain(header_flags);
        m.attributes = attributes;
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn the_secondary_bit_is_temporary_only_for_ipv6() {
        let v4 = message(vec![AddressAttribute::Local(ip("10.0.0.6"))], 0x01);
        let v4 = from_message(&v4).expect("an address");
        assert!(!v4.temporary && v4.global, "{v4:?}");
        let v6 = message(vec![AddressAttribute::Address(ip("fd00::a"))], 0x01);
        let v6 = from_message(&v6).expect("an address");
        assert!(v6.temporary, "{v6:?}");
        assert_eq!(v6.ip, ip("fd00::a"));
    }

    #[test]
    fn the_flags_attribute_is_read() {
        let flags = AddressFlags::Tentative | AddressFlags::Dadfailed;
        let m = message(
            vec![
                AddressAttribute::Address(ip("fd00::9")),
                AddressAttribute::Flags(flags),
            ],
            0,
        );
        let a = from_message(&m).expect("an address");
        assert!(a.tentative && a.dadfailed && !a.temporary, "{a:?}");
    }

    #[test]
    fn the_local_end_before_the_peer() {
        let m = message(
            vec![
                AddressAttribute::Address(ip("10.0.0.2")),
                AddressAttribute::Local(ip("10.0.0.1")),
            ],
            0,
        );
        assert_eq!(from_message(&m).map(|a| a.ip), Some(ip("10.0.0.1")));
        assert_eq!(from_message(&message(vec![], 0)), None);
    }
}
