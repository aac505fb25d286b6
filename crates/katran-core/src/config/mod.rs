//! The configuration file: one TOML file in, a [`Config`] (the dataplane
//! [`State`] plus load-time [`Settings`]) out, or every problem in it with
//! line, column and a fix.
//!
//! How it works: the text is parsed with `toml_edit`, which keeps the place
//! of every key and value; the tree is then walked by hand (`document`,
//! `dataplane`, `vips`, `mappings`) into a located draft, so that all errors
//! are found in one pass instead of stopping at the first; `validate` checks
//! the values against each other; `assemble` builds the result. The keys,
//! their defaults and limits are listed in `schema` and documented in
//! `man/katran.toml.5`.

mod announce;
mod assemble;
mod dataplane;
mod document;
mod draft;
mod error;
pub mod escape;
mod health;
mod keys;
mod mappings;
mod metrics;
mod reader;
pub mod render;
pub mod schema;
mod settings;
mod source;
mod suggest;
mod validate;
mod values;
mod vips;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::model::State;

pub use announce::Announce;
pub use error::{ConfigErrors, Diagnostic, Excerpt, Severity};
pub use keys::{FileText, Key};
pub use metrics::Metrics;
pub use settings::{Gateway, Settings, XdpMode};

use source::{Problems, Source};

/// What a configuration file asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub settings: Settings,
    /// With `Gateway::Auto`, `state.globals.gateway_mac` is all zeros until
    /// the caller resolves it.
    pub state: State,
    /// Socket mark -> real, for health-check packets: those written in the
    /// file, plus one chosen for every real of a checked VIP without one.
    pub somarks: BTreeMap<u32, IpAddr>,
    /// Active health checks, by VIP (ports resolved).
    pub healthchecks: BTreeMap<crate::model::VipKey, crate::health::spec::HealthCheck>,
    /// `[announce]`: VIP routes for a routing daemon; `None`: none.
    pub announce: Option<Announce>,
    /// `[metrics]`: where `katran run` serves Prometheus metrics; `None`: off.
    pub metrics: Option<Metrics>,
    /// Not from the file: VIPs whose every serving real fails its health
    /// check, as the daemon found them. They keep forwarding (better than
    /// dropping everything) but are not announced.
    pub failing: BTreeSet<crate::model::VipKey>,
}

/// A file that was accepted, and what looked wrong in it all the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub config: Config,
    /// Diagnostics of severity `Warning`, in file order.
    pub warnings: Vec<Diagnostic>,
    /// The text it was read from, to place problems found when applying it.
    pub text: FileText,
}

/// A file that could not be read at all: one diagnostic without a place.
pub fn unreadable(file: &str, message: String, help: &str) -> ConfigErrors {
    ConfigErrors(vec![Diagnostic {
        severity: Severity::Error,
        file: file.into(),
        line: 0,
        column: 0,
        message,
        help: Some(help.into()),
        excerpt: None,
    }])
}

/// Checks the bytes of a file named `file` (the reading is the caller's).
pub fn parse_bytes(bytes: Vec<u8>, file: &str) -> Result<Loaded, ConfigErrors> {
    match String::from_utf8(bytes) {
        Ok(text) => parse(&text, file),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            // The lossy text equals the file up to `valid`, where the first
            // bad byte became U+FFFD (three bytes).
            let text = String::from_utf8_lossy(e.as_bytes());
            let source = Source::new(file, &text);
            let (line, column) = source.position(valid);
            let bad = source::Span {
                start: valid,
                end: valid + '\u{fffd}'.len_utf8(),
            };
            Err(ConfigErrors(vec![Diagnostic {
                severity: Severity::Error,
                file: file.into(),
                line,
                column,
                message: "the file is not valid UTF-8".into(),
                help: Some("save the file as UTF-8".into()),
                excerpt: Some(source.excerpt(bad)),
            }]))
        }
    }
}

/// Checks `text`; `file_name` is only used to name the file in diagnostics.
pub fn parse(text: &str, file_name: &str) -> Result<Loaded, ConfigErrors> {
    let source = Source::new(file_name, text);
    let mut problems = Problems::default();
    let draft = document::read(text, &mut problems);
    if let Some(d) = &draft {
        validate::check(d, &source, &mut problems);
    }
    let failed = problems.has_errors();
    let (errors, warnings) = problems.into_diagnostics(&source);
    match draft {
        Some(d) if !failed => Ok(Loaded {
            config: assemble::config(&d),
            warnings,
            text: FileText::new(file_name, text),
        }),
        _ => Err(ConfigErrors(errors)),
    }
}
