//! The integration tests, one binary (as in ripgrep's `tests/`): each file
//! of this folder is a module, so a test's full name is `FILE::NAME` and
//! `cargo test --test integration FILE::` runs one file's tests. `common/`,
//! `testbed/` and `hc/` are the helpers, compiled once.

mod common;
mod hc;
mod testbed;

mod apply_errors;
mod apply_kernel;
mod apply_logic;
mod apply_trust;
mod config_errors;
mod config_input;
mod conformance;
mod conn_table;
mod daemon;
mod decap;
mod e2e;
mod e2e_mqtt;
mod fleet;
mod health_e2e;
mod healthcheck;
mod honesty;
mod json_docs;
mod manpage;
mod memory;
mod metrics_limits;
mod observe;
mod pins;
mod plan_cli;
mod real;
mod replace;
mod server_id_rate;
mod status_file;
mod vectors;
