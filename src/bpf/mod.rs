//! Kernel side: the generated skeleton, loading and pinning, typed map
//! access. Everything that needs privileges lives below this module.

pub mod abi;
pub mod attach;
pub mod decap;
pub mod kernel_store;
pub mod loader;

#[allow(
    clippy::all,
    dead_code,
    unused_imports,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    missing_docs
)]
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/balancer.skel.rs"));
}

#[allow(
    clippy::all,
    dead_code,
    unused_imports,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    missing_docs
)]
pub mod decap_skel {
    include!(concat!(env!("OUT_DIR"), "/decap.skel.rs"));
}

#[allow(
    clippy::all,
    dead_code,
    unused_imports,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    missing_docs
)]
pub mod healthcheck_skel {
    include!(concat!(env!("OUT_DIR"), "/healthcheck.skel.rs"));
}
