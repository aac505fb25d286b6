//! Replacing the running dataplane without dropping a flow: after an
//! upgrade (the pinned program is another build) or for a load-time setting
//! (`ring_size`, `max_vips`, `max_reals`, `conn_table`, `conn_table_size`,
//! `xdp_mode`).
//!
//! The new dataplane is loaded beside the old one and filled with what
//! runs now, verdicts included, while the old one keeps forwarding. It is
//! pinned under `<pin_dir>/next`, the old connection tables are copied in,
//! and every attached interface is switched with `bpf_link_update`, which
//! swaps the program of an XDP link atomically: the interface runs one
//! program or the other, never none. The old program then runs nowhere, so
//! the entries it created meanwhile are copied too; the pins change places
//! (`maps`, `prog` -> `retired/`, `next/` -> in place), the file's changes
//! are applied to the new dataplane as an ordinary update, and the old one
//! is unpinned. While the interfaces switch, the new program is lent the
//! old one's rings (`bpf::prev_ring`), so a flow the old program started
//! after its table was copied keeps its real even with a new `ring_size`.
//!
//! Until then, a failure takes everything back: links point at the old
//! program again, new attachments go, the pins return, the staged
//! dataplane is unpinned. The old one was never written to.
//!
//! An `xdp_mode` change cannot be a link update (a link keeps its mode), so
//! those interfaces are detached and attached again: packets arriving in
//! between pass to the kernel's stack unbalanced (docs/replace.md has the
//! measured gap).

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use libbpf_rs::MapHandle;

use super::{apply_marks, take_all_back, Outcome, Prepared, Undo};
use crate::kernel::bpf::attach::{self, Attached};
use crate::kernel::bpf::conn_carry::{self, Carried, Tables};
use crate::kernel::bpf::loader::Dataplane;
use crate::kernel::bpf::prev_ring;
use crate::kernel::live::{self, Pins};
use crate::model::State;
use crate::plan::{self, Plan};
use crate::snapshot::Snapshot;
use crate::store::{Limits, MemStore};

/// Where the new dataplane is staged.
pub fn next(pins: &Pins) -> Pins {
    Pins::new(&pins.dir.join("next"))
}

/// Where the old dataplane's pins wait to be removed.
fn retired(pins: &Pins) -> Pins {
    Pins::new(&pins.dir.join("retired"))
}

/// A replacement, as prepared.
pub struct Replacement {
    /// Interfaces whose XDP mode changes: (interface, from, to).
    switch: Vec<(String, Attached, Attached)>,
    /// Entries in the old connection tables when planned.
    connections: usize,
    /// Where the plan's writes of the file's changes start: the writes
    /// before fill the new dataplane with what runs now (see [`Self::plan`]).
    then_at: usize,
}

/// What a replacement carried over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Connection-table entries written before the switch and after it
    /// (those the old dataplane created in between).
    pub before: Carried,
    pub after: Carried,
}

impl Replaced {
    pub fn summary(&self) -> String {
        let gone = self.before.real_gone + self.after.real_gone;
        let full = self.before.set_full + self.after.set_full;
        let mut s = format!(
            "replaced the dataplane: {} connection entries carried over ({} more after the switch)",
            self.before.written + self.after.written,
            self.after.written
        );
        if gone > 0 {
            s.push_str(&format!("; {gone} named a real no longer configured"));
        }
        if full > 0 {
            s.push_str(&format!("; {full} found their set full and were left out"));
        }
        s.push_str("; counters restart at zero");
        s
    }
}

/// Checks that the running dataplane's connections can be carried over.
pub fn prepare(pins: &Pins, switch: Vec<(String, Attached, Attached)>) -> Result<Replacement> {
    let tables = Tables::open_pinned(&pins.maps())
        .context("the running dataplane cannot be replaced without moving flows")?;
    Ok(Replacement {
        switch,
        connections: tables.count()?,
        then_at: 0,
    })
}

