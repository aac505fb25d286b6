//! What the host says against an interface the file names, as the apply
//! finds it (`reconcile::plan_interfaces`: the interface exists, is
//! Ethernet, runs no other XDP program, has native XDP when the file wants
//! it), typed so that the failure is shown at that interface's string in
//! `interfaces` with the host's reason and a fix.

use crate::kernel::bpf::attach::Attached;

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
    /// The interface, as the file names it.
    pub fn iface(&self) -> &str {
        match self {
            IfaceProblem::Missing { iface, .. } | IfaceProblem::OtherProgram { iface, .. } => iface,
            IfaceProblem::NotEthernet(iface) | IfaceProblem::NoNativeXdp(iface) => iface,
        }
    }

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
