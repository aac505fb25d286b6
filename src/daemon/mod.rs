//! `katran run`: load or adopt the dataplane, apply the file, then keep it
//! applied — on file changes (the directory is watched, so editors that
//! write a new file and rename it are seen), on SIGHUP, and never with a
//! broken file: the last good configuration stays in force and the failure
//! is reported in the status file until a good file arrives.
//!
//! SIGTERM/SIGINT end the process and leave the dataplane pinned and
//! forwarding, so a restart or an upgrade drops nothing; the next start
//! adopts it and finds an empty plan.

pub mod config_watch;
pub mod health;
pub mod sdnotify;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::apply::read_live;
use crate::apply::reconcile::{reconcile, Outcome, Verdicts};
use crate::config::{self, Config};
use crate::daemon::config_watch::ConfigWatch;
use crate::daemon::health::{runner::Runner, tracker};
use crate::daemon::sdnotify::{monotonic_usec, notify};
use crate::files::daemon_lock::{self as lock, DaemonLock};
use crate::files::status_file::{DaemonStatus, Event, FailureKind};
use crate::kernel::live::{self, Pins};
use crate::model::State;

/// Bursts of file events closer than this are one reload.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// How often the maps are compared with what this daemon applied.
const DRIFT_CHECK: Duration = Duration::from_secs(2);
/// How often `gateway_mac = "auto"` is looked up again.
const GATEWAY_CHECK: Duration = Duration::from_secs(1);

pub struct Options {
    pub config: PathBuf,
    pub status_file: PathBuf,
    /// Detach and unpin everything on SIGTERM/SIGINT.
    pub down_on_exit: bool,
    /// Serve Prometheus metrics here (loopback only), instead of where the
    /// file's `[metrics]` says.
    pub metrics_address: Option<std::net::SocketAddr>,
}

enum Wake {
    /// Something changed where the file lives: look again.
    FileEvent,
    Hangup,
    Stop,
    /// A real changed health.
    Health,
}

fn watch_signals(tx: Sender<Wake>) -> Result<()> {
    let mut signals =
        Signals::new([SIGHUP, SIGTERM, SIGINT]).context("installing signal handlers")?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let wake = if sig == SIGHUP {
                Wake::Hangup
            } else {
                Wake::Stop
            };
            if tx.send(wake).is_err() {
                break;
            }
        }
    });
    Ok(())
}

struct Daemon {
    opts: Options,
    status: DaemonStatus,
    pins: PathBuf,
    /// The last good file.
    config: Config,
    /// What this daemon last applied (the file's state with failing reals
    /// drained), to notice changes made by others.
    applied: State,
    health: Option<Runner>,
    wake: Sender<Wake>,
    watch: ConfigWatch,
    /// Held for the daemon's life: one daemon per pin directory.
    _lock: DaemonLock,
}

impl Daemon {
    fn save_status(&self) {
        if let Err(e) = self.status.write(&self.opts.status_file) {
            log::warn!("{e:#}");
        }
    }

    fn record(&mut self, outcome: &Outcome) {
        if let Some(r) = &outcome.replaced {
            log::info!("{}", r.summary());
        }
        for (iface, how) in &outcome.attached {
            log::info!("attached to {iface} ({how} XDP)");
            self.status.attached.retain(|(i, _)| i != iface);
            self.status.attached.push((iface.clone(), how.to_string()));
        }
        for iface in &outcome.detached {
            log::info!("detached from {iface}");
            self.status.attached.retain(|(i, _)| i != iface);
        }
        self.adopt_attached();
        self.status.last_applied = Some(Event::now(outcome.plan.summary()));
        self.status.last_error = None;
        self.status.last_error_kind = None;
        // the maps hold this daemon's configuration again
        self.status.external_change = None;
        self.status.dataplane_missing = None;
        self.status.failures = 0;
        self.now_applied(outcome.state.clone());
    }

    /// Interfaces that were attached before this daemon started (an
    /// adopted dataplane's): recorded with the mode the kernel reports, so
    /// the status file lists every attached interface, not only new ones.
    fn adopt_attached(&mut self) {
        for iface in Pins::new(&self.pins).attached() {
            if self.status.attached.iter().any(|(i, _)| *i == iface) {
                continue;
            }
            let how = crate::kernel::bpf::attach::ifindex(&iface)
                .and_then(crate::kernel::bpf::attach::query)
                .ok()
                .and_then(|q| q.attached().map(|(_, how)| how.to_string()))
                .unwrap_or_else(|| "unknown".into());
            self.status.attached.push((iface, how));
        }
    }