impl Replacement {
    /// The plan. When what runs now can be read and fits the new sizes,
    /// the new dataplane is first filled with exactly that, so a flow the
    /// old dataplane starts while the interfaces switch reaches the same
    /// real in either; the file's changes follow as an ordinary update of
    /// the new dataplane once every connection is carried over. Otherwise
    /// the new dataplane gets the file at once (and flows started during
    /// the switch may land on another real where the file moves slots).
    pub fn plan(&mut self, want: &State, live: Option<&State>, limits: Limits) -> Result<Plan> {
        let mut mem = MemStore::new(limits);
        let empty = Snapshot::empty(limits);
        let first = live.and_then(|lv| plan::build(&mem, &empty, lv).ok());
        let mut plan = match first {
            Some(first) => {
                for w in &first.writes {
                    w.run(&mut mem)?;
                }
                let mut then = plan::build(&mem, &Snapshot::read(&mem)?, want)?;
                self.then_at = first.writes.len();
                let mut writes = first.writes;
                writes.append(&mut then.writes);
                then.map_writes = writes.len();
                then.writes = writes;
                then
            }
            None => {
                let mut plan = plan::build(&mem, &empty, want)?;
                self.then_at = plan.writes.len();
                if live.is_some() {
                    plan.notes.push(
                        "the running configuration does not fit the new sizes: the new \
                         dataplane gets the file at once"
                            .into(),
                    );
                }
                plan
            }
        };
        if live.is_none() {
            plan.notes.push(
                "the running dataplane's configuration cannot be read by this version: \
                 the changes below are the whole file"
                    .into(),
            );
        }
        plan.carried_connections = Some(self.connections);
        plan.notes.push(format!(
            "a new dataplane is loaded beside the running one; its {} connection-table \
             entries are carried over, interfaces switch atomically, counters restart at zero",
            self.connections
        ));
        for (iface, from, to) in &self.switch {
            plan.notes.push(format!(
                "{iface}: {from} -> {to} XDP is a detach and attach, not an atomic switch: \
                 packets arriving in between are not balanced"
            ));
        }
        Ok(plan)
    }
}

/// Real address -> index, in a dataplane written from a plan.
fn index_of(store: &crate::kernel::bpf::kernel_store::KernelStore) -> Result<HashMap<IpAddr, u32>> {
    let reals = crate::store::MapStore::reals(store).context("reading the new reals")?;
    Ok(reals.iter().map(|(i, r)| (r.addr, *i)).collect())
}

fn old_reals(pins: &Pins) -> Result<HashMap<u32, IpAddr>> {
    let path = pins.maps().join("reals");
    let reals = MapHandle::from_pinned_path(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    conn_carry::real_addresses(&reals)
}

/// Copies the connections of the dataplane pinned at `from` into `to`.
fn carry(from: &Pins, to: &Tables, index: &HashMap<IpAddr, u32>) -> Result<Carried> {
    let old = Tables::open_pinned(&from.maps())?;
    let conns = conn_carry::read(&old, &old_reals(from)?)?;
    conn_carry::write(to, &conns, index)
}

/// Moves pins from `a` to `b` for the dataplane's maps and program.
fn move_pins(a: &Pins, b: &Pins) -> Result<()> {
    fs::create_dir_all(&b.dir).with_context(|| format!("creating {}", b.dir.display()))?;
    let parts = [a.maps(), a.dir.join("prog")];
    let to = [b.maps(), b.dir.join("prog")];
    for (n, (x, y)) in parts.iter().zip(&to).enumerate() {
        if let Err(e) = fs::rename(x, y) {
            // put back what moved, so the pins stay whole
            for (x, y) in parts.iter().zip(&to).take(n) {
                let _ = fs::rename(y, x);
            }
            return Err(e).with_context(|| format!("moving {} to {}", x.display(), y.display()));
        }
    }
    Ok(())
}

/// The old dataplane's pins aside, the new one's in place.
fn swap(pins: &Pins) -> Result<()> {
    move_pins(pins, &retired(pins))?;
    if let Err(e) = move_pins(&next(pins), pins) {
        let _ = move_pins(&retired(pins), pins);
        return Err(e);
    }
    Ok(())
}

/// Undoes [`swap`].
pub fn swap_back(pins: &Pins) -> Result<()> {
    move_pins(pins, &next(pins))?;
    move_pins(&retired(pins), pins)?;
    let _ = fs::remove_dir(retired(pins).dir);
    Ok(())
}

/// Removes the staged new dataplane.
pub fn unpin_next(pins: &Pins) -> Result<()> {
    live::unpin_dataplane(&next(pins))?;
    let _ = fs::remove_dir(next(pins).dir);
    Ok(())
}

/// Points `iface`'s link at the old program again (the pins are back in
/// place: the old program at `prog`, the new one at `next/prog`).
pub fn link_back(pins: &Pins, iface: &str) -> Result<()> {
    let old = attach::open_pinned(&pins.prog())?;
    let new = attach::open_pinned(&next(pins).prog())?;
    attach::link_update(&pins.link(iface), old.as_fd(), new.as_fd())
}

/// Removes what an earlier, interrupted replacement left staged, unless an
/// interface runs it.
fn clear_stale(pins: &Pins) -> Result<()> {
    for stale in [next(pins), retired(pins)] {
        if !stale.dir.exists() {
            continue;
        }
        if let Ok(Some(id)) = live::prog_id(&stale) {
            for iface in pins.attached() {
                let link = attach::open_pinned(&pins.link(&iface))?;
                let (prog, _) = attach::link_info(link.as_fd())?;
                anyhow::ensure!(
                    prog != id,
                    "{iface} runs the program pinned at {}, left by an interrupted replacement; \
                     `katran down` and apply again",
                    stale.prog().display()
                );
            }
        }
        log::warn!(
            "removing {}, left by an interrupted replacement",
            stale.dir.display()
        );
        fs::remove_dir_all(&stale.dir)
            .with_context(|| format!("removing {}", stale.dir.display()))?;
    }
    Ok(())
}

/// The steps of a replacement, in order; see [`commit_checked`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The new dataplane is loaded (nothing of it is pinned).
    Loaded,
    /// What runs now (or the file, see [`Replacement::plan`]) is written
    /// into it.
    Written,
    /// It is pinned under `next/`.
    Staged,
    /// The old connection tables are copied in.
    Carried,
    /// One interface runs the new program (after each).
    Switched,
    /// New interfaces are attached (after each).
    Attached,
    /// Interfaces no longer in the file are detached (after each).
    Detached,
    /// The connections the old dataplane made meanwhile are copied in.
    CarriedLate,
    /// The pins changed places.
    Swapped,
    /// The file's changes are applied to the new dataplane.
    Updated,
    /// Health-check marks are applied: the last step that can be undone.
    Marked,
}

