//! The replaced dataplane's rings, lent to the new one for the moments of a
//! replacement (see `enum prev_ring_layout` in bpf/lb_types.h).
//!
//! A flow whose first packet reaches the old program after its connection
//! table was last copied, and whose next packet reaches the new program, is
//! in neither table when the new program sees it. With the same ring the
//! new program would still pick its real; with another `ring_size` it would
//! not. So while the interfaces switch, the new program sends a flow it
//! does not know (a TCP packet other than a SYN, a UDP datagram) where the
//! old ring sends it, translated to the new dataplane's real indices.
//! Outside a replacement the slot is empty, and an expiry time makes a
//! copy that a crashed replacement left behind harmless.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use libbpf_rs::{libbpf_sys, MapCore, MapFlags, MapHandle, MapType};

use super::abi::types::prev_ring_layout as L;
use super::kernel_store::KernelStore;
use super::mmap_array::U32Array;
use crate::model::VipKey;
use crate::store::MapStore;

/// How long the copy is honoured, in units of 2^30 ns (about 32 s): much
/// longer than a switch takes, short enough to end on its own.
const LIFETIME: u32 = 30;

/// Rings in the old dataplane's active generation, translated: VIP ->
/// the slots, as real indices of the new dataplane (0: none).
fn translated(
    old: &KernelStore,
    new_index: &HashMap<IpAddr, u32>,
) -> Result<Vec<(VipKey, Vec<u32>)>> {
    let gen = old.active_gen()?;
    let reals = old.reals()?;
    let to_new = |idx: u32| {
        reals
            .get(&idx)
            .and_then(|r| new_index.get(&r.addr))
            .copied()
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for v in old.vips()?.into_iter().filter(|v| v.gen == gen) {
        let ring = old.ring(v.ring_id)?;
        out.push((v.key, ring.into_iter().map(to_new).collect()));
    }
    Ok(out)
}

/// The new dataplane's `vip_num` of each VIP in its active generation.
fn vip_nums(new: &KernelStore) -> Result<BTreeMap<VipKey, u32>> {
    let gen = new.active_gen()?;
    Ok(new
        .vips()?
        .into_iter()
        .filter(|v| v.gen == gen)
        .map(|v| (v.key, v.vip_num))
        .collect())
}

/// The monotonic clock the program reads, in units of 2^30 ns.
fn clock_units() -> Result<u32> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: fills `ts`, which lives across the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    anyhow::ensure!(
        rc == 0,
        "clock_gettime: {}",
        std::io::Error::last_os_error()
    );
    let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    Ok((ns >> L::PREV_RING_CLOCK_SHIFT.0) as u32)
}

/// Copies the old dataplane's rings into a new map and places it in the new
/// dataplane's `prev_ring` (`outer`). Returns the number of VIPs copied.
pub fn install(
    outer: &MapHandle,
    old: &KernelStore,
    new: &KernelStore,
    new_index: &HashMap<IpAddr, u32>,
) -> Result<usize> {
    let size = old.limits().ring_size;
    let nums = vip_nums(new)?;
    let rings: Vec<(u32, Vec<u32>)> = translated(old, new_index)?
        .into_iter()
        .filter_map(|(key, ring)| nums.get(&key).map(|n| (*n, ring)))
        .collect();
    let vips = rings.iter().map(|(n, _)| n + 1).max().unwrap_or(0);
    let header = L::PREV_RING_HEADER.0 as usize;
    let slots = u32::try_from(header as u64 + u64::from(vips) * u64::from(size))
        .context("the old rings do not fit one map")?;
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: libbpf_sys::BPF_F_INNER_MAP | libbpf_sys::BPF_F_MMAPABLE,
        ..Default::default()
    };
    let inner = MapHandle::create(MapType::Array, Some("lb_prev_ring"), 4, 4, slots, &opts)
        .context("creating the map for the old rings")?;
    let mem = U32Array::map(&inner)?;
    for (num, ring) in &rings {
        let start = header + *num as usize * size as usize;
        for (i, real) in ring.iter().enumerate() {
            mem.set(start + i, *real);
        }
    }
    mem.set(L::PREV_RING_SIZE.0 as usize, size);
    mem.set(L::PREV_RING_UNTIL.0 as usize, clock_units()? + LIFETIME);
    let fd = inner.as_fd().as_raw_fd() as u32;
    outer
        .update(&0u32.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
        .context("lending the old rings to the new dataplane")?;
    Ok(rings.len())
}

/// Empties the new dataplane's `prev_ring` (the kernel frees the copy).
pub fn clear(outer: &MapHandle) -> Result<()> {
    match outer.delete(&0u32.to_ne_bytes()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context("taking the old rings back from the new dataplane"),
    }
}
