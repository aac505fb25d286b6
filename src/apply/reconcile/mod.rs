//! One reconciliation, in two phases.
//!
//! *Prepare* reads the live dataplane once and resolves everything that can
//! fail for a reason in the file or on the host: the gateway, every
//! interface (exists, is Ethernet, can take XDP in the mode asked, runs no
//! other XDP program), the load-time sizes, every map's capacity. It yields
//! the whole plan — what `--dry-run` prints — and writes nothing.
//!
//! *Commit* executes that plan and nothing else: the inactive generation's
//! writes, new interfaces, the flip, removed interfaces, health-check
//! marks. A kernel failure on the way undoes what was visible (interfaces
//! attached, the flip, interfaces detached, a freshly loaded dataplane), so
//! packets see the configuration they saw before.
//!
//! Both phases run under the apply lock.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{bail, Context, Result};

use crate::apply::errors::IfaceProblem;
use crate::apply::ApplyReport;
use crate::config::{Config, Gateway, XdpMode};
use crate::kernel::bpf::attach::{self, ensure_bpffs, Attached};
use crate::kernel::bpf::kernel_store::KernelStore;
use crate::kernel::live::{self, ApplyLock, Pins};
use crate::kernel::markfwd::{self, MarkChanges};
use crate::model::{MacAddr, State};
use crate::plan::host::{self, LoadShape};
use crate::plan::{self, Change, Plan};
use crate::snapshot::Snapshot;
use crate::store::{Limits, MapStore, MemStore, Write};

pub mod replace;

/// What one reconciliation did.
pub struct Outcome {
    pub plan: Plan,
    /// `None` when nothing needed writing.
    pub report: Option<ApplyReport>,
    /// Whether the dataplane was loaded (nothing was pinned before).
    pub loaded: bool,
    pub attached: Vec<(String, Attached)>,
    pub detached: Vec<String>,
    /// Socket-mark mappings added, changed or removed.
    pub marks: MarkChanges,
    /// The state now live (the file's, gateway resolved, verdicts applied).
    pub state: State,
    /// The dataplane was replaced: what was carried over.
    pub replaced: Option<replace::Replaced>,
}

/// Whose health verdicts an apply uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdicts {
    /// The live ones, for reals whose VIP is still checked (`katran apply`:
    /// a manual apply keeps a drained real drained).
    KeepLive,
    /// `cfg.state.drained` as given (the daemon, which runs the checks).
    Given,
}

/// Fills in `gateway_mac = "auto"`; when the kernel cannot tell, keeps
/// `fallback` (the live value) if there is one, saying so.
pub fn resolve_gateway(cfg: &mut Config, fallback: Option<MacAddr>) -> Result<()> {
    if cfg.settings.gateway == Gateway::Auto {
        cfg.state.globals.gateway_mac = match (crate::kernel::gateway::resolve(), fallback) {
            (Ok(mac), _) => mac,
            (Err(e), Some(mac)) => {
                log::warn!("gateway_mac = \"auto\": {e:#}; keeping the live {mac}");
                mac
            }
            (Err(e), None) => return Err(e).context("gateway_mac = \"auto\""),
        };
    }
    Ok(())
}

/// A plan ready to commit, with what it was made from.
pub struct Prepared {
    pub cfg: Config,
    pub plan: Plan,
    pins: Pins,
    _lock: Option<ApplyLock>,
    /// `None`: nothing is pinned yet (commit loads the dataplane), or what
    /// is pinned is replaced without being read.
    store: Option<KernelStore>,
    /// The dataplane is replaced by a new one loaded beside it.
    replace: Option<replace::Replacement>,
    routes: Routes,
    attach: Vec<(String, Attached)>,
    detach: Vec<(String, Option<Attached>)>,
    marks: MarkChanges,
    live_marks: Option<BTreeMap<u32, IpAddr>>,
}

/// Keeps the live verdicts of reals whose VIP still has a health check.
fn keep_live_verdicts(cfg: &mut Config, live: Option<&State>) {
    let Some(live) = live else { return };
    cfg.state.drained = live
        .drained
        .iter()
        .filter(|(vip, real)| {
            cfg.healthchecks.contains_key(vip)
                && cfg
                    .state
                    .vips
                    .iter()
                    .any(|v| v.key == *vip && v.reals.iter().any(|b| b.addr == *real))
        })
        .copied()
        .collect();
}

