//! Health-check forwarding (`[[healthcheck_mark]]`): frames this host sends
//! from sockets marked with SO_MARK N leave encapsulated (IP-in-IP) toward
//! the real that mark N names, so a health checker running beside the
//! balancer tests each real over the path client traffic takes. No tunnel
//! device is needed: `bpf/healthcheck.bpf.c` grows the frames on the
//! interface's tc egress hook.
//!
//! Pins, under `<pin_dir>/hc/`: `maps/<name>` the four maps, `prog/healthcheck`
//! the program, `attached/<iface>` the program again, once per interface its
//! tc filter is on (a tc filter cannot be pinned; this records where it is).
//! Like the balancer's links, the filter keeps working when no katran runs.
//!
//! Outer header: IPv4 or IPv6 by the real's family, from the host's address
//! of that family ([`Sources`], by default the interface's first global
//! address), TTL 64, to the real; Ethernet destination the gateway MAC.
//! Callers hold the apply lock (`live::lock`) around everything here.

mod kernel;
mod lifecycle;
mod marks;
mod pins;
mod source;
mod table;
mod tc;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Result;

use crate::model::MacAddr;

pub use kernel::{Control, HcStats, Mapping, Maps, Program, MAX_MAPPINGS};
pub use lifecycle::{down, ensure, Ensured};
pub use marks::{diff, MarkChanges};
pub use pins::HcPins;
pub use source::{interface, Interface, Sources};
pub use table::{read_control, read_marks, stats, sync, MarkCounters};
pub use tc::{HANDLE as TC_HANDLE, PRIORITY as TC_PRIORITY};

/// What [`reconcile`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `None` when no mark is configured (forwarding was removed if present).
    pub ensured: Option<Ensured>,
    pub changes: MarkChanges,
    /// Interfaces detached because no mark is configured any more.
    pub removed_from: Vec<String>,
    /// Reals no outer source can reach (their checks are dropped).
    pub warnings: Vec<String>,
}

/// The whole health-check side of one reconciliation: with marks, ensure
/// on `iface` (outer sources: the interface's addresses) and sync; without,
/// remove everything.
pub fn reconcile(
    pin_dir: &Path,
    iface: &str,
    gateway_mac: MacAddr,
    somarks: &BTreeMap<u32, IpAddr>,
) -> Result<Outcome> {
    if somarks.is_empty() {
        return Ok(Outcome {
            removed_from: down(pin_dir)?,
            ..Outcome::default()
        });
    }
    let sources = Sources::of_interface(iface)?;
    let warnings = somarks
        .iter()
        .filter(|(_, r)| !sources.covers(**r))
        .map(|(m, r)| {
            let family = if r.is_ipv4() { "IPv4" } else { "IPv6" };
            format!(
                "health-check mark {m}: {iface} has no global {family} address to send to {r} from; \
                 its checks are dropped"
            )
        })
        .collect();
    let ensured = ensure(pin_dir, iface, gateway_mac, &sources)?;
    let changes = sync(pin_dir, somarks)?;
    Ok(Outcome {
        ensured: Some(ensured),
        changes,
        removed_from: Vec::new(),
        warnings,
    })
}
