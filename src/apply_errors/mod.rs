//! Apply-time errors that come from a key of the file, placed at that key.
//! The file passed `check`, but the host or the loaded dataplane refuses
//! something it names: an interface, `gateway_mac = "auto"`, a capacity.
//! The apply fails as before; this finds which key it was (from the typed
//! error, or by asking the host again about the interfaces the error names)
//! and makes a [`Diagnostic`] at its line, with the reason and a fix, shown
//! like any problem of the file.

mod iface;

pub use iface::{probe, IfaceProblem};

use crate::config::{Diagnostic, FileText, Key, Settings};
use crate::gateway::{self, GatewayError};
use crate::live::{self, Pins};
use crate::plan::PlanError;

/// `err` at the key of the file it comes from; `None` when it comes from
/// none (it is then shown as it is).
pub fn place(err: &anyhow::Error, settings: &Settings, text: &FileText) -> Option<Diagnostic> {
    if let Some(e) = find::<PlanError>(err) {
        return capacity(e, text);
    }
    if let Some(e) = find::<GatewayError>(err) {
        return Some(text.error(
            Key::GatewayMac,
            format!("gateway_mac = \"auto\" cannot be resolved: {}", e.reason()),
            format!(
                "{}: the MAC address of the router the balancer sends to",
                gateway::FIX
            ),
        ));
    }
    let said = format!("{err:#}");
    let named: Vec<&String> = settings
        .interfaces
        .iter()
        .filter(|i| mentions(&said, i))
        .collect();
    if named.is_empty() {
        return None;
    }
    let ours = live::prog_id(&Pins::new(&settings.pin_dir)).ok().flatten();
    named
        .into_iter()
        .find_map(|i| Some((i, probe(i, settings.xdp_mode, ours)?)))
        .map(|(i, p)| text.error(Key::Interface(i), p.to_string(), p.fix()))
}

/// The first error of type `E` in the chain.
fn find<E: std::error::Error + 'static>(err: &anyhow::Error) -> Option<&E> {
    err.chain().find_map(|e| e.downcast_ref::<E>())
}

/// A dataplane too small for what the file adds, at the limit to raise.
fn capacity(e: &PlanError, text: &FileText) -> Option<Diagnostic> {
    let (key, fix) = match e {
        PlanError::TooManyVips { .. } => (
            Key::MaxVips,
            "raise max_vips (katran then replaces the dataplane), or remove VIPs",
        ),
        PlanError::TooManyReals { .. }
        | PlanError::TooManyBackends { .. }
        | PlanError::TooManyServerIds { .. } => (
            Key::MaxReals,
            "raise max_reals (katran then replaces the dataplane), or apply in two steps: \
             first without the reals that go, then with the new ones",
        ),
        PlanError::Unreadable(_) => return None,
    };
    Some(text.error(key, e.to_string(), fix.into()))
}

/// `text` names `name` as a whole word (not inside a longer name).
fn mentions(text: &str, name: &str) -> bool {
    let in_name = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@');
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(in_name) && !after.is_some_and(in_name)
    })
}

#[cfg(test)]
mod tests;
