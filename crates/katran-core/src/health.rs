//! Health checks as the file describes them (the probes themselves run in
//! the `katran` crate).

pub mod spec;
