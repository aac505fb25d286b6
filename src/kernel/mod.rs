//! The kernel layer: the only code that calls bpf(), speaks rtnetlink or
//! attaches tc and XDP programs. Above it, `apply`, `daemon`, `views` and
//! `cli` reach the system only through these modules.
//!
//! - `bpf`: the balancer's skeleton, loader, attach, typed map access
//!   (`kernel_store` implements the core's `MapStore`), connection carry
//!   and the rings lent during a replacement;
//! - `live`: the pinned dataplane (pins, lock, load, adopt, down);
//! - `markfwd`: the health-check forwarding plane (tc program and maps);
//! - `netlink`, `gateway`, `announce`: links, addresses, neighbours, routes;
//! - `caps`: the capability check before anything else;
//! - `real`: the real server's side (decapsulation, VIP on `lo`);
//! - `testrun`: BPF_PROG_TEST_RUN, for tests and the benchmark.

pub mod announce;
pub mod bpf;
pub mod caps;
pub mod gateway;
pub mod live;
pub mod markfwd;
pub mod netlink;
pub mod real;
pub mod testrun;
