//! Loading, attaching and removing the health-check program: `ensure`
//! (idempotent, every reconciliation) and `down`.

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::kernel::{Control, Maps, Program};
use super::pins::{check_iface_name, HcPins};
use super::source::{interface, Sources};
use super::tc;
use crate::kernel::bpf::attach::{ensure_bpffs, ifindex, open_pinned, pin};
use crate::model::MacAddr;

/// What [`ensure`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ensured {
    /// The program was loaded (nothing complete was pinned before).
    pub loaded: bool,
    /// The filter was attached to the interface (it was not there).
    pub attached: bool,
    /// Interfaces the filter was removed from (no longer the one asked for).
    pub detached: Vec<String>,
    /// The control values now live.
    pub control: Control,
}

fn load_and_pin(pins: &HcPins) -> Result<()> {
    let p = Program::load()?;
    fs::create_dir_all(pins.maps()).context("creating the hc maps pin directory")?;
    for (name, map) in p.maps()?.named() {
        pin(map.as_fd(), &pins.maps().join(name))?;
    }
    fs::create_dir_all(pins.dir.join("prog")).context("creating the hc prog pin directory")?;
    pin(p.prog().as_fd(), &pins.prog())
}

/// Removes katran's filter from `iface` if the program there is the one
/// pinned at `marker`, then the marker. Gone interfaces are only forgotten.
fn detach_marked(pins: &HcPins, iface: &str) -> Result<()> {
    let marker = pins.marker(iface);
    let prog = open_pinned(&marker)?;
    if let Ok(idx) = ifindex(iface) {
        let ours = tc::prog_id(prog.as_fd())?;
        if tc::attached_id(prog.as_fd(), idx)? == Some(ours) {
            tc::detach(prog.as_fd(), idx)?;
        }
    }
    fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))
}

/// Adopts the pinned program (or loads and pins one), writes the control
/// values, attaches the program to `iface`'s tc egress (creating the clsact
/// qdisc when missing) and removes it from any other interface.
/// `gateway_mac` all zeros keeps the Ethernet destination the kernel
/// resolved. Idempotent: meant for every reconciliation. A pinned program
/// is kept as it is, like the balancer; `down` then `ensure` replaces it.
pub fn ensure(
    pin_dir: &Path,
    iface: &str,
    gateway_mac: MacAddr,
    sources: &Sources,
) -> Result<Ensured> {
    check_iface_name(iface)?;
    let link = interface(iface)?;
    if !link.ether {
        bail!("health-check forwarding needs an Ethernet interface; {iface} is not one");
    }
    let pins = HcPins::new(pin_dir);
    ensure_bpffs(&pins.dir)?;
    let loaded = !pins.loaded();
    let mut detached = Vec::new();
    if loaded {
        // Nothing or half pinned (an earlier run failed midway): start over.
        detached = down(pin_dir)?;
        detached.retain(|i| i != iface);
        ensure_bpffs(&pins.dir)?;
        load_and_pin(&pins)?;
    }
    let control = Control {
        gateway_mac: (gateway_mac != MacAddr::default()).then_some(gateway_mac),
        sources: *sources,
    };
    Maps::open_pinned(&pins.maps())?.set_control(&control)?;

    let prog = open_pinned(&pins.prog())?;
    let id = tc::prog_id(prog.as_fd())?;
    let idx = ifindex(iface)?;
    let attached = tc::attached_id(prog.as_fd(), idx)? != Some(id);
    if attached {
        tc::attach(prog.as_fd(), idx)?;
    }
    let marker = pins.marker(iface);
    if marker.exists() && tc::prog_id(open_pinned(&marker)?.as_fd())? != id {
        fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    }
    if !marker.exists() {
        fs::create_dir_all(pins.attached_dir()).context("creating the hc attached directory")?;
        pin(prog.as_fd(), &marker)?;
    }
    for other in pins.attached() {
        if other != iface {
            detach_marked(&pins, &other)?;
            detached.push(other);
        }
    }
    Ok(Ensured {
        loaded,
        attached,
        detached,
        control,
    })
}

/// Detaches the filter from every interface it was attached to and removes
/// `<pin_dir>/hc`. Returns those interfaces. Nothing pinned: nothing to do.
pub fn down(pin_dir: &Path) -> Result<Vec<String>> {
    let pins = HcPins::new(pin_dir);
    let ifaces = pins.attached();
    for iface in &ifaces {
        detach_marked(&pins, iface)?;
    }
    if pins.dir.exists() {
        fs::remove_dir_all(&pins.dir)
            .with_context(|| format!("removing {}", pins.dir.display()))?;
    }
    Ok(ifaces)
}
