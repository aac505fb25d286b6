//! The real servers' decapsulation program (`bpf/decap.bpf.c`): loading it
//! with its GUE port, and a typed view of its per-CPU counters. Attaching
//! and pinning on a host is `crate::kernel::real`'s business.

use std::fmt;
use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, OpenObject, ProgramMut};

use super::decap_skel::types::decap_stat;
use super::decap_skel::{DecapSkel, DecapSkelBuilder};
use super::percpu;

/// GUE port the balancer and the reals agree on unless configured.
pub const DEFAULT_GUE_PORT: u16 = 9886;

/// A loaded (not necessarily attached) decapsulation program.
pub struct Decap {
    skel: DecapSkel<'static>,
}

impl Decap {
    /// Loads the program; GUE is recognised on UDP destination `gue_port`.
    pub fn load(gue_port: u16) -> Result<Decap> {
        // As for the balancer: the skeleton borrows its object storage for
        // its whole life, so one small allocation per load is leaked.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = DecapSkelBuilder::default()
            .open(storage)
            .context("opening the decapsulation object")?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .context("decapsulation object has no read-only data")?
            .gue_port = gue_port;
        let skel = open
            .load()
            .context("loading the decapsulation program into the kernel")?;
        Ok(Decap { skel })
    }

    pub fn prog(&self) -> &ProgramMut<'static> {
        &self.skel.progs.decap
    }

    /// The per-CPU counter array (pin it to read counters later).
    pub fn stats_map(&self) -> &libbpf_rs::MapMut<'static> {
        &self.skel.maps.decap_stats
    }

    pub fn stats(&self) -> Result<DecapStats> {
        DecapStats::read(self.stats_map())
    }
}

/// The program's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecapStats {
    pub v4_in_v4: u64,
    pub v6_in_v6: u64,
    pub v4_in_v6: u64,
    pub v6_in_v4: u64,
    pub gue_v4: u64,
    pub gue_v6: u64,
    pub passed: u64,
    pub dropped_malformed: u64,
}

type Field = fn(&mut DecapStats) -> &mut u64;

/// Every counter: its index in the map, its name, its field.
const COUNTERS: [(decap_stat, &str, Field); 8] = [
    (decap_stat::DECAP_V4_IN_V4, "ipv4-in-ipv4", |s| {
        &mut s.v4_in_v4
    }),
    (decap_stat::DECAP_V6_IN_V6, "ipv6-in-ipv6", |s| {
        &mut s.v6_in_v6
    }),
    (decap_stat::DECAP_V4_IN_V6, "ipv4-in-ipv6", |s| {
        &mut s.v4_in_v6
    }),
    (decap_stat::DECAP_V6_IN_V4, "ipv6-in-ipv4", |s| {
        &mut s.v6_in_v4
    }),
    (decap_stat::DECAP_GUE_V4, "gue-ipv4", |s| &mut s.gue_v4),
    (decap_stat::DECAP_GUE_V6, "gue-ipv6", |s| &mut s.gue_v6),
    (decap_stat::DECAP_PASSED, "passed-untouched", |s| {
        &mut s.passed
    }),
    (decap_stat::DECAP_DROP_MALFORMED, "dropped-malformed", |s| {
        &mut s.dropped_malformed
    }),
];

// One field per counter of the C enum, and the struct is nothing else.
const _: () = assert!(COUNTERS.len() == decap_stat::DECAP__COUNT.0 as usize);
const _: () = assert!(size_of::<DecapStats>() == COUNTERS.len() * size_of::<u64>());

impl DecapStats {
    /// Reads and sums the per-CPU counters of a `decap_stats` map.
    pub fn read(map: &dyn MapCore) -> Result<DecapStats> {
        let mut out = DecapStats::default();
        for (idx, name, field) in COUNTERS {
            *field(&mut out) = percpu::sum(map, idx.0)
                .with_context(|| format!("reading decapsulation counter {name}"))?
                .with_context(|| format!("decapsulation counter {name} is missing"))?;
        }
        Ok(out)
    }

    /// Frames decapsulated, of every kind.
    pub fn decapsulated(&self) -> u64 {
        self.v4_in_v4 + self.v6_in_v6 + self.v4_in_v6 + self.v6_in_v4 + self.gue_v4 + self.gue_v6
    }
}

impl fmt::Display for DecapStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut copy = *self;
        for (_, name, field) in COUNTERS {
            writeln!(f, "{name:<20} {}", field(&mut copy))?;
        }
        Ok(())
    }
}