impl Step {
    pub const ALL: [Step; 11] = [
        Step::Loaded,
        Step::Written,
        Step::Staged,
        Step::Carried,
        Step::Switched,
        Step::Attached,
        Step::Detached,
        Step::CarriedLate,
        Step::Swapped,
        Step::Updated,
        Step::Marked,
    ];
}

/// Executes a prepared replacement (see the module documentation).
pub fn commit(p: Prepared) -> Result<Outcome> {
    commit_checked(p, &mut |_| Ok(()))
}

/// [`commit`], calling `after` once each step is done; an error it returns
/// is handled as a kernel failure at that point (all is taken back). The
/// tests inject failures this way.
pub fn commit_checked(p: Prepared, after: &mut dyn FnMut(Step) -> Result<()>) -> Result<Outcome> {
    let r = p.replace.as_ref().context("not a replacement")?;
    let (now, then) = p.plan.writes.split_at(r.then_at.min(p.plan.writes.len()));
    let staged = next(&p.pins);
    // Nothing the running dataplane uses changes until the new one is
    // staged: a failure up to there only drops the new one.
    let (dp, mut store) = (|| {
        clear_stale(&p.pins)?;
        let options = live::load_options(&p.cfg.settings);
        let dp = Dataplane::load(&options).context("loading the new dataplane")?;
        after(Step::Loaded)?;
        let mut store = dp.store()?;
        for (n, w) in now.iter().enumerate() {
            w.run(&mut store)
                .with_context(|| format!("map write {} of {}", n + 1, p.plan.writes.len()))?;
        }
        after(Step::Written)?;
        live::pin(&staged, &dp).context("pinning the new dataplane")?;
        anyhow::Ok((dp, store))
    })()
    .map_err(|e| e.context("replacing the dataplane failed; the running one was not touched"))?;

    let mut undo = vec![Undo::UnpinNext];
    let (mut before, mut later) = (Carried::default(), Carried::default());
    let done = after(Step::Staged).and_then(|()| {
        let index = index_of(&store)?;
        let new_tables = Tables::open_pinned(&staged.maps())?;
        lend_old_rings(&p.pins, &dp, &store, &index)?;
        // while the old dataplane still forwards: as close to the switch
        // as possible, so few connections start in between
        before = carry(&p.pins, &new_tables, &index)?;
        after(Step::Carried)?;
        switch(&p, r, &dp, &mut undo, after)?;
        // the old program runs nowhere now: its tables are final
        later = carry(&p.pins, &new_tables, &index)?;
        after(Step::CarriedLate)?;
        swap(&p.pins)?;
        undo.push(Undo::SwapBack);
        after(Step::Swapped)?;
        for (n, w) in then.iter().enumerate() {
            w.run(&mut store).with_context(|| {
                format!("map write {} of {}", now.len() + n + 1, p.plan.writes.len())
            })?;
        }
        after(Step::Updated)?;
        super::withdraw(&p.routes, &mut undo)?;
        super::announce(&p.routes, &mut undo)?;
        apply_marks(&p.pins, &p.cfg, &p.plan, &p.live_marks, &mut undo)?;
        after(Step::Marked)
    });
    if let Err(e) = done {
        return Err(take_all_back(&p.pins, &mut store, undo, e));
    }
    let after = later;
    // every connection of the old dataplane is in the new tables now
    if let Err(e) = dp.prev_ring_map().and_then(|m| prev_ring::clear(&m)) {
        log::warn!("{e:#} (the copy expires by itself within a minute)");
    }
    if let Err(e) = fs::remove_dir_all(retired(&p.pins).dir) {
        log::warn!("removing the old dataplane's pins: {e}");
    }
    let _ = fs::remove_dir(&staged.dir);
    Ok(Outcome {
        report: None,
        loaded: false,
        attached: p.attach,
        detached: super::removed(p.detach, &p.cfg),
        marks: p.marks,
        state: p.cfg.state,
        plan: p.plan,
        replaced: Some(Replaced { before, after }),
    })
}

