//! Active health checks run by the daemon: probes sent through the VIP
//! path to one real (socket mark -> the tc forwarding plane), rise/fall
//! tracking, and draining reals that fail (see `tracker::effective`).

pub mod probe;
pub mod runner;
pub use katran_core::health::{spec, tracker};
