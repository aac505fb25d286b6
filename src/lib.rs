//! katran: a layer-4 XDP load balancer driven by one declarative file.
//!
//! Data flows one way: file → `config` → `model::State` → `plan` → maps.
//! The deciding part (configuration, model, Maglev, plan, explain) is the
//! `katran-core` crate, free of I/O; this crate reads files, talks to the
//! kernel (`bpf`, `netlink`, `markfwd`) and runs the daemon and the CLI.
//! ARCHITECTURE.md draws the layers.

pub use katran_core::{explain, hash, maglev, model, plan, snapshot, store};

/// The configuration file: checked by `katran_core::config`, read here.
pub mod config {
    pub use crate::config_file::{load, MAX_SIZE};
    pub use katran_core::config::*;
}

pub mod announce;
pub mod apply;
pub mod apply_errors;
pub mod atomic_file;
pub mod bpf;
pub mod caps;
pub mod cli;
pub mod config_file;
pub mod config_watch;
pub mod conn_fill;
pub mod daemon;
pub mod daemon_lock;
pub mod daemon_status;
pub mod drain;
pub mod filediff;
pub mod flock_wait;
pub mod gateway;
pub mod generate;
pub mod health;
pub mod json;
pub mod live;
pub mod markfwd;
pub mod memory;
pub mod metrics;
pub mod metrics_server;
pub mod netlink;
pub mod real;
pub mod reconcile;
pub mod sdnotify;
pub mod stats;
pub mod stats_view;
pub mod status;
pub mod testrun;
