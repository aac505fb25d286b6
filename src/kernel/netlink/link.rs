//! Interfaces by name: what kind of link one is, and bringing one up
//! (`katran real` needs `lo` up before the VIP goes on it).

use anyhow::{Context, Result};
use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::exchange;

/// What the kernel says of one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// The link type is Ethernet (ARPHRD_ETHER, `link/ether` in `ip link`).
    pub ether: bool,
}

/// A link message that names the interface `name` (index 0: the kernel
/// looks the name up).
fn named(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m
}

/// The interface called `name` in the calling thread's network namespace.
pub fn link(name: &str) -> Result<Link> {
    let answers = exchange(
        RouteNetlinkMessage::GetLink(named(name)),
        NLM_F_REQUEST | NLM_F_ACK,
    )
    .with_context(|| format!("reading interface {name}"))?;
    answers
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(Link {
                index: l.header.index,
                ether: l.header.link_layer_type == LinkLayerType::Ether,
            }),
            _ => None,
        })
        .with_context(|| format!("reading interface {name}: the kernel sent no answer"))
}

/// Sets the interface called `name` up (`ip link set dev NAME up`).
pub fn set_up(name: &str) -> Result<()> {
    let mut m = named(name);
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    exchange(RouteNetlinkMessage::SetLink(m), NLM_F_REQUEST | NLM_F_ACK)
        .with_context(|| format!("setting {name} up"))
        .map(drop)
}
