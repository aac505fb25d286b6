//! Settings that are used when the dataplane is loaded and attached, not
//! forwarded by: map sizes, interfaces, where to pin. They live beside
//! `model::State` because changing them means reloading, not a map update.

use std::path::PathBuf;

use crate::model::MacAddr;

use super::schema;

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver; fails where the driver lacks XDP.
    Native,
    /// In the generic (skb) path: works everywhere, slower.
    Generic,
    /// Native where the driver supports it, generic otherwise.
    Auto,
}

/// Where forwarded frames are sent on the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gateway {
    /// This MAC address, as written.
    Mac(MacAddr),
    /// The neighbour of the default route, resolved when applying; until
    /// then `state.globals.gateway_mac` is all zeros.
    Auto,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// At least one, no duplicates.
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub gateway: Gateway,
    /// Maglev ring slots per VIP: a prime in
    /// `schema::MIN_RING_SIZE..=schema::MAX_RING_SIZE`.
    pub ring_size: u32,
    pub max_vips: u32,
    /// Distinct real addresses, over all VIPs.
    pub max_reals: u32,
    /// Connection-table entries per forwarding CPU.
    pub conn_table_size: u32,
    /// CPUs that get their own connection table; `None` = every CPU.
    /// In the order written, without duplicates; not checked against the
    /// machine's CPUs (that is the loader's job).
    pub forwarding_cpus: Option<Vec<u32>>,
    /// One connection table shared by every CPU instead of one per CPU:
    /// connections stay on their real even when their packets reach
    /// different CPUs (no RSS: veth, some virtual NICs), at the cost of
    /// contention on the table.
    pub shared_conn_table: bool,
    /// Packets and bytes counted per (VIP, real), not only per VIP and per
    /// real: `max_vips x (max_reals + 1)` counters per CPU.
    pub vip_real_counters: bool,
    /// bpffs directory the maps and program are pinned under (absolute).
    pub pin_dir: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interfaces: Vec::new(),
            xdp_mode: XdpMode::Auto,
            gateway: Gateway::Auto,
            ring_size: schema::DEFAULT_RING_SIZE,
            max_vips: schema::DEFAULT_MAX_VIPS,
            max_reals: schema::DEFAULT_MAX_REALS,
            conn_table_size: schema::DEFAULT_CONN_TABLE_SIZE,
            forwarding_cpus: None,
            shared_conn_table: false,
            vip_real_counters: false,
            pin_dir: PathBuf::from(schema::DEFAULT_PIN_DIR),
        }
    }
}
