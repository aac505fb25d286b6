//! What a VIP's health check is, as the file describes it.

use std::time::Duration;

/// How a real is probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection is accepted.
    Tcp,
    /// `GET path` answers with status `expect`.
    Http { path: String, expect: u16 },
    /// An MQTT 3.1.1 CONNECT is accepted (CONNACK, return code 0).
    Mqtt,
}

impl Probe {
    pub fn name(&self) -> &'static str {
        match self {
            Probe::Tcp => "tcp",
            Probe::Http { .. } => "http",
            Probe::Mqtt => "mqtt",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: Probe,
    /// The port probed on the VIP (the VIP's own port unless it is 0).
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring a real back.
    pub rise: u32,
    /// Consecutive failures that drain a real.
    pub fall: u32,
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
/// Socket marks handed to reals that need one and have none in the file.
pub const AUTO_MARK_BASE: u32 = 0x6b74_0000;