    /// Records what was applied; says so when it moved the gateway MAC
    /// (whichever apply picked up the new one).
    fn now_applied(&mut self, state: State) {
        self.status.generation += 1;
        let (old, new) = (self.applied.globals.gateway_mac, state.globals.gateway_mac);
        if old != new && old != crate::model::MacAddr::default() {
            log::warn!("gateway MAC changed from {old} to {new}");
        }
        self.applied = state;
    }

    /// (Re)starts the probes for the current file, keeping known health
    /// (at start: the verdicts the live maps hold).
    fn start_health(&mut self) {
        let carry = self.health.take().map(|r| {
            let t = r.table();
            r.stop();
            t
        });
        let carry = carry.or_else(|| {
            let now = crate::files::status_file::Event::now("").at;
            Some(
                self.applied
                    .drained
                    .iter()
                    .map(|k| {
                        let mut h = tracker::RealHealth::new(now);
                        h.healthy = false;
                        (*k, h)
                    })
                    .collect(),
            )
        });
        let targets = health::runner::targets(&self.config);
        if !targets.is_empty() {
            log::info!(
                "health: probing {} real(s) of {} VIP(s)",
                targets.len(),
                self.config.healthchecks.len()
            );
        }
        let tx = self.wake.clone();
        self.health = Some(Runner::start(
            targets,
            &carry.unwrap_or_default(),
            move || {
                let _ = tx.send(Wake::Health);
            },
        ));
    }

    /// The file's configuration with failing reals drained.
    fn effective(&mut self) -> Config {
        let table = self.health.as_ref().map(Runner::table).unwrap_or_default();
        let (state, all_down) = tracker::effective(&self.config.state, &tracker::down_set(&table));
        for vip in &all_down {
            if !self.status.all_reals_down.contains(&vip.to_string()) {
                log::error!("health: EVERY real of {vip} fails its check; still forwarding to them rather than dropping everything");
            }
        }
        self.status.all_reals_down = all_down.iter().map(|v| v.to_string()).collect();
        let failing = all_down.iter().copied().collect();
        self.status.health = table
            .into_iter()
            .map(|((vip, real), h)| (vip.to_string(), real.to_string(), h))
            .collect();
        Config {
            state,
            failing,
            ..self.config.clone()
        }
    }

    /// Applies the effective configuration again: after a health change,
    /// or when `gateway_mac = "auto"` resolves to another MAC.
    fn apply_current(&mut self, why: &str) {
        let cfg = self.effective();
        match reconcile(cfg, Verdicts::Given) {
            Ok(outcome) => {
                log::info!("{why}: {}", outcome.plan.summary());
                self.now_applied(outcome.state);
                self.status.external_change = None;
            }
            Err(e) => log::error!("applying a {why} failed: {e:#}"),
        }
        self.save_status();
    }

