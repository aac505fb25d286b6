//! Health checks: what the file asks for (`spec`) and what the probes'
//! results mean (`tracker`: rise and fall, effective weights). The probes
//! themselves run in the `katran` crate's daemon.

pub mod spec;
pub mod tracker;