/// Lends the running dataplane's rings to the new one for the switch (see
/// `bpf::prev_ring`). A running dataplane this version cannot read lends
/// nothing: its flows then rely on the connection tables alone.
fn lend_old_rings(
    pins: &Pins,
    dp: &Dataplane,
    new: &crate::kernel::bpf::kernel_store::KernelStore,
    index: &HashMap<IpAddr, u32>,
) -> Result<()> {
    let old = match live::open(pins) {
        Ok(Some(old)) => old,
        Ok(None) => return Ok(()),
        Err(e) => {
            log::info!("the running dataplane's rings cannot be read ({e:#}); not lent");
            return Ok(());
        }
    };
    let vips = prev_ring::install(&dp.prev_ring_map()?, &old, new, index)?;
    log::debug!("lent the rings of {vips} VIPs to the new dataplane for the switch");
    Ok(())
}

/// Every interface to the new program, removed interfaces detached; each
/// step recorded in `undo`.
fn switch(
    p: &Prepared,
    r: &Replacement,
    dp: &Dataplane,
    undo: &mut Vec<Undo>,
    after: &mut dyn FnMut(Step) -> Result<()>,
) -> Result<()> {
    let pins = &p.pins;
    let old_prog = attach::open_pinned(&pins.prog())?;
    let new_prog = dp.balancer().as_fd();
    let stays = |i: &String| p.cfg.settings.interfaces.contains(i);
    for iface in pins.attached().into_iter().filter(stays) {
        match r.switch.iter().find(|s| s.0 == iface) {
            Some((_, from, to)) => {
                live::detach(pins, &iface)?;
                undo.push(Undo::Reattach(iface.clone(), *from));
                let link = attach::attach_as(new_prog, &iface, *to)?;
                attach::pin(link.as_fd(), &pins.link(&iface))?;
                undo.push(Undo::Detach(iface));
            }
            None => {
                attach::link_update(&pins.link(&iface), new_prog, old_prog.as_fd())?;
                undo.push(Undo::LinkBack(iface));
            }
        }
        after(Step::Switched)?;
    }
    for (iface, how) in &p.attach {
        if pins.link(iface).exists() {
            // a stale link of an interface made again
            live::detach(pins, iface)?;
        }
        let link = attach::attach_as(new_prog, iface, *how)?;
        fs::create_dir_all(pins.links()).context("creating the links pin directory")?;
        attach::pin(link.as_fd(), &pins.link(iface))?;
        undo.push(Undo::Detach(iface.clone()));
        after(Step::Attached)?;
    }
    // before the swap, so taking it back attaches the old program again
    for (iface, how) in p.detach.iter().filter(|(i, _)| !stays(i)) {
        live::detach(pins, iface)?;
        if let Some(how) = how {
            undo.push(Undo::Reattach(iface.clone(), *how));
        }
        after(Step::Detached)?;
    }
    Ok(())
}
