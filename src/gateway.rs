//! `gateway_mac = "auto"`: the MAC of the default route's next hop, asked
//! of the kernel over rtnetlink ([`crate::netlink`]) at apply time, and
//! again every second by the daemon, which follows a router that changed
//! its MAC or a new default route without a reload.

use std::net::UdpSocket;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::model::MacAddr;
use crate::netlink;

/// The default gateway's MAC if the neighbour table has it now; `Ok(None)`
/// when there is a gateway not resolved yet.
pub fn current() -> Result<Option<MacAddr>> {
    let Some((gw, ifindex)) = netlink::default_gateway()? else {
        bail!("no default route to take the gateway MAC from; set gateway_mac in the file");
    };
    netlink::neighbour(gw, ifindex)
}

/// The default route's gateway MAC (IPv4 default route first, then IPv6),
/// making the kernel resolve it when the neighbour table has no entry yet.
pub fn resolve() -> Result<MacAddr> {
    let Some((gw, ifindex)) = netlink::default_gateway()? else {
        bail!("no default route to take the gateway MAC from; set gateway_mac in the file");
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
    bail!("the default gateway {gw} did not answer ARP/ND; set gateway_mac in the file")
}
