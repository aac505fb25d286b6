//! Reading a VIP's `healthcheck` table:
//! `healthcheck = { type = "http", path = "/healthz", expect = 200,
//! interval = "2s", timeout = "1s", rise = 2, fall = 3, port = 8080 }`.
//! Every value is checked here; that port-0 VIPs name a port is checked
//! where the VIP is known (`vips.rs`).

use std::time::Duration;

use toml_edit::Value;

use crate::health::spec::{self, HealthCheck, Probe};

use super::reader::{self, Entry, Node};
use super::schema;
use super::source::{Problems, Sp};

/// A check as written, before the VIP's port is known.
#[derive(Clone, Debug)]
pub struct Draft {
    pub check: HealthCheck,
    /// `port` as written (0 = not written: the VIP's port).
    pub port_given: bool,
}

const KINDS: &[&str] = &["tcp", "http", "mqtt"];

/// `"2s"`, `"500ms"`, `"1m"`, or whole seconds.
fn duration(e: &Entry<'_>, p: &mut Problems) -> Option<Sp<Duration>> {
    let help = "write e.g. \"2s\" or \"500ms\" (from 100ms to 1h)";
    let d = match e.node {
        Node::Value(Value::Integer(i)) => u64::try_from(*i.value()).ok().map(Duration::from_secs),
        Node::Value(Value::String(s)) => {
            let t = s.value().trim();
            let digits = t.bytes().take_while(|b| b.is_ascii_digit()).count();
            let (num, unit) = t.split_at(digits);
            let n: Option<u64> = num.parse().ok();
            match (n, unit.trim()) {
                (Some(n), "ms") => Some(Duration::from_millis(n)),
                (Some(n), "s") => Some(Duration::from_secs(n)),
                (Some(n), "m") => n.checked_mul(60).map(Duration::from_secs),
                (Some(n), "h") => n.checked_mul(3600).map(Duration::from_secs),
                _ => None,
            }
        }
        _ => None,
    };
    match d {
        Some(d) if (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) => {
            Some(Sp::new(d, e.span))
        }
        _ => {
            p.error(
                e.span,
                format!("{} is not a duration from 100ms to 1h", e.what),
            )
            .help(help);
            None
        }
    }
}

pub fn read(e: &Entry<'_>, p: &mut Problems) -> Option<Draft> {
    let mut f = reader::single_table(e, &schema::HEALTHCHECK, p)?;
    let kind = match f.require("type", p) {
        Some(t) => t.word(p, KINDS, &[0usize, 1, 2], "health check type")?,
        None => return None,
    };
    let path = f.take("path");
    let expect = f.take("expect");
    let port = f
        .take("port")
        .and_then(|e| e.integer_in::<u16>(1, 65535, "a TCP port, 1 to 65535", p));
    let interval = f.take("interval").and_then(|e| duration(&e, p));
    let timeout = f.take("timeout").and_then(|e| duration(&e, p));
    let rise = f.take("rise").and_then(|e| {
        e.integer_in::<u32>(1, 100, "how many successes in a row bring a real back", p)
    });
    let fall = f
        .take("fall")
        .and_then(|e| e.integer_in::<u32>(1, 100, "how many failures in a row drain a real", p));
    let probe = match kind.value {
        1 => {
            Probe::Http {
                path: match &path {
                    Some(e) => {
                        let s = e.string(p)?;
                        if !s.value.starts_with('/')
                            || s.value.chars().any(|c| c.is_whitespace() || c.is_control())
                        {
                            p.error(s.span, format!("\"{}\" is not an HTTP path", s.value))
                            .help("write an absolute path without spaces, e.g. path = \"/healthz\"");
                            return None;
                        }
                        s.value.to_string()
                    }
                    None => "/".to_string(),
                },
                expect: match &expect {
                    Some(e) => {
                        e.integer_in::<u16>(100, 599, "an HTTP status code, e.g. expect = 200", p)?
                            .value
                    }
                    None => 200,
                },
            }
        }
        k => {
            for (name, given) in [("path", &path), ("expect", &expect)] {
                if let Some(e) = given {
                    p.error(
                        e.span,
                        format!("`{name}` only applies to type = \"http\" checks"),
                    )
                    .help(format!("remove `{name}`, or write type = \"http\""));
                }
            }
            if k == 0 {
                Probe::Tcp
            } else {
                Probe::Mqtt
            }
        }
    };
    let interval = interval.map_or(spec::DEFAULT_INTERVAL, |d| d.value);
    let timeout_v = timeout
        .as_ref()
        .map_or(spec::DEFAULT_TIMEOUT.min(interval), |d| d.value);
    if timeout_v > interval {
        let span = timeout.as_ref().map_or(f.span, |t| t.span);
        p.error(
            span,
            format!("the timeout ({timeout_v:?}) is longer than the interval ({interval:?})"),
        )
        .help(
            "a probe must finish before the next one starts: lower `timeout` or raise `interval`",
        );
    }
    f.finish(p);
    Some(Draft {
        check: HealthCheck {
            probe,
            port: port.as_ref().map_or(0, |p| p.value),
            interval,
            timeout: timeout_v,
            rise: rise.map_or(spec::DEFAULT_RISE, |r| r.value),
            fall: fall.map_or(spec::DEFAULT_FALL, |r| r.value),
        },
        port_given: port.is_some(),
    })
}
