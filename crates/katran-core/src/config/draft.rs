//! The file as read, before cross-checks: every value keeps where it was
//! written, and a value that was wrong is marked so instead of dropped, so
//! later checks neither repeat its error nor mistake it for a default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::model::{Proto, RingKind, VipFlags};

use super::settings::{Gateway, XdpMode};
use super::source::{Sp, Span};

/// One key's value as read.
#[derive(Clone, Debug, Default)]
pub enum Val<T> {
    /// Not written: the default applies.
    #[default]
    Absent,
    /// Written but wrong; the error is already reported.
    Invalid,
    Given(Sp<T>),
}

impl<T: Clone> Val<T> {
    pub fn given(&self) -> Option<&Sp<T>> {
        match self {
            Val::Given(v) => Some(v),
            _ => None,
        }
    }

    /// The value, the default when absent, `None` when it was wrong.
    pub fn or(&self, default: T) -> Option<T> {
        match self {
            Val::Absent => Some(default),
            Val::Invalid => None,
            Val::Given(v) => Some(v.value.clone()),
        }
    }

    /// The value written, else `default` (also for a wrong value, which
    /// only a file with errors has).
    pub fn value_or(&self, default: T) -> T {
        self.given().map_or(default, |v| v.value.clone())
    }

    pub fn span(&self) -> Option<Span> {
        self.given().map(|v| v.span)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncapKind {
    Ipip,
    Gue,
}

/// `[dataplane]`.
#[derive(Clone, Debug, Default)]
pub struct Dataplane {
    /// The table (its header, or its key when written inline).
    pub span: Span,
    pub interfaces: Val<Vec<String>>,
    pub xdp_mode: Val<XdpMode>,
    pub gateway: Val<Gateway>,
    pub encap: Val<EncapKind>,
    /// Keys only meaningful with `encap = "gue"`, with their key spans.
    pub gue_keys: Vec<Sp<&'static str>>,
    pub gue_port: Val<u16>,
    pub gue_source_v4: Val<Ipv4Addr>,
    pub gue_source_v6: Val<Ipv6Addr>,
    pub ring: Val<RingKind>,
    pub ring_size: Val<u32>,
    pub max_vips: Val<u32>,
    pub max_reals: Val<u32>,
    pub conn_table_size: Val<u32>,
    pub forwarding_cpus: Val<Vec<u32>>,
    /// `conn_table = "shared"`: one table for every CPU.
    pub shared_conn_table: Val<bool>,
    /// Traffic counted per (VIP, real) as well.
    pub vip_real_counters: Val<bool>,
    pub outer_source_v4_prefix: Val<Ipv4Addr>,
    pub outer_source_v6_prefix: Val<Ipv6Addr>,
    pub tcp_server_id: Val<Option<u8>>,
    pub max_conn_rate: Val<u32>,
    pub udp_timeout_s: Val<u32>,
    pub max_frame_len: Val<u16>,
    pub pin_dir: Val<PathBuf>,
}

/// One real of a VIP; reals whose address was wrong are left out.
#[derive(Clone, Debug)]
pub struct Real {
    pub addr: Sp<IpAddr>,
    /// `None` when the weight was wrong.
    pub weight: Option<u32>,
}

/// One `[[vip]]`.
#[derive(Clone, Debug, Default)]
pub struct Vip {
    pub span: Span,
    /// Address and port.
    pub address: Val<(IpAddr, u16)>,
    pub proto: Val<Proto>,
    pub flags: VipFlags,
    /// Where each flag that is on was written.
    pub flag_spans: Vec<Sp<&'static str>>,
    pub reals: Vec<Real>,
    /// The `reals` value, when written.
    pub reals_span: Option<Span>,
    /// Some real (or `reals` itself) was wrong, so counts are incomplete.
    pub reals_invalid: bool,
    pub healthcheck: Option<super::health::Draft>,
}

/// One `[[server_id]]` or `[[healthcheck_mark]]`.
#[derive(Clone, Debug, Default)]
pub struct Mapping {
    pub span: Span,
    pub id: Val<u32>,
    pub real: Val<IpAddr>,
}

/// The whole file.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    /// `None` when the file has no `[dataplane]` (already reported).
    pub dataplane: Option<Dataplane>,
    pub vips: Vec<Vip>,
    pub server_ids: Vec<Mapping>,
    pub marks: Vec<Mapping>,
    pub down_reals: Vec<Sp<IpAddr>>,
    pub announce: Option<super::announce::Announce>,
    pub metrics: Option<super::metrics::Metrics>,
}
