//! Kernel side: the generated skeleton, loading and pinning, typed map
//! access. Everything that needs privileges lives below this module.

pub mod abi;
pub mod attach;
pub mod bpffs;
pub mod conn_carry;
pub mod conn_set;
pub mod decap;
pub mod kernel_store;
pub mod loader;
pub mod mmap_array;
pub mod percpu;
pub mod prev_ring;

/// The identity of the balancer this binary loads: a hash of its compiled
/// object (see build.rs), pinned with the maps as `maps/lb_stamp`.
pub const STAMP: &str = env!("KATRAN_BALANCER_STAMP");

/// [`STAMP`] as the number the map holds.
pub fn stamp_value() -> u64 {
    u64::from_str_radix(STAMP, 16).unwrap_or(0)
}

/// A generated skeleton, included from `OUT_DIR` (see build.rs); its code
/// is libbpf-cargo's, so lints for hand-written code are off there.
macro_rules! skeleton {
    ($module:ident, $file:literal) => {
        #[allow(
            clippy::all,
            dead_code,
            unused_imports,
            non_camel_case_types,
            non_upper_case_globals,
            non_snake_case,
            missing_docs
        )]
        pub mod $module {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

skeleton!(skel, "balancer.skel.rs");
skeleton!(decap_skel, "decap.skel.rs");
skeleton!(healthcheck_skel, "healthcheck.skel.rs");
