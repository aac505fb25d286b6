//! The health-check program's kernel objects: loading `bpf/healthcheck.bpf.c`
//! (types generated from its BTF, sizes asserted against `bpf/hc_types.h`),
//! its four maps as handles that can be pinned and reopened, and typed reads
//! and writes of them.

use std::collections::BTreeMap;
use std::fmt;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, OpenObject, ProgramMut};

use super::source::Sources;
use crate::kernel::bpf::abi::{addr_from_words, addr_words, bytes, from_bytes, Pod};
use crate::kernel::bpf::healthcheck_skel::{HealthcheckSkel, HealthcheckSkelBuilder};
use crate::kernel::bpf::percpu;
use crate::model::MacAddr;

pub use crate::kernel::bpf::healthcheck_skel::types;
use types::{hc_counter, hc_ctl, hc_ctl_flag, hc_real, hc_real_flag, hc_stat};

// The C side defines these sizes (bpf/hc_types.h); a mismatch fails the build.
const _: () = assert!(size_of::<hc_real>() == 24);
const _: () = assert!(size_of::<hc_ctl>() == 32);
const _: () = assert!(size_of::<hc_counter>() == 16);

// SAFETY: plain C structs with explicit padding; every bit pattern is valid.
unsafe impl Pod for hc_real {}
unsafe impl Pod for hc_ctl {}
unsafe impl Pod for hc_counter {}

/// Entries of the mark table and of the per-mapping counters.
pub const MAX_MAPPINGS: u32 = types::hc_limit::HC_MAX_MAPPINGS.0;

/// A loaded, unattached program and its maps.
pub struct Program {
    skel: HealthcheckSkel<'static>,
}

impl Program {
    pub fn load() -> Result<Program> {
        // As for the balancer: the skeleton borrows its object storage for
        // its whole life, so one small allocation per load is leaked.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = HealthcheckSkelBuilder::default()
            .open(storage)
            .context("opening the health-check object")?;
        let skel = open
            .load()
            .context("loading the health-check program into the kernel")?;
        Ok(Program { skel })
    }

    pub fn prog(&self) -> &ProgramMut<'static> {
        &self.skel.progs.healthcheck
    }

    /// Handles to the maps (duplicated descriptors).
    pub fn maps(&self) -> Result<Maps> {
        let m = &self.skel.maps;
        let h = |map: &libbpf_rs::MapMut<'_>| {
            MapHandle::try_from(map)
                .with_context(|| format!("duplicating map {}", map.name().to_string_lossy()))
        };
        Ok(Maps {
            reals: h(&m.hc_reals)?,
            ctl: h(&m.hc_ctl)?,
            stats: h(&m.hc_stats)?,
            real_stats: h(&m.hc_real_stats)?,
        })
    }
}

/// A live mapping: the real, and the slot of its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub real: IpAddr,
    pub slot: u32,
}

/// What `hc_ctl` holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// `None`: the Ethernet destination the kernel chose is kept.
    pub gateway_mac: Option<MacAddr>,
    pub sources: Sources,
}

pub struct Maps {
    pub reals: MapHandle,
    pub ctl: MapHandle,
    pub stats: MapHandle,
    pub real_stats: MapHandle,
}

const ZERO: [u8; 4] = 0u32.to_ne_bytes();

impl Maps {
    pub const NAMES: [&'static str; 4] = ["hc_reals", "hc_ctl", "hc_stats", "hc_real_stats"];

    pub fn named(&self) -> [(&'static str, &MapHandle); 4] {
        [
            (Self::NAMES[0], &self.reals),
            (Self::NAMES[1], &self.ctl),
            (Self::NAMES[2], &self.stats),
            (Self::NAMES[3], &self.real_stats),
        ]
    }

    pub fn open_pinned(dir: &Path) -> Result<Maps> {
        let h = |name: &str| {
            let path = dir.join(name);
            MapHandle::from_pinned_path(&path)
                .with_context(|| format!("opening {}", path.display()))
        };
        Ok(Maps {
            reals: h(Self::NAMES[0])?,
            ctl: h(Self::NAMES[1])?,
            stats: h(Self::NAMES[2])?,
            real_stats: h(Self::NAMES[3])?,
        })
    }

    /// Every live mapping, by mark.
    pub fn mappings(&self) -> Result<BTreeMap<u32, Mapping>> {
        let mut out = BTreeMap::new();
        for key in self.reals.keys() {
            let Some(mark) = from_bytes::<u32>(&key) else {
                continue;
            };
            // Deleted between listing and lookup: not live any more.
            let Some(v) = self.reals.lookup(&key, MapFlags::ANY)? else {
                continue;
            };
            let r = from_bytes::<hc_real>(&v).context("short hc_reals value")?;
            let v6 = u32::from(r.flags) & hc_real_flag::HC_REAL_V6.0 != 0;
            out.insert(
                mark,
                Mapping {
                    real: addr_from_words(r.addr, v6),
                    slot: r.stat_idx,
                },
            );
        }
        Ok(out)
    }

    pub fn put(&self, mark: u32, m: Mapping) -> Result<()> {
        let v = hc_real {
            addr: addr_words(m.real),
            stat_idx: m.slot,
            flags: if m.real.is_ipv6() {
                hc_real_flag::HC_REAL_V6.0 as u8
            } else {
                0
            },
            ..Default::default()
        };
        self.reals
            .update(&mark.to_ne_bytes(), bytes(&v), MapFlags::ANY)
            .with_context(|| format!("mapping health-check mark {mark} to {}", m.real))
    }

    pub fn remove(&self, mark: u32) -> Result<()> {
        self.reals
            .delete(&mark.to_ne_bytes())
            .with_context(|| format!("removing health-check mark {mark}"))
    }

    /// Zeroes the per-CPU counters of `slot` (before a new mapping uses it).
    pub fn reset_slot(&self, slot: u32) -> Result<()> {
        let cpus = libbpf_rs::num_possible_cpus().context("counting CPUs")?;
        let zero = vec![bytes(&hc_counter::default()).to_vec(); cpus];
        self.real_stats
            .update_percpu(&slot.to_ne_bytes(), &zero, MapFlags::ANY)
            .with_context(|| format!("resetting health-check counters of slot {slot}"))
    }

    /// Packets and bytes sent through `slot`, summed over CPUs.
    pub fn slot_counters(&self, slot: u32) -> Result<(u64, u64)> {
        let per_cpu = percpu::copies::<hc_counter>(&self.real_stats, slot)?.unwrap_or_default();
        Ok(per_cpu
            .iter()
            .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes)))
    }

