//! One reconciliation: make the live dataplane match a checked file.
//! `katran apply` runs it once; `katran run` runs it at start and on every
//! reload. Holds the apply lock for its whole duration.

use anyhow::{Context, Result};

use crate::apply::{apply, read_live, ApplyReport};
use crate::bpf::attach::{ensure_bpffs, Attached};
use crate::config::{Config, Gateway};
use crate::live::{self, Pins};
use crate::model::{MacAddr, State};
use crate::plan::{self, Plan};

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
    pub marks: crate::markfwd::MarkChanges,
    /// The state now live (the file's, gateway resolved).
    pub state: State,
}

/// Fills in `gateway_mac = "auto"`; when the kernel cannot tell, falls back
/// to `fallback` (the live value) if there is one.
pub fn resolve_gateway(cfg: &mut Config, fallback: Option<MacAddr>) -> Result<()> {
    if cfg.settings.gateway == Gateway::Auto {
        cfg.state.globals.gateway_mac = match (crate::gateway::resolve(), fallback) {
            (Ok(mac), _) => mac,
            (Err(_), Some(mac)) => mac,
            (Err(e), None) => return Err(e).context("gateway_mac = \"auto\""),
        };
    }
    Ok(())
}

pub fn reconcile(mut cfg: Config) -> Result<Outcome> {
    let pins = Pins::new(&cfg.settings.pin_dir);
    ensure_bpffs(&pins.dir)?;
    let _lock = live::lock(&pins.dir)?;
    let (mut store, loaded) = live::open_or_load(&pins, &live::load_options(&cfg.settings))?;
    let before = read_live(&store)?;
    resolve_gateway(&mut cfg, before.as_ref().map(|s| s.globals.gateway_mac))?;
    let plan = plan::diff(before.as_ref(), &cfg.state, cfg.settings.ring_size);
    let report = if plan.is_empty() {
        None
    } else {
        Some(apply(&mut store, &cfg.state)?)
    };
    let mut attached = Vec::new();
    for iface in &cfg.settings.interfaces {
        if let Some(how) = live::attach(&pins, iface, cfg.settings.xdp_mode)? {
            attached.push((iface.clone(), how));
        }
    }
    let mut detached = Vec::new();
    for iface in pins.attached() {
        if !cfg.settings.interfaces.contains(&iface) {
            live::detach(&pins, &iface)?;
            detached.push(iface);
        }
    }
    // Socket-mark forwarding for health checks, on the first interface.
    let marks = match cfg.settings.interfaces.first() {
        Some(iface) => {
            let out = crate::markfwd::reconcile(
                &pins.dir,
                iface,
                cfg.state.globals.gateway_mac,
                &cfg.somarks,
            )?;
            for w in &out.warnings {
                log::warn!("health-check forwarding: {w}");
            }
            out.changes
        }
        None => crate::markfwd::MarkChanges::default(),
    };
    Ok(Outcome {
        plan,
        report,
        loaded,
        attached,
        detached,
        marks,
        state: cfg.state,
    })
}
