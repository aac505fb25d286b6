//! Apply-time errors that come from a key of the file, placed at that key.
//! The file passed `check`, but the host or the loaded dataplane refuses
//! something it names: an interface, `gateway_mac = "auto"`, a capacity.
//! The apply fails as before; this finds which key it was from the typed
//! error and makes a [`Diagnostic`] at its line, with the reason and a fix, shown
//! like any problem of the file.

mod iface;

pub use iface::IfaceProblem;

use crate::config::{Diagnostic, FileText, Key};
use crate::files::status_file::FailureKind;
use crate::kernel::gateway::{self, GatewayError};
use crate::plan::PlanError;

/// `err` at the key of the file it comes from; `None` when it comes from
/// none (it is then shown as it is).
pub fn place(err: &anyhow::Error, text: &FileText) -> Option<Diagnostic> {
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
    let p = find::<IfaceProblem>(err)?;
    Some(text.error(Key::Interface(p.iface()), p.to_string(), p.fix()))
}

/// Which kind of failure `err` is, from its type: a dataplane too small,
/// something the host refuses, or else the kernel.
pub fn kind(err: &anyhow::Error) -> FailureKind {
    match find::<PlanError>(err) {
        Some(PlanError::Unreadable(_)) => FailureKind::Kernel,
        Some(_) => FailureKind::Capacity,
        None if find::<IfaceProblem>(err).is_some() || find::<GatewayError>(err).is_some() => {
            FailureKind::Host
        }
        None => FailureKind::Kernel,
    }
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

#[cfg(test)]
mod tests;
