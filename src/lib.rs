//! katran: a layer-4 XDP load balancer driven by one declarative file.
//!
//! Data flows one way: file → `config` → `model::State` → `apply` → maps.
//! Everything above `bpf` is plain Rust, testable without privileges.

pub mod apply;
pub mod bpf;
pub mod hash;
pub mod maglev;
pub mod model;
pub mod store;
pub mod testrun;
