//! `gateway_mac = "auto"`: the MAC of the default route's next hop, asked
//! of the kernel over rtnetlink ([`crate::kernel::netlink`]) at apply time, and
//! again every second by the daemon, which follows a router that changed
//! its MAC or a new default route without a reload.

use std::net::{IpAddr, UdpSocket};
use std::thread::sleep;
use std::time::Duration;

use crate::kernel::netlink;
use crate::model::MacAddr;

/// Why the gateway's MAC could not be had: a host problem that comes from
/// `gateway_mac = "auto"` in the file, so `katran apply` places it there.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no default route to take the gateway MAC from; {FIX}")]
    NoDefaultRoute,
    #[error("the default gateway {0} did not answer ARP/ND; {FIX}")]
    NoAnswer(IpAddr),
    /// The kernel could not be asked (rtnetlink failed).
    #[error(transparent)]
    Netlink(#[from] anyhow::Error),
}

/// What to do about any of them.
pub const FIX: &str = "set gateway_mac in the file";

impl GatewayError {
    /// What went wrong, without the fix.
    pub fn reason(&self) -> String {
        match self {
            GatewayError::NoDefaultRoute => "this host has no default route".into(),
            GatewayError::NoAnswer(gw) => format!("the default gateway {gw} did not answer ARP/ND"),
            GatewayError::Netlink(e) => format!("the routing table could not be read: {e:#}"),
        }
    }
}

/// The default gateway's MAC if the neighbour table has it now; `Ok(None)`
/// when there is a gateway not resolved yet.
pub fn current() -> Result<Option<MacAddr>, GatewayError> {
    let Some((gw, ifindex)) = netlink::default_gateway()? else {
        return Err(GatewayError::NoDefaultRoute);
    };
    Ok(netlink::neighbour(gw, ifindex)?)
}

/// The default route's gateway MAC (IPv4 default route first, then IPv6),
/// making the kernel resolve it when the neighbour table has no entry yet.
pub fn resolve() -> Result<MacAddr, GatewayError> {
    let Some((gw, ifindex)) = netlink::default_gateway()? else {
        return Err(GatewayError::NoDefaultRoute);
    };
    if let Some(mac) = netlink::neighbour(gw, ifindex)? {
        return Ok(mac);
    }
    // Not resolved yet: a datagram to the discard port makes the kernel ask.
    let bind = if gw.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    if let Ok(sock) = UdpSocket::bind(bind) {
        let _ = sock.send_to(b"", (gw, 9));
    }
    for _ in 0..20 {
        sleep(Duration::from_millis(50));
        if let Some(mac) = netlink::neighbour(gw, ifindex)? {
            return Ok(mac);
        }
    }
    Err(GatewayError::NoAnswer(gw))
}
