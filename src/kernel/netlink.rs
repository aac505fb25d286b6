//! Links, addresses, routes and neighbours through rtnetlink, in process:
//! the default route's gateway and its MAC (for `gateway_mac = "auto"` and
//! the daemon following it), the host routes that announce VIPs to a
//! routing daemon, interfaces and their addresses (`link.rs`, `address.rs`).
//! Messages are built and parsed by the netlink-packet crates and sent on
//! one blocking socket per request; katran runs no `ip` process.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::model::MacAddr;

mod address;
mod link;

pub use address::{addresses, replace_address, Address};
pub use link::{link, set_up, Link};

/// Sends one dump request and collects every answer until the kernel says
/// it is done.
fn dump(request: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
    exchange(request, NLM_F_REQUEST | NLM_F_DUMP)
}

/// Sends one request with `flags` and collects the answers until the
/// kernel says it is done (a dump) or acknowledges it (a change).
fn exchange(request: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
    socket.bind_auto().context("binding the netlink socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("connecting the netlink socket")?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).context("sending a netlink request")?;

    let mut out = Vec::new();
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let n = socket
            .recv(&mut &mut rx[..], 0)
            .context("reading a netlink answer")?;
        let mut at = 0;
        while at < n {
            let msg: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&rx[at..n]).context("parsing a netlink answer")?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(e.to_io()).context("the kernel refused a netlink request")
                }
                // the acknowledgement of a change
                NetlinkPayload::Error(_) => return Ok(out),
                NetlinkPayload::InnerMessage(m) => out.push(m),
                _ => {}
            }
            if len == 0 {
                bail!("a netlink answer of length 0");
            }
            at += len;
        }
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The default route's gateway and outgoing interface index: IPv4 first,
/// then IPv6; among several, the lowest metric.
pub fn default_gateway() -> Result<Option<(IpAddr, u32)>> {
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        let mut best: Option<(u32, IpAddr, u32)> = None;
        for m in dump(RouteNetlinkMessage::GetRoute(req))? {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            let table = table_of(&r);
            if r.header.destination_prefix_length != 0
                || table != u32::from(RouteHeader::RT_TABLE_MAIN)
            {
                continue;
            }
            let (mut gw, mut oif, mut metric) = (None, None, 0);
            for a in &r.attributes {
                match a {
                    RouteAttribute::Gateway(g) => gw = ip_of(g),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Priority(p) => metric = *p,
                    _ => {}
                }
            }
            if let (Some(gw), Some(oif)) = (gw, oif) {
                if best.is_none_or(|b| metric < b.0) {
                    best = Some((metric, gw, oif));
                }
            }
        }
        if let Some((_, gw, oif)) = best {
            return Ok(Some((gw, oif)));
        }
    }
    Ok(None)
}

/// The link-layer address the neighbour table holds for `addr` on
/// interface `ifindex`, when the entry is usable (not failed or still
/// being resolved).
pub fn neighbour(addr: IpAddr, ifindex: u32) -> Result<Option<MacAddr>> {
    let mut req = NeighbourMessage::default();
    req.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    for m in dump(RouteNetlinkMessage::GetNeighbour(req))? {
        let RouteNetlinkMessage::NewNeighbour(n) = m else {
            continue;
        };
        if n.header.ifindex != ifindex
            || matches!(
                n.header.state,
                NeighbourState::Failed | NeighbourState::Incomplete | NeighbourState::None
            )
        {
            continue;
        }
        let dst = n.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
            _ => None,
        });
        if dst != Some(addr) {
            continue;
        }
        let lladdr = n.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
            _ => None,
        });
        if let Some(mac) = lladdr {
            return Ok(Some(MacAddr(mac)));
        }
    }
    Ok(None)
}

/// The routing protocol number katran's routes carry (`proto 201` in
/// `ip route`), so routing daemons and people can tell them apart.
pub const RTPROT_KATRAN: u8 = 201;

fn table_of(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

/// Every host route (/32, /128) tagged [`RTPROT_KATRAN`], in any table:
/// (table, address).
pub fn katran_routes() -> Result<Vec<(u32, IpAddr)>> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        for m in dump(RouteNetlinkMessage::GetRoute(req))? {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            if r.header.protocol != RouteProtocol::Other(RTPROT_KATRAN) {
                continue;
            }
            let dst = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(d) => ip_of(d),
                _ => None,
            });
            if let Some(dst) = dst {
                out.push((table_of(&r), dst));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The route message for `addr`/32 or /128 through `lo` in `table`.
fn host_route(table: u32, addr: IpAddr, lo: u32) -> RouteMessage {
    let mut r = RouteMessage::default();
    r.header.address_family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    r.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
    // tables above 255 only fit the attribute; 252 is the kernel's "see it"
    r.header.table = u8::try_from(table).unwrap_or(252);
    r.header.protocol = RouteProtocol::Other(RTPROT_KATRAN);
    r.header.scope = RouteScope::Link;
    r.header.kind = RouteType::Unicast;
    r.attributes = vec![
        RouteAttribute::Destination(addr.into()),
        RouteAttribute::Oif(lo),
        RouteAttribute::Table(table),
    ];
    r
}

fn loopback() -> Result<u32> {
    crate::kernel::bpf::attach::ifindex("lo")
}

/// Adds the route announcing `addr` in `table`.
pub fn add_route(table: u32, addr: IpAddr) -> Result<()> {
    let r = host_route(table, addr, loopback()?);
    exchange(
        RouteNetlinkMessage::NewRoute(r),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .with_context(|| format!("adding the route of {addr} to table {table}"))
    .map(drop)
}

/// Removes the route announcing `addr` from `table`.
pub fn remove_route(table: u32, addr: IpAddr) -> Result<()> {
    let r = host_route(table, addr, loopback()?);
    exchange(RouteNetlinkMessage::DelRoute(r), NLM_F_REQUEST | NLM_F_ACK)
        .with_context(|| format!("removing the route of {addr} from table {table}"))
        .map(drop)
}
