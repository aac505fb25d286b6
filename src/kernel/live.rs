//! The live dataplane on this machine: what is pinned under the pin
//! directory, loading it when absent, adopting it when present, attaching
//! it to interfaces, serializing appliers, and removing it all.
//!
//! Layout under the pin directory (default `/sys/fs/bpf/katran`):
//! `maps/<name>` every map, `prog/balancer` the program, `links/<iface>` one
//! XDP link per interface. Pinned links keep forwarding when no katran
//! process runs; a later process adopts them.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::Settings;
use crate::kernel::bpf::attach::{self, Attached};
use crate::kernel::bpf::kernel_store::{KernelStore, Maps};
use crate::kernel::bpf::loader::{Dataplane, LoadOptions};

pub struct Pins {
    pub dir: PathBuf,
}

impl Pins {
    pub fn new(dir: &Path) -> Pins {
        Pins {
            dir: dir.to_path_buf(),
        }
    }
    pub fn maps(&self) -> PathBuf {
        self.dir.join("maps")
    }
    pub fn stamp(&self) -> PathBuf {
        self.maps().join("lb_stamp")
    }
    pub fn prog(&self) -> PathBuf {
        self.dir.join("prog").join("balancer")
    }
    pub fn links(&self) -> PathBuf {
        self.dir.join("links")
    }
    pub fn link(&self, iface: &str) -> PathBuf {
        self.links().join(iface)
    }
    /// Whether a dataplane is pinned here.
    pub fn exists(&self) -> bool {
        self.maps().join("lb_gen").exists()
    }
    /// Interfaces with a pinned link.
    pub fn attached(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.links())
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Load-time sizes the configuration asks for.
pub fn load_options(s: &Settings) -> LoadOptions {
    LoadOptions {
        ring_size: s.ring_size,
        max_vips: s.max_vips,
        max_reals: s.max_reals,
        conn_table_size: s.conn_table_size,
        fallback_table_size: s.conn_table_size,
        // no per-CPU tables: every CPU uses the shared one
        forwarding_cpus: if s.shared_conn_table {
            Some(Vec::new())
        } else {
            s.forwarding_cpus.clone()
        },
        vip_real_counters: s.vip_real_counters,
    }
}

/// An exclusive lock on the pin directory, held while applying.
pub struct ApplyLock {
    _file: File,
}

/// Takes the apply lock, waiting (and saying so, naming the holder) while
/// another holds it, for at most `flock_wait::APPLY_WAIT`.
pub fn lock(dir: &Path) -> Result<ApplyLock> {
    let file = File::open(dir).with_context(|| format!("opening {} to lock it", dir.display()))?;
    crate::files::flock_wait::exclusive(&file, dir, crate::files::flock_wait::APPLY_WAIT)?;
    Ok(ApplyLock { _file: file })
}

/// Opens the pinned maps, or `None` when nothing is pinned.
pub fn open(pins: &Pins) -> Result<Option<KernelStore>> {
    if !pins.exists() {
        return Ok(None);
    }
    let maps = Maps::open_pinned(&pins.maps())?;
    Ok(Some(KernelStore::new(maps)?))
}

/// Loads a new dataplane and pins its maps and program. On failure,
/// whatever was pinned is removed again.
pub fn load_and_pin(pins: &Pins, options: &LoadOptions) -> Result<KernelStore> {
    let dp = Dataplane::load(options)?;
    pin(pins, &dp)?;
    dp.store()
}

/// Pins a loaded dataplane's maps and program under `pins`. On failure,
/// whatever was pinned is removed again.
pub fn pin(pins: &Pins, dp: &Dataplane) -> Result<()> {
    let pinned = (|| -> Result<()> {
        let maps = dp.maps()?;
        fs::create_dir_all(pins.maps()).context("creating the maps pin directory")?;
        for (name, handle) in maps.named() {
            attach::pin(handle.as_fd(), &pins.maps().join(name))?;
        }
        attach::pin(dp.stamp_map()?.as_fd(), &pins.stamp())?;
        fs::create_dir_all(pins.dir.join("prog")).context("creating the program pin directory")?;
        attach::pin(dp.balancer().as_fd(), &pins.prog())
    })();
    if let Err(e) = pinned {
        let _ = unpin_dataplane(pins);
        return Err(e);
    }
    Ok(())
}

/// Removes the maps and program pins (not links): undoes `load_and_pin`.
pub fn unpin_dataplane(pins: &Pins) -> Result<()> {
    for dir in [pins.maps(), pins.dir.join("prog")] {
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    Ok(())
}

/// The stamp of the pinned dataplane's build (see [`crate::kernel::bpf::STAMP`]);
/// `None` when a build older than stamps pinned it.
pub fn stamp(pins: &Pins) -> Result<Option<String>> {
    if !pins.stamp().exists() {
        return Ok(None);
    }
    let map = libbpf_rs::MapHandle::from_pinned_path(pins.stamp())
        .with_context(|| format!("opening {}", pins.stamp().display()))?;
    let value = libbpf_rs::MapCore::lookup(&map, &0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        .context("reading the dataplane's stamp")?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .with_context(|| format!("{} holds no 8-byte stamp", pins.stamp().display()))?;
    Ok(Some(format!("{:016x}", u64::from_ne_bytes(value))))
}

/// The id of the pinned balancer program, if one is pinned.
pub fn prog_id(pins: &Pins) -> Result<Option<u32>> {
    if !pins.prog().exists() {
        return Ok(None);
    }
    let prog = attach::open_pinned(&pins.prog())?;
    Ok(Some(attach::prog_id_of(prog.as_fd())?))
}

/// Attaches the pinned program to `iface` in exactly `how` and pins the link.
pub fn attach(pins: &Pins, iface: &str, how: Attached) -> Result<()> {
    let prog = attach::open_pinned(&pins.prog())?;
    let link = attach::attach_as(prog.as_fd(), iface, how)?;
    fs::create_dir_all(pins.links()).context("creating the links pin directory")?;
    attach::pin(link.as_fd(), &pins.link(iface))
}

pub fn detach(pins: &Pins, iface: &str) -> Result<()> {
    attach::detach_pinned(&pins.link(iface))
}

/// Withdraws every announcement route (see [`crate::kernel::announce`]): a node
/// that stops forwarding must not keep attracting traffic.
pub fn withdraw_all() -> Result<usize> {
    let routes = crate::kernel::netlink::katran_routes()?;
    for &(table, addr) in &routes {
        crate::kernel::netlink::remove_route(table, addr)?;
    }
    Ok(routes.len())
}

/// Withdraws every announcement, detaches every interface and removes
/// every pin.
pub fn down(pins: &Pins) -> Result<()> {
    withdraw_all()?;
    // the tc filter first: removing its pins alone would leave it running
    crate::kernel::markfwd::down(&pins.dir)?;
    for iface in pins.attached() {
        detach(pins, &iface)?;
    }
    if pins.dir.exists() {
        fs::remove_dir_all(&pins.dir)
            .with_context(|| format!("removing {}", pins.dir.display()))?;
    }
    Ok(())
}

/// What is no longer in place of a dataplane that should run on `ifaces`:
/// `None` when the maps and program are pinned and every interface runs
/// the pinned program through its pinned link; otherwise what is gone, in
/// words (someone ran `katran down`, moved the pins, or detached a link).
pub fn missing(pins: &Pins, ifaces: &[String]) -> Option<String> {
    if !pins.exists() {
        return Some(format!(
            "no dataplane is pinned at {} any more (removed or moved by another process)",
            pins.dir.display()
        ));
    }
    let prog = match prog_id(pins) {
        Ok(Some(id)) => id,
        Ok(None) => return Some(format!("{} is gone", pins.prog().display())),
        Err(e) => return Some(format!("{e:#}")),
    };
    for iface in ifaces {
        if !pins.link(iface).exists() {
            return Some(format!("{} is gone", pins.link(iface).display()));
        }
        let running = attach::ifindex(iface)
            .and_then(attach::query)
            .map(|q| q.attached().map(|(id, _)| id));
        match running {
            Ok(Some(id)) if id == prog => {}
            Ok(Some(id)) => {
                return Some(format!(
                    "{iface} runs XDP program {id} ({}), not katran's {prog}",
                    attach::prog_name(id)
                ))
            }
            Ok(None) => return Some(format!("{iface} runs no XDP program")),
            Err(e) => return Some(format!("{iface}: {e:#}")),
        }
    }
    None
}