    pub fn control(&self) -> Result<Control> {
        let v = self
            .ctl
            .lookup(&ZERO, MapFlags::ANY)?
            .context("hc_ctl has no entry 0")?;
        let c = from_bytes::<hc_ctl>(&v).context("short hc_ctl value")?;
        let has = |f: hc_ctl_flag| c.flags & f.0 != 0;
        let v4 = match addr_from_words([c.src_v4, 0, 0, 0], false) {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let v6 = match addr_from_words(c.src_v6, true) {
            IpAddr::V6(a) => a,
            IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
        };
        Ok(Control {
            gateway_mac: has(hc_ctl_flag::HC_CTL_GW_MAC).then_some(MacAddr(c.gw_mac)),
            sources: Sources {
                v4: has(hc_ctl_flag::HC_CTL_SRC_V4).then_some(v4),
                v6: has(hc_ctl_flag::HC_CTL_SRC_V6).then_some(v6),
            },
        })
    }

    pub fn set_control(&self, c: &Control) -> Result<()> {
        let mut v = hc_ctl::default();
        if let Some(mac) = c.gateway_mac {
            v.gw_mac = mac.0;
            v.flags |= hc_ctl_flag::HC_CTL_GW_MAC.0;
        }
        if let Some(a) = c.sources.v4 {
            v.src_v4 = addr_words(IpAddr::V4(a))[0];
            v.flags |= hc_ctl_flag::HC_CTL_SRC_V4.0;
        }
        if let Some(a) = c.sources.v6 {
            v.src_v6 = addr_words(IpAddr::V6(a));
            v.flags |= hc_ctl_flag::HC_CTL_SRC_V6.0;
        }
        self.ctl
            .update(&ZERO, bytes(&v), MapFlags::ANY)
            .context("writing the health-check control values")
    }

    pub fn stats(&self) -> Result<HcStats> {
        HcStats::read(&self.stats)
    }
}

/// The program's global counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HcStats {
    pub encap_v4: u64,
    pub encap_v6: u64,
    pub pass_no_mapping: u64,
    pub pass_not_ip: u64,
    pub drop_no_source: u64,
    pub drop_too_big: u64,
    pub drop_encap: u64,
}

type Field = fn(&mut HcStats) -> &mut u64;

/// Every counter: its index in `hc_stats`, its name, its field.
const COUNTERS: [(hc_stat, &str, Field); 7] = [
    (hc_stat::HC_STAT_ENCAP_V4, "encapsulated-to-ipv4", |s| {
        &mut s.encap_v4
    }),
    (hc_stat::HC_STAT_ENCAP_V6, "encapsulated-to-ipv6", |s| {
        &mut s.encap_v6
    }),
    (
        hc_stat::HC_STAT_PASS_NO_MAPPING,
        "passed-unmapped-mark",
        |s| &mut s.pass_no_mapping,
    ),
    (hc_stat::HC_STAT_PASS_NOT_IP, "passed-not-ip", |s| {
        &mut s.pass_not_ip
    }),
    (hc_stat::HC_STAT_DROP_NO_SOURCE, "dropped-no-source", |s| {
        &mut s.drop_no_source
    }),
    (hc_stat::HC_STAT_DROP_TOO_BIG, "dropped-too-big", |s| {
        &mut s.drop_too_big
    }),
    (hc_stat::HC_STAT_DROP_ENCAP, "dropped-encap-failed", |s| {
        &mut s.drop_encap
    }),
];

// One field per counter of the C enum, and the struct is nothing else.
const _: () = assert!(COUNTERS.len() == hc_stat::HC_STAT__COUNT.0 as usize);
const _: () = assert!(size_of::<HcStats>() == COUNTERS.len() * size_of::<u64>());

impl HcStats {
    pub fn read(map: &dyn MapCore) -> Result<HcStats> {
        let mut out = HcStats::default();
        for (idx, name, field) in COUNTERS {
            *field(&mut out) = percpu::sum(map, idx.0)
                .with_context(|| format!("reading health-check counter {name}"))?
                .unwrap_or_default();
        }
        Ok(out)
    }
}

impl fmt::Display for HcStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut copy = *self;
        for (_, name, field) in COUNTERS {
            writeln!(f, "{name:<22} {}", field(&mut copy))?;
        }
        Ok(())
    }
}
