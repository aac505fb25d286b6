//! The real-server side of direct server return: the balancer sends each
//! real encapsulated frames, and a real without tunnel devices unwraps them
//! with the XDP decapsulation program. This module attaches that program to
//! an interface and pins it (so it outlives the command), detaches it, and
//! reads its counters; `setup` prepares the host to accept VIP traffic.

mod setup;

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_rs::MapHandle;

use crate::config::XdpMode;
use crate::kernel::bpf::attach::{attach_xdp, detach_pinned, ensure_bpffs, pin, Attached};
use crate::kernel::bpf::decap::Decap;
pub use crate::kernel::bpf::decap::{DecapStats, DEFAULT_GUE_PORT};
pub use setup::setup;

/// Where one interface's pins live: `<pin_dir>/real/<iface>/{link,stats}`.
struct Pins {
    dir: PathBuf,
    link: PathBuf,
    stats: PathBuf,
}

fn pins(iface: &str, pin_dir: &Path) -> Result<Pins> {
    crate::kernel::bpf::attach::check_iface_name(iface)?;
    let dir = pin_dir.join("real").join(iface);
    Ok(Pins {
        link: dir.join("link"),
        stats: dir.join("stats"),
        dir,
    })
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Loads the decapsulation program (GUE on UDP port `gue_port`), attaches
/// it to `iface` and pins the link and the counters under `pin_dir`.
pub fn attach(iface: &str, mode: XdpMode, pin_dir: &Path, gue_port: u16) -> Result<Attached> {
    let p = pins(iface, pin_dir)?;
    if p.link.exists() {
        bail!(
            "decapsulation is already attached to {iface} (link pinned at {}); detach it first",
            p.link.display()
        );
    }
    ensure_bpffs(&p.dir)?;
    // No link pin: a counters pin left beside it is stale.
    remove_if_present(&p.stats)?;
    let decap = Decap::load(gue_port)?;
    let (link, how) = attach_xdp(decap.prog().as_fd(), iface, mode).with_context(|| {
        format!("attaching decapsulation to {iface} (is another XDP program attached?)")
    })?;
    pin(decap.stats_map().as_fd(), &p.stats)?;
    // Pinned last: until here, dropping `link` detaches everything.
    if let Err(e) = pin(link.as_fd(), &p.link) {
        let _ = fs::remove_file(&p.stats);
        return Err(e);
    }
    Ok(how)
}

/// Detaches the decapsulation program from `iface` and removes its pins.
pub fn detach(iface: &str, pin_dir: &Path) -> Result<()> {
    let p = pins(iface, pin_dir)?;
    if !p.link.exists() {
        bail!(
            "decapsulation is not attached to {iface} (no link pinned at {})",
            p.link.display()
        );
    }
    detach_pinned(&p.link)?;
    remove_if_present(&p.stats)?;
    // Only empty directories go; anything else someone put there stays.
    let _ = fs::remove_dir(&p.dir);
    Ok(())
}

/// The counters of the program attached to `iface`, summed over CPUs.
pub fn stats(iface: &str, pin_dir: &Path) -> Result<DecapStats> {
    let p = pins(iface, pin_dir)?;
    if !p.stats.exists() {
        bail!(
            "decapsulation is not attached to {iface} (no counters pinned at {})",
            p.stats.display()
        );
    }
    let map = MapHandle::from_pinned_path(&p.stats)
        .with_context(|| format!("opening {}", p.stats.display()))?;
    DecapStats::read(&map)
}
