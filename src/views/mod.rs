//! What operators see: status, counters, Prometheus metrics, the typed JSON
//! documents and the memory a file implies. Views read the kernel layer's
//! maps and the daemon's status file; they never change anything.

pub mod conn_fill;
pub mod json;
pub mod memory;
pub mod metrics;
pub mod metrics_server;
pub mod rates;
pub mod stats;
pub mod status;
