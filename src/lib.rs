//! katran: a layer-4 XDP load balancer driven by one declarative file.
//!
//! Data flows one way: file → `config` → `model::State` → `plan` → maps.
//! The deciding part (configuration, model, Maglev, plan, explain) is the
//! `katran-core` crate, free of I/O. This crate is layered, each layer
//! using only those below it: `kernel` (the only code that touches bpf(),
//! rtnetlink or tc), `files`, then `apply` (prepare, then commit a plan;
//! replace the dataplane), then `daemon` and `views` (what operators see),
//! and `cli` on top. ARCHITECTURE.md draws the layers.

pub use katran_core::{explain, fastmod, hash, maglev, model, plan, snapshot, store};

/// The configuration file: checked by `katran_core::config`, read here.
pub mod config {
    pub use crate::files::config_file::{load, MAX_SIZE};
    pub use katran_core::config::*;
}

pub mod apply;
pub mod cli;

/// The version this binary says it is: the package's, unless the binary
/// named another at start (`set_version`): a packager's build
/// (packaging/build-deb.sh sets KATRAN_VERSION, which only `src/main.rs`
/// reads, so another version rebuilds only the binary, not this library).
pub fn version() -> &'static str {
    VERSION.get().copied().unwrap_or(env!("CARGO_PKG_VERSION"))
}

/// Names the version once, before anything asks (`src/main.rs`).
pub fn set_version(v: &'static str) {
    // a second call keeps the first version: there is one binary
    let _ = VERSION.set(v);
}

static VERSION: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

pub mod daemon;
pub mod files;
pub mod kernel;
pub mod views;
