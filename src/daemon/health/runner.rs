//! Runs the probes: a scheduler thread hands due targets to a few worker
//! threads (a slow or timing-out real never delays the others), results go
//! into a shared health table, and a state change calls back the daemon.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::model::VipKey;

use super::probe;
use super::spec::HealthCheck;
use super::tracker::RealHealth;

/// One real of one checked VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub vip: VipKey,
    pub real: IpAddr,
    pub mark: u32,
    pub check: HealthCheck,
}

pub type Table = BTreeMap<(VipKey, IpAddr), RealHealth>;

/// Every probe target of a configuration.
pub fn targets(cfg: &Config) -> Vec<Target> {
    let mut mark_of: BTreeMap<IpAddr, u32> = BTreeMap::new();
    for (mark, addr) in &cfg.somarks {
        mark_of.entry(*addr).or_insert(*mark);
    }
    let mut out = Vec::new();
    for vip in &cfg.state.vips {
        let Some(check) = cfg.healthchecks.get(&vip.key) else {
            continue;
        };
        for r in &vip.reals {
            if let Some(mark) = mark_of.get(&r.addr) {
                out.push(Target {
                    vip: vip.key,
                    real: r.addr,
                    mark: *mark,
                    check: check.clone(),
                });
            }
        }
    }
    out
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct Runner {
    stop: Arc<AtomicBool>,
    table: Arc<Mutex<Table>>,
    threads: Vec<JoinHandle<()>>,
}

impl Runner {
    /// Starts probing `targets`; `carry` keeps the health of targets that
    /// were already probed (a reload does not reset them); `changed` is
    /// called after any real changes state.
    pub fn start(
        targets: Vec<Target>,
        carry: &Table,
        changed: impl Fn() + Send + Sync + 'static,
    ) -> Runner {
        let stop = Arc::new(AtomicBool::new(false));
        let now = now_s();
        let table: Table = targets
            .iter()
            .map(|t| {
                let key = (t.vip, t.real);
                (
                    key,
                    carry
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| RealHealth::new(now)),
                )
            })
            .collect();
        let table = Arc::new(Mutex::new(table));
        let mut threads = Vec::new();
        if targets.is_empty() {
            return Runner {
                stop,
                table,
                threads,
            };
        }
        let targets = Arc::new(targets);
        let (work_tx, work_rx) = mpsc::channel::<usize>();
        let (done_tx, done_rx) = mpsc::channel::<usize>();
        let work_rx = Arc::new(Mutex::new(work_rx));
        let changed = Arc::new(changed);
        let workers = targets.len().clamp(1, 16);
        for _ in 0..workers {
            let (rx, done, targets, table, changed, stopped) = (
                work_rx.clone(),
                done_tx.clone(),
                targets.clone(),
                table.clone(),
                changed.clone(),
                stop.clone(),
            );
            threads.push(std::thread::spawn(move || loop {
                let next = rx.lock().map(|r| r.recv());
                let Ok(Ok(i)) = next else { return };
                let t = &targets[i];
                let result = probe::run(&t.check, t.vip.addr, t.mark);
                let flipped = match table.lock() {
                    Ok(mut tb) => tb
                        .get_mut(&(t.vip, t.real))
                        .is_some_and(|h| h.record(&result, t.check.rise, t.check.fall, now_s())),
                    Err(_) => return,
                };
                if flipped && !stopped.load(Ordering::Relaxed) {
                    match &result {
                        Ok(()) => log::info!("health: {} in {} is healthy again", t.real, t.vip),
                        Err(e) => log::warn!(
                            "health: {} in {} failed {} checks in a row: {e}",
                            t.real,
                            t.vip,
                            t.check.fall
                        ),
                    }
                    changed();
                }
                if done.send(i).is_err() {
                    return;
                }
            }));
        }
        let stop2 = stop.clone();
        threads.push(std::thread::spawn(move || {
            // Spread the first probes over each target's interval.
            let start = Instant::now();
            let n = targets.len() as u32;
            let mut due: Vec<Instant> = targets
                .iter()
                .enumerate()
                .map(|(i, t)| start + t.check.interval * i as u32 / n)
                .collect();
            let mut busy: HashSet<usize> = HashSet::new();
            while !stop2.load(Ordering::Relaxed) {
                while let Ok(i) = done_rx.try_recv() {
                    busy.remove(&i);
                }
                let now = Instant::now();
                for (i, t) in targets.iter().enumerate() {
                    if now >= due[i] && !busy.contains(&i) {
                        busy.insert(i);
                        due[i] = now + t.check.interval;
                        if work_tx.send(i).is_err() {
                            return;
                        }
                    }
                }
                let next = due
                    .iter()
                    .min()
                    .copied()
                    .unwrap_or(now + Duration::from_millis(100));
                std::thread::sleep(
                    next.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(50)),
                );
            }
            // dropping work_tx ends the workers
        }));
        Runner {
            stop,
            table,
            threads,
        }
    }

    pub fn table(&self) -> Table {
        self.table.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Stops probing. Workers still inside a probe finish it on their own
    /// (a timeout may be long) and report nothing.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(scheduler) = self.threads.into_iter().last() {
            let _ = scheduler.join();
        }
    }
}