/// Interfaces to attach (with the mode decided now) and to detach, and the
/// plan's lines for them. Fails on anything the file asks that the host
/// cannot do. `lenient` (a dry-run with no dataplane on this host, e.g. in
/// CI) plans interfaces this host does not have instead of failing.
/// What a plan does to interfaces.
#[derive(Default)]
struct IfacePlan {
    changes: Vec<Change>,
    attach: Vec<(String, Attached)>,
    detach: Vec<(String, Option<Attached>)>,
    /// Attached interfaces whose XDP mode changes: (interface, from, to).
    switch: Vec<(String, Attached, Attached)>,
}

fn plan_interfaces(
    pins: &Pins,
    cfg: &Config,
    prog: Option<u32>,
    lenient: bool,
) -> Result<IfacePlan> {
    let mut changes = Vec::new();
    let mut attach = Vec::new();
    let mut switch = Vec::new();
    for iface in &cfg.settings.interfaces {
        attach::check_iface_name(iface)?;
        let idx = match attach::ifindex(iface) {
            Ok(idx) => idx,
            Err(_) if lenient => {
                changes.push(Change::Attach {
                    interface: iface.clone(),
                    mode: format!("{:?}", cfg.settings.xdp_mode).to_lowercase(),
                });
                continue;
            }
            Err(e) => {
                return Err(IfaceProblem::Missing {
                    iface: iface.clone(),
                    reason: e.root_cause().to_string(),
                }
                .into())
            }
        };
        if !attach::is_ethernet(iface)? {
            return Err(IfaceProblem::NotEthernet(iface.clone()).into());
        }
        let q = attach::query(idx)?;
        let ours = match (pins.link(iface).exists(), prog) {
            (true, Some(prog)) => {
                attach::check_pinned_link(&pins.link(iface))?;
                let link = attach::open_pinned(&pins.link(iface))?;
                let (link_prog, link_if) = attach::link_info(std::os::fd::AsFd::as_fd(&link))
                    .with_context(|| {
                        format!("{} is not an XDP link", pins.link(iface).display())
                    })?;
                link_prog == prog && link_if == idx
            }
            _ => false,
        };
        if ours {
            let how = q.attached().map(|(_, how)| how);
            let want = match cfg.settings.xdp_mode {
                XdpMode::Native => Some(Attached::Native),
                XdpMode::Generic => Some(Attached::Generic),
                XdpMode::Auto => None,
            };
            if let (Some(have), Some(want)) = (how, want) {
                if have != want {
                    changes.push(Change::ReplaceDataplane {
                        why: format!("xdp_mode on {iface} {have} -> {want}"),
                    });
                    switch.push((iface.clone(), have, want));
                }
            }
            continue;
        }
        if let Some((id, how)) = q.attached() {
            return Err(IfaceProblem::OtherProgram {
                iface: iface.clone(),
                id,
                name: attach::prog_name(id),
                how,
            }
            .into());
        }
        let how = match cfg.settings.xdp_mode {
            XdpMode::Native if !q.native_capable => {
                return Err(IfaceProblem::NoNativeXdp(iface.clone()).into())
            }
            XdpMode::Native => Attached::Native,
            XdpMode::Generic => Attached::Generic,
            XdpMode::Auto if q.native_capable => Attached::Native,
            XdpMode::Auto => Attached::Generic,
        };
        changes.push(Change::Attach {
            interface: iface.clone(),
            mode: how.to_string(),
        });
        attach.push((iface.clone(), how));
    }
    let mut detach = Vec::new();
    for iface in pins.attached() {
        if !cfg.settings.interfaces.contains(&iface) {
            let how = attach::ifindex(&iface)
                .and_then(attach::query)
                .ok()
                .and_then(|q| q.attached().map(|(_, h)| h));
            changes.push(Change::Detach {
                interface: iface.clone(),
            });
            detach.push((iface, how));
        }
    }
    // a link pinned for an interface that was deleted and made again is
    // stale: replace it
    for (iface, _) in &attach {
        if pins.link(iface).exists() {
            detach.push((iface.clone(), None));
        }
    }
    Ok(IfacePlan {
        changes,
        attach,
        detach,
        switch,
    })
}

/// How a plan will be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Apply,
    /// Only shown: nothing is created, not even the pin directory, and
    /// with no dataplane on this host the plan is made against nothing.
    DryRun,
}