    /// check -> plan -> atomic apply; a failure keeps the last good state.
    fn reload(&mut self, why: &str) {
        notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        self.watch.loading();
        let result = match config::load(&self.opts.config) {
            Err(errors) => {
                for d in &errors.0 {
                    log::error!("{d}");
                }
                Err((
                    FailureKind::File,
                    format!(
                        "{} error(s) in {}; first: {}",
                        errors.0.len(),
                        self.opts.config.display(),
                        errors.0[0]
                    ),
                ))
            }
            Ok(loaded) if loaded.config.settings.pin_dir != self.pins => Err((
                FailureKind::File,
                format!(
                    "pin_dir changed from {} to {}: a running daemon keeps its dataplane where it \
                 is; to move it, stop the daemon, run `katran down --pin-dir {}`, and start it \
                 again",
                    self.pins.display(),
                    loaded.config.settings.pin_dir.display(),
                    self.pins.display()
                ),
            )),
            Ok(loaded) => {
                for w in &loaded.warnings {
                    log::warn!("{w}");
                }
                if loaded.config.metrics != self.config.metrics {
                    log::warn!(
                        "[metrics] changed: the metrics endpoint stays where it is until \
                         katran run restarts"
                    );
                }
                let checks_changed = loaded.config.healthchecks != self.config.healthchecks
                    || loaded.config.somarks != self.config.somarks;
                self.config = loaded.config;
                if checks_changed {
                    self.start_health();
                }
                let cfg = self.effective();
                // an error that comes from a key of the file is told at it
                reconcile(cfg, Verdicts::Given).map_err(|e| {
                    let kind = crate::apply::errors::kind(&e);
                    match crate::apply::errors::place(&e, &loaded.text) {
                        Some(d) => (kind, d.to_string()),
                        None => (kind, format!("{e:#}")),
                    }
                })
            }
        };
        match result {
            Ok(outcome) => {
                log::info!("reload ({why}): {}", outcome.plan.summary());
                self.status.reloads_ok += 1;
                self.record(&outcome);
                notify(&format!(
                    "READY=1\nSTATUS=applied: {}",
                    outcome.plan.summary()
                ));
            }
            Err((kind, message)) => {
                log::error!(
                    "reload ({why}) failed ({}), the last good configuration stays in force: {message}",
                    kind.describe()
                );
                self.status.last_error_kind = Some(kind);
                self.status.failures += 1;
                self.status.reloads_failed += 1;
                self.status.last_error = Some(Event::now(message.clone()));
                notify(&format!(
                    "READY=1\nSTATUS=reload failed ({} in a row), last good configuration in force",
                    self.status.failures
                ));
            }
        }
        self.save_status();
    }

    /// Says so when the maps no longer hold what this daemon applied —
    /// each time they change under it.
    fn check_drift(&mut self) {
        let ifaces: Vec<String> = self.status.attached.iter().map(|a| a.0.clone()).collect();
        let missing = live::missing(&Pins::new(&self.pins), &ifaces);
        if missing
            != self
                .status
                .dataplane_missing
                .as_ref()
                .map(|e| e.message.clone())
        {
            match &missing {
                Some(what) => {
                    log::error!(
                        "the dataplane is not in place: {what}; traffic is not balanced until \
                         the next reload (SIGHUP or a file change) restores it"
                    );
                    match live::withdraw_all() {
                        Ok(0) => {}
                        Ok(n) => log::warn!("withdrew {n} announcement(s) meanwhile"),
                        Err(e) => log::error!("withdrawing the announcements: {e:#}"),
                    }
                }
                None => log::info!("the dataplane is in place again"),
            }
            self.status.dataplane_missing = missing.map(Event::now);
            self.save_status();
        }
        if self.status.dataplane_missing.is_some() {
            return;
        }
        let Ok(Some(store)) = live::open(&Pins::new(&self.pins)) else {
            return;
        };
        let Ok(Some(live_state)) = read_live(&store) else {
            return;
        };
        let sorted = |mut s: State| {
            s.vips.sort_by_key(|v| v.key);
            s.down_reals.sort();
            s
        };
        let live_state = sorted(live_state);
        if live_state != sorted(self.applied.clone()) {
            log::warn!(
                "the live maps were changed by another process; the next reload re-applies {}",
                self.opts.config.display()
            );
            self.status.external_change = Some(Event::now(
                "the live maps differ from what this daemon applied",
            ));
            self.save_status();
            self.applied = live_state;
        }
    }

    /// Follows `gateway_mac = "auto"`: when the default gateway's MAC in
    /// the neighbour table is not the one applied (the router changed, or
    /// the default route moved), applies again with the new one.
    fn follow_gateway(&mut self) {
        if self.config.settings.gateway != crate::config::Gateway::Auto {
            return;
        }
        let now = match crate::kernel::gateway::current() {
            Ok(Some(mac)) => mac,
            // not resolved right now (or no route): keep what runs
            Ok(None) | Err(_) => return,
        };
        let old = self.applied.globals.gateway_mac;
        if now == old {
            return;
        }
        log::info!("the default gateway is at {now} now, not {old}: applying");
        self.apply_current("gateway change");
    }

    /// What runs on the clock: drift and dataplane checks, a look at the
    /// file in case an event was missed, health in the status file.
    fn periodic(&mut self) {
        if self.health.is_some() {
            let _ = self.effective();
            self.save_status();
        }
        self.check_drift();
        // a missed event (a watch lost while its directory was replaced)
        // is caught here
        self.watch.rearm();
        if self.watch.changed() {
            self.reload("file changed");
        }
    }

