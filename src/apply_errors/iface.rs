//! What the host says against an interface the file names: asked again
//! after an apply failed, so the failure can be shown at that interface's
//! string in `interfaces` with the host's reason and a fix. The questions
//! are the ones the apply asks (the interface exists, is Ethernet, runs no
//! other XDP program, has native XDP when the file wants it), read-only.

use crate::bpf::attach::{self, Attached};
use crate::config::XdpMode;

/// An interface in `interfaces` that this host cannot balance on (worded
/// as the apply words it).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IfaceProblem {
    #[error("interface `{iface}` does not exist on this host: {reason}")]
    Missing { iface: String, reason: String },
    #[error("{0} is not an Ethernet interface: the balancer rewrites Ethernet frames")]
    NotEthernet(String),
    #[error("{iface} already runs XDP program {id} ({name}, {how})")]
    OtherProgram {
        iface: String,
        id: u32,
        name: String,
        how: Attached,
    },
    #[error(
        "{0}: its driver does not offer native XDP, and the file asks for xdp_mode = \"native\""
    )]
    NoNativeXdp(String),
}

impl IfaceProblem {
    /// How to fix it.
    pub fn fix(&self) -> String {
        match self {
            IfaceProblem::Missing { .. } => {
                "name an interface this host has (`ip link` lists them), or create it first".into()
            }
            IfaceProblem::NotEthernet(_) => {
                "name the Ethernet interface the VIP traffic arrives on".into()
            }
            IfaceProblem::OtherProgram { iface, .. } => format!(
                "katran does not replace another program: detach it first \
                 (`ip link set dev {iface} xdp off`)"
            ),
            IfaceProblem::NoNativeXdp(_) => {
                "set xdp_mode = \"auto\" (native where the driver has it) or \"generic\"".into()
            }
        }
    }
}

/// The first thing wrong with `iface` for the balancer, if any; `ours` is
/// the id of the pinned balancer program (not "another program"). `None`
/// too when the host cannot be asked.
pub fn probe(iface: &str, mode: XdpMode, ours: Option<u32>) -> Option<IfaceProblem> {
    let idx = match attach::ifindex(iface) {
        Ok(idx) => idx,
        Err(e) => {
            return Some(IfaceProblem::Missing {
                iface: iface.into(),
                reason: e.root_cause().to_string(),
            })
        }
    };
    if !attach::is_ethernet(iface).ok()? {
        return Some(IfaceProblem::NotEthernet(iface.into()));
    }
    let q = attach::query(idx).ok()?;
    if let Some((id, how)) = q.attached().filter(|(id, _)| Some(*id) != ours) {
        return Some(IfaceProblem::OtherProgram {
            iface: iface.into(),
            id,
            name: attach::prog_name(id),
            how,
        });
    }
    if mode == XdpMode::Native && !q.native_capable {
        return Some(IfaceProblem::NoNativeXdp(iface.into()));
    }
    None
}
