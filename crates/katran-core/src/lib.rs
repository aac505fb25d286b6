//! katran's core: everything that decides, nothing that touches the
//! system. The file's text becomes a [`config::Config`] (with diagnostics
//! at file:line:column), the configuration a [`model::State`], and two
//! states a [`plan::Plan`] of map writes against the [`store::MapStore`]
//! trait; Maglev rings ([`maglev`]) and the flow hashes ([`hash`]) are
//! Katran's, bit for bit, and [`explain`] answers which real a flow goes
//! to by the dataplane's rules.
//!
//! This crate depends on neither libbpf-rs nor libc and holds no `unsafe`:
//! reading files, the kernel's maps and the network belong to the `katran`
//! crate, which implements `MapStore` over the pinned maps.

#![forbid(unsafe_code)]

pub mod config;
pub mod conn_hash;
pub mod explain;
pub mod fastmod;
pub mod hash;
pub mod health;
pub mod maglev;
pub mod model;
pub mod parallel;
pub mod plan;
pub mod snapshot;
pub mod store;