    fn serve(&mut self, rx: &Receiver<Wake>) {
        let mut next_check = Instant::now() + DRIFT_CHECK;
        let mut next_gateway = Instant::now() + GATEWAY_CHECK;
        loop {
            let wait = next_check
                .min(next_gateway)
                .saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    if matches!(first, Wake::FileEvent) {
                        // editors write in bursts: wait for the file to settle
                        std::thread::sleep(DEBOUNCE);
                    }
                    // everything that arrived meanwhile is done once, in order
                    let mut woke = vec![first];
                    woke.extend(rx.try_iter());
                    let has = |f: fn(&Wake) -> bool| woke.iter().any(f);
                    if has(|w| matches!(w, Wake::Stop)) {
                        return;
                    }
                    if has(|w| matches!(w, Wake::FileEvent)) {
                        self.watch.rearm();
                    }
                    if has(|w| matches!(w, Wake::Hangup)) {
                        self.reload("SIGHUP");
                    } else if has(|w| matches!(w, Wake::FileEvent)) && self.watch.changed() {
                        self.reload("file changed");
                    }
                    if has(|w| matches!(w, Wake::Health)) {
                        self.apply_current("health change");
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // on the clock, however busy the events keep the loop
            let now = Instant::now();
            if now >= next_gateway {
                self.follow_gateway();
                next_gateway = now + GATEWAY_CHECK;
            }
            if now >= next_check {
                self.periodic();
                next_check = Instant::now() + DRIFT_CHECK;
            }
        }
    }
}

pub fn run(opts: Options) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let poke = tx.clone();
    // watching starts before the first read, so no edit falls between
    let mut watch = ConfigWatch::new(&opts.config, move || {
        let _ = poke.send(Wake::FileEvent);
    })?;
    watch.loading();
    let loaded = config::load(&opts.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    let pins = loaded.config.settings.pin_dir.clone();
    let lock = lock::acquire(&pins, &opts.config)?;
    log::debug!("watching {:?}", watch.watched());
    // the flag is loopback only; the file may name any address
    let metrics_at = match (opts.metrics_address, &loaded.config.metrics) {
        (Some(flag), _) => Some(crate::views::metrics::loopback_only(flag)?),
        (None, Some(m)) => Some(m.address),
        (None, None) => None,
    };
    if let Some(addr) = metrics_at {
        // bound before touching the dataplane
        let bound =
            crate::views::metrics::serve(addr, pins.clone(), Some(opts.status_file.clone()))?;
        log::info!("serving metrics on http://{bound}/metrics");
    }
    watch_signals(tx.clone())?;

    // the live verdicts stand until this daemon's own probes decide
    let outcome = reconcile(loaded.config.clone(), Verdicts::KeepLive)?;
    if outcome.loaded {
        log::info!("loaded the dataplane, pinned at {}", pins.display());
    } else {
        log::info!("adopted the dataplane pinned at {}", pins.display());
    }
    log::info!("start: {}", outcome.plan.summary());
    let mut daemon = Daemon {
        status: DaemonStatus {
            pid: std::process::id(),
            config: opts.config.display().to_string(),
            started: Event::now("").at,
            ..DaemonStatus::default()
        },
        pins: pins.clone(),
        applied: outcome.state.clone(),
        config: loaded.config,
        health: None,
        wake: tx,
        watch,
        _lock: lock,
        opts,
    };
    daemon.record(&outcome);
    daemon.start_health();
    daemon.save_status();
    notify(&format!(
        "READY=1\nSTATUS=applied: {}",
        outcome.plan.summary()
    ));

    daemon.serve(&rx);
    notify("STOPPING=1");
    if let Some(h) = daemon.health.take() {
        h.stop();
    }
    if daemon.opts.down_on_exit {
        live::down(&Pins::new(&pins))?;
        log::info!("withdrew every announcement, detached and unpinned everything");
    } else if daemon.config.announce.is_some_and(|a| a.withdraw_on_exit) {
        let n = live::withdraw_all()?;
        log::info!(
            "withdrew {n} announcement(s) (withdraw_on_exit); the dataplane keeps forwarding \
             what still arrives (pinned at {})",
            pins.display()
        );
    } else {
        log::info!(
            "exiting; the dataplane keeps forwarding (pinned at {})",
            pins.display()
        );
    }
    let _ = std::fs::remove_file(&daemon.opts.status_file);
    Ok(())
}
