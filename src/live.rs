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

use anyhow::{bail, Context, Result};

use crate::bpf::attach::{self, Attached};
use crate::bpf::kernel_store::{KernelStore, Maps};
use crate::bpf::loader::{Dataplane, LoadOptions};
use crate::config::{Settings, XdpMode};
use crate::store::{Limits, MapStore};

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
    crate::flock_wait::exclusive(&file, dir, crate::flock_wait::APPLY_WAIT)?;
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

/// The adopted store must have the sizes the file asks for.
fn check_limits(have: Limits, want: &LoadOptions) -> Result<()> {
    for (name, h, w) in [
        ("ring_size", have.ring_size, want.ring_size),
        ("max_vips", have.max_vips, want.max_vips),
        ("max_reals", have.max_reals, want.max_reals),
    ] {
        if h != w {
            bail!(
                "the live dataplane was loaded with {name} = {h} but the file asks for {w}; \
                 sizes are fixed at load: `katran down` and apply again (this interrupts traffic)"
            );
        }
    }
    Ok(())
}

/// Adopts the pinned dataplane, or loads and pins a new one.
pub fn open_or_load(pins: &Pins, options: &LoadOptions) -> Result<(KernelStore, bool)> {
    if let Some(store) = open(pins)? {
        check_limits(store.limits(), options)?;
        return Ok((store, false));
    }
    attach::ensure_bpffs(&pins.dir)?;
    let dp = Dataplane::load(options)?;
    let maps = dp.maps()?;
    fs::create_dir_all(pins.maps()).context("creating the maps pin directory")?;
    for (name, handle) in maps.named() {
        attach::pin(handle.as_fd(), &pins.maps().join(name))?;
    }
    fs::create_dir_all(pins.dir.join("prog")).context("creating the program pin directory")?;
    attach::pin(dp.balancer().as_fd(), &pins.prog())?;
    Ok((KernelStore::new(maps)?, true))
}

/// Attaches the pinned program to `iface` unless a link is pinned there.
pub fn attach(pins: &Pins, iface: &str, mode: XdpMode) -> Result<Option<Attached>> {
    let path = pins.link(iface);
    if path.exists() {
        attach::check_pinned_link(&path)?;
        return Ok(None);
    }
    let prog = attach::open_pinned(&pins.prog())?;
    let (link, how) = attach::attach_xdp(prog.as_fd(), iface, mode)?;
    fs::create_dir_all(pins.links()).context("creating the links pin directory")?;
    attach::pin(link.as_fd(), &path)?;
    Ok(Some(how))
}

pub fn detach(pins: &Pins, iface: &str) -> Result<()> {
    attach::detach_pinned(&pins.link(iface))
}

/// Detaches every interface and removes every pin.
pub fn down(pins: &Pins) -> Result<()> {
    // the tc filter first: removing its pins alone would leave it running
    crate::markfwd::down(&pins.dir)?;
    for iface in pins.attached() {
        detach(pins, &iface)?;
    }
    if pins.dir.exists() {
        fs::remove_dir_all(&pins.dir)
            .with_context(|| format!("removing {}", pins.dir.display()))?;
    }
    Ok(())
}
