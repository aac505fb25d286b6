//! katran: a layer-4 XDP load balancer driven by one declarative file.
//!
//! Data flows one way: file → `config` → `model::State` → `apply` → maps.
//! Everything above `bpf` is plain Rust, testable without privileges.

pub mod announce;
pub mod apply;
pub mod apply_errors;
pub mod atomic_file;
pub mod bpf;
pub mod caps;
pub mod cli;
pub mod config;
pub mod config_watch;
pub mod conn_fill;
pub mod daemon;
pub mod daemon_lock;
pub mod daemon_status;
pub mod drain;
pub mod explain;
pub mod filediff;
pub mod flock_wait;
pub mod gateway;
pub mod generate;
pub mod hash;
pub mod health;
pub mod json;
pub mod live;
pub mod maglev;
pub mod markfwd;
pub mod memory;
pub mod metrics;
pub mod metrics_server;
pub mod model;
pub mod netlink;
pub mod plan;
pub mod real;
pub mod reconcile;
pub mod sdnotify;
pub mod snapshot;
pub mod stats;
pub mod stats_view;
pub mod status;
pub mod store;
pub mod testrun;
