//! Where the health-check objects are pinned: `<pin_dir>/hc/`.

use std::fs;
use std::path::{Path, PathBuf};

use super::kernel::Maps;

/// The pin layout under `<pin_dir>/hc`.
pub struct HcPins {
    pub dir: PathBuf,
}

impl HcPins {
    pub fn new(pin_dir: &Path) -> HcPins {
        HcPins {
            dir: pin_dir.join("hc"),
        }
    }
    pub fn maps(&self) -> PathBuf {
        self.dir.join("maps")
    }
    pub fn prog(&self) -> PathBuf {
        self.dir.join("prog").join("healthcheck")
    }
    pub fn attached_dir(&self) -> PathBuf {
        self.dir.join("attached")
    }
    pub fn marker(&self, iface: &str) -> PathBuf {
        self.attached_dir().join(iface)
    }
    /// Whether the program and every map are pinned.
    pub fn loaded(&self) -> bool {
        self.prog().exists() && Maps::NAMES.iter().all(|n| self.maps().join(n).exists())
    }
    /// Interfaces the filter was attached to, sorted.
    pub fn attached(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.attached_dir())
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

pub use crate::kernel::bpf::attach::check_iface_name;