/// Prepare: read, resolve, check, plan. Writes nothing (an apply may create
/// the pin directory to lock it).
pub fn prepare(mut cfg: Config, verdicts: Verdicts, purpose: Purpose) -> Result<Prepared> {
    let pins = Pins::new(&cfg.settings.pin_dir);
    let lock =
        if purpose == Purpose::Apply {
            ensure_bpffs(&pins.dir)?;
            Some(live::lock(&pins.dir)?)
        } else if pins.dir.try_exists().with_context(|| {
            format!(
                "cannot read the live dataplane at {}: cannot tell whether one is pinned \
                 there (a dry-run reads the live maps: run it as root, or with CAP_BPF and \
                 read access to the directory)",
                pins.dir.display()
            )
        })? {
            Some(live::lock(&pins.dir).with_context(|| {
                format!("cannot read the live dataplane at {}", pins.dir.display())
            })?)
        } else {
            None
        };
    let pinned = pins.exists();
    let live_stamp = if pinned { live::stamp(&pins)? } else { None };
    let other_build = pinned && live_stamp.as_deref() != Some(crate::kernel::bpf::STAMP);
    let readable = |e: anyhow::Error| -> Result<Option<KernelStore>> {
        if other_build {
            // another build's maps: replaced, so not read
            Ok(None)
        } else {
            Err(e.context(format!(
                "cannot read the live dataplane at {}",
                pins.dir.display()
            )))
        }
    };
    let store = live::open(&pins).or_else(readable)?;
    let limits = Limits::for_sizes(
        cfg.settings.ring_size,
        cfg.settings.max_vips,
        cfg.settings.max_reals,
    );
    let empty = MemStore::new(limits);
    let snap = match &store {
        Some(s) => match Snapshot::read(s) {
            Ok(snap) => Some(snap),
            Err(_) if other_build => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let live_state = match &snap {
        Some(snap) => snap.state()?,
        None => None,
    };
    let snap = snap.unwrap_or_else(|| Snapshot::empty(limits));
    let fallback = live_state.as_ref().map(|s| s.globals.gateway_mac);
    match resolve_gateway(&mut cfg, fallback) {
        Err(e) if purpose == Purpose::Apply || store.is_some() => return Err(e),
        Err(e) => log::warn!("{e:#}: planning with an unresolved gateway"),
        Ok(()) => {}
    }
    if verdicts == Verdicts::KeepLive {
        keep_live_verdicts(&mut cfg, live_state.as_ref());
    }

    let mut changes = Vec::new();
    if other_build {
        changes.push(Change::ReplaceDataplane {
            why: format!(
                "program: pinned build {} -> this build {}",
                live_stamp.as_deref().unwrap_or("(unstamped)"),
                crate::kernel::bpf::STAMP
            ),
        });
    }
    if let (Some(s), false) = (&store, other_build) {
        let cpus = libbpf_rs::num_possible_cpus().context("counting CPUs")? as u32;
        changes.extend(host::replacements(
            &s.load_shape()?,
            &LoadShape::wanted(&cfg.settings, cpus),
        ));
    }
    let lenient = purpose == Purpose::DryRun && !pinned;
    let ifaces = plan_interfaces(&pins, &cfg, live::prog_id(&pins)?, lenient)?;
    changes.extend(ifaces.changes);
    let replace = if changes.iter().any(Change::needs_replacement) {
        Some(replace::prepare(&pins, ifaces.switch)?)
    } else {
        None
    };

    if cfg.somarks.len() > markfwd::MAX_MAPPINGS as usize {
        bail!(
            "{} health-check marks; the forwarding table holds {}",
            cfg.somarks.len(),
            markfwd::MAX_MAPPINGS
        );
    }
    let live_marks = if store.is_some() {
        markfwd::read_marks(&pins.dir)?
    } else {
        None
    };
    let mark_changes = host::marks(&live_marks.clone().unwrap_or_default(), &cfg.somarks);
    let marks = markfwd::diff(live_marks.as_ref(), &cfg.somarks);
    let routes = plan_routes(&cfg, &pins)?;

    let reader: &dyn MapStore = match &store {
        Some(s) => s,
        None => &empty,
    };
    let mut replace = replace;
    let mut plan = match &mut replace {
        Some(r) => r.plan(&cfg.state, live_state.as_ref(), limits)?,
        None => plan::build(reader, &snap, &cfg.state)?,
    };
    if cfg.settings.gateway == Gateway::Auto {
        plan.notes.push(format!(
            "gateway_mac = \"auto\" resolves to {}",
            cfg.state.globals.gateway_mac
        ));
    }
    changes.append(&mut plan.changes);
    changes.extend(mark_changes);
    changes.extend(routes.changes());
    plan.changes = changes;
    Ok(Prepared {
        cfg,
        plan,
        pins,
        _lock: lock,
        store,
        attach: ifaces.attach,
        detach: ifaces.detach,
        marks,
        live_marks,
        replace,
        routes,
    })
}

/// Announcement routes to add and remove (see [`crate::kernel::announce`]).
#[derive(Default)]
pub struct Routes {
    pub add: Vec<(u32, IpAddr)>,
    pub remove: Vec<(u32, IpAddr)>,
}

impl Routes {
    fn changes(&self) -> Vec<Change> {
        let withdraw = self
            .remove
            .iter()
            .map(|&(table, address)| Change::Withdraw { address, table });
        let announce = self
            .add
            .iter()
            .map(|&(table, address)| Change::Announce { address, table });
        withdraw.chain(announce).collect()
    }
}

fn plan_routes(cfg: &Config, pins: &Pins) -> Result<Routes> {
    let want = crate::kernel::announce::wanted(
        cfg.announce.map(|a| a.table),
        crate::kernel::announce::draining(&pins.dir),
        &cfg.state,
        &cfg.failing,
    );
    let live =
        crate::kernel::netlink::katran_routes().context("reading the announcement routes")?;
    let (add, remove) = crate::kernel::announce::diff(&live, &want);
    Ok(Routes { add, remove })
}

/// Withdraws what the plan withdraws (before packets change).
fn withdraw(routes: &Routes, undo: &mut Vec<Undo>) -> Result<()> {
    for &(table, addr) in &routes.remove {
        crate::kernel::netlink::remove_route(table, addr)?;
        undo.push(Undo::Reannounce(table, addr));
    }
    Ok(())
}

/// Announces what the plan announces (once packets are forwarded).
fn announce(routes: &Routes, undo: &mut Vec<Undo>) -> Result<()> {
    for &(table, addr) in &routes.add {
        crate::kernel::netlink::add_route(table, addr)?;
        undo.push(Undo::Unannounce(table, addr));
    }
    Ok(())
}

/// Something visible that commit did, and how to take it back.
enum Undo {
    Unload,
    Detach(String),
    FlipBack(u8),
    Reattach(String, Attached),
    Marks(Option<BTreeMap<u32, IpAddr>>),
    /// Replacement: unpin the staged new dataplane.
    UnpinNext,
    /// Replacement: point the interface's link back at the old program.
    LinkBack(String),
    /// Replacement: put the old dataplane's pins back in place.
    SwapBack,
    /// Remove an announcement route that was added.
    Unannounce(u32, IpAddr),
    /// Add back an announcement route that was removed.
    Reannounce(u32, IpAddr),
}

/// Commit: executes the prepared plan, or — on a kernel failure — undoes
/// what packets could see and returns the error.
pub fn commit(p: Prepared) -> Result<Outcome> {
    if p.replace.is_some() {
        return replace::commit(p);
    }
    let mut undo = Vec::new();
    let (mut store, loaded) = match p.store {
        Some(s) => (s, false),
        None => {
            let options = live::load_options(&p.cfg.settings);
            (live::load_and_pin(&p.pins, &options)?, true)
        }
    };
    if loaded {
        undo.push(Undo::Unload);
    }
    let result = run(
        &p.pins,
        &p.cfg,
        &p.plan,
        &p.attach,
        &p.detach,
        &p.live_marks,
        &p.routes,
        &mut store,
        &mut undo,
    );
    match result {
        Ok(report) => Ok(Outcome {
            plan: p.plan,
            report,
            loaded,
            attached: p.attach,
            detached: removed(p.detach, &p.cfg),
            marks: p.marks,
            state: p.cfg.state,
            replaced: None,
        }),
        Err(e) => Err(take_all_back(&p.pins, &mut store, undo, e)),
    }
}

/// The interfaces a commit detached because the file no longer names them
/// (not the stale links it replaced).
fn removed(detach: Vec<(String, Option<Attached>)>, cfg: &Config) -> Vec<String> {
    detach
        .into_iter()
        .map(|(i, _)| i)
        .filter(|i| !cfg.settings.interfaces.contains(i))
        .collect()
}

/// Undoes `undo` in reverse; the error says whether that worked.
fn take_all_back(
    pins: &Pins,
    store: &mut KernelStore,
    undo: Vec<Undo>,
    e: anyhow::Error,
) -> anyhow::Error {
    let mut failed_undo = Vec::new();
    for u in undo.into_iter().rev() {
        if let Err(ue) = take_back(pins, store, u) {
            failed_undo.push(format!("{ue:#}"));
        }
    }
    if failed_undo.is_empty() {
        e.context("apply failed; everything it changed was taken back")
    } else {
        e.context(format!(
            "apply failed, and taking it back failed too: {}",
            failed_undo.join("; ")
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    pins: &Pins,
    cfg: &Config,
    plan: &Plan,
    attach: &[(String, Attached)],
    detach: &[(String, Option<Attached>)],
    live_marks: &Option<BTreeMap<u32, IpAddr>>,
    routes: &Routes,
    store: &mut KernelStore,
    undo: &mut Vec<Undo>,
) -> Result<Option<ApplyReport>> {
    // routers stop sending before packets change
    withdraw(routes, undo)?;
    let old_gen = store.active_gen()?;
    let (flip, body) = match plan.writes.split_last() {
        Some((f @ Write::Flip { .. }, body)) => (Some(f), body),
        _ => (None, &plan.writes[..]),
    };
    let mut report = None;
    let mut ring_slots = 0;
    for (n, w) in body.iter().enumerate() {
        w.run(store)
            .with_context(|| format!("map write {} of {}", n + 1, plan.writes.len()))?;
        if let Write::WriteRing { changes, .. } = w {
            ring_slots += changes.len();
        }
    }
    // stale links of interfaces made again, then the new interfaces
    for (iface, _) in detach
        .iter()
        .filter(|(i, _)| cfg.settings.interfaces.contains(i))
    {
        live::detach(pins, iface)?;
    }
    for (iface, how) in attach {
        live::attach(pins, iface, *how)?;
        undo.push(Undo::Detach(iface.clone()));
    }
    if let Some(Write::Flip { gen }) = flip {
        store
            .set_active_gen(*gen)
            .context("flipping the active generation")?;
        undo.push(Undo::FlipBack(old_gen));
        report = Some(ApplyReport {
            gen: *gen,
            map_writes: plan.writes.len(),
            ring_slots,
        });
    }
    for (iface, how) in detach
        .iter()
        .filter(|(i, _)| !cfg.settings.interfaces.contains(i))
    {
        live::detach(pins, iface)?;
        if let Some(how) = how {
            undo.push(Undo::Reattach(iface.clone(), *how));
        }
    }
    // routers send once packets are forwarded
    announce(routes, undo)?;
    apply_marks(pins, cfg, plan, live_marks, undo)?;
    Ok(report)
}

/// The health-check marks of the file, when they or the interfaces changed.
fn apply_marks(
    pins: &Pins,
    cfg: &Config,
    plan: &Plan,
    live_marks: &Option<BTreeMap<u32, IpAddr>>,
    undo: &mut Vec<Undo>,
) -> Result<()> {
    let marks_change = plan
        .changes
        .iter()
        .any(|c| matches!(c, Change::Mark { .. }));
    let first = cfg.settings.interfaces.first();
    if marks_change || (!cfg.somarks.is_empty() && first.is_some()) {
        undo.push(Undo::Marks(live_marks.clone()));
        match first {
            Some(iface) => {
                let out = markfwd::reconcile(
                    &pins.dir,
                    iface,
                    cfg.state.globals.gateway_mac,
                    &cfg.somarks,
                )?;
                for w in &out.warnings {
                    log::warn!("health-check forwarding: {w}");
                }
            }
            None => {
                markfwd::down(&pins.dir)?;
            }
        }
    }
    Ok(())
}

fn take_back(pins: &Pins, store: &mut KernelStore, u: Undo) -> Result<()> {
    match u {
        Undo::Unload => {
            for iface in pins.attached() {
                live::detach(pins, &iface)?;
            }
            live::unpin_dataplane(pins)
        }
        Undo::Detach(iface) => live::detach(pins, &iface),
        Undo::FlipBack(gen) => store.set_active_gen(gen),
        Undo::Reattach(iface, how) => live::attach(pins, &iface, how),
        Undo::UnpinNext => replace::unpin_next(pins),
        Undo::LinkBack(iface) => replace::link_back(pins, &iface),
        Undo::SwapBack => replace::swap_back(pins),
        Undo::Unannounce(table, addr) => crate::kernel::netlink::remove_route(table, addr),
        Undo::Reannounce(table, addr) => crate::kernel::netlink::add_route(table, addr),
        Undo::Marks(old) => match old {
            Some(old) if !old.is_empty() => markfwd::sync(&pins.dir, &old).map(drop),
            _ => markfwd::down(&pins.dir).map(drop),
        },
    }
}

/// [`commit`], calling `after` once each step of a dataplane replacement
/// is done (see [`replace::commit_checked`]); a plain apply ignores it.
pub fn commit_checked(
    p: Prepared,
    after: &mut dyn FnMut(replace::Step) -> Result<()>,
) -> Result<Outcome> {
    if p.replace.is_some() {
        return replace::commit_checked(p, after);
    }
    commit(p)
}

/// Prepare and commit in one go.
pub fn reconcile(cfg: Config, verdicts: Verdicts) -> Result<Outcome> {
    commit(prepare(cfg, verdicts, Purpose::Apply)?)
}
