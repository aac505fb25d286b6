//! What the daemon tells `katran status`: its last reload and its failures,
//! written atomically to a small JSON file (default `/run/katran/status.json`)
//! without following symlinks ([`crate::files::atomic_file`]).
//! The configuration itself is never kept here: it lives in the maps.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const DEFAULT_STATUS_FILE: &str = "/run/katran/status.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub message: String,
}

impl Event {
    pub fn now(message: impl Into<String>) -> Event {
        Event {
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub config: String,
    pub started: u64,
    /// The last reload that applied (its one-line plan summary).
    pub last_applied: Option<Event>,
    /// The last reload that failed; cleared when a good file is applied.
    pub last_error: Option<Event>,
    /// What the last failed reload met (set with `last_error`).
    #[serde(default)]
    pub last_error_kind: Option<FailureKind>,
    /// Failed reloads since the last good one.
    pub failures: u64,
    /// Reloads (file changes, SIGHUP) that applied, since the daemon started.
    #[serde(default)]
    pub reloads_ok: u64,
    /// Reloads that failed (the last good configuration stayed), since start.
    #[serde(default)]
    pub reloads_failed: u64,
    /// Configurations this daemon applied, the one at start included: every
    /// good reload, health change and gateway change adds one.
    #[serde(default)]
    pub generation: u64,
    /// The maps were changed by another process (e.g. `katran apply`).
    pub external_change: Option<Event>,
    /// Interfaces and XDP modes.
    pub attached: Vec<(String, String)>,
    /// Health of every real of every checked VIP: (VIP, real, health).
    #[serde(default)]
    pub health: Vec<(String, String, katran_core::health::tracker::RealHealth)>,
    /// VIPs whose every real fails its check (kept forwarding regardless).
    #[serde(default)]
    pub all_reals_down: Vec<String>,
    /// What of the dataplane is gone (unpinned, moved, detached) since it
    /// was last applied; the next reload restores it.
    #[serde(default)]
    pub dataplane_missing: Option<Event>,
}

/// What kind of problem a failed reload met, so that a script (or an
/// operator) knows where to look: the file itself (`katran check` says
/// the same), the host refusing something the file names (an interface,
/// the gateway), a dataplane too small for the file (`max_vips`,
/// `max_reals`), or the kernel failing an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    File,
    Host,
    Capacity,
    Kernel,
}

impl FailureKind {
    /// How `katran status` words it.
    pub fn describe(self) -> &'static str {
        match self {
            FailureKind::File => "the file is invalid",
            FailureKind::Host => "the host refuses what the file names",
            FailureKind::Capacity => "the dataplane is too small for the file",
            FailureKind::Kernel => "a kernel operation failed",
        }
    }
}

impl DaemonStatus {
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // never through a symlink planted at the path or a temporary name
        crate::files::atomic_file::replace(path, &serde_json::to_vec_pretty(self)?)
    }

    pub fn read(path: &Path) -> Result<DaemonStatus> {
        let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }
}
