//! Checking capabilities before touching the kernel. Without CAP_BPF the
//! kernel's answer to loading the dataplane is a page of verifier output and
//! "Permission denied", which names nothing; a command that changes the
//! dataplane asks the process's effective set first and names what is
//! missing and how to grant it.

use std::fmt;

/// The capabilities katran uses, with their numbers from
/// `linux/capability.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    NetAdmin,
    SysAdmin,
    Perfmon,
    Bpf,
}

impl Cap {
    fn bit(self) -> u32 {
        match self {
            Cap::NetAdmin => 12,
            Cap::SysAdmin => 21,
            Cap::Perfmon => 38,
            Cap::Bpf => 39,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Cap::NetAdmin => "CAP_NET_ADMIN",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Perfmon => "CAP_PERFMON",
            Cap::Bpf => "CAP_BPF",
        }
    }
}

/// What loading, attaching, pinning and removing the dataplane needs: BPF
/// programs and maps, XDP attachment, and pointer arithmetic in the program
/// (CAP_PERFMON).
pub const DATAPLANE: &[Cap] = &[Cap::Bpf, Cap::NetAdmin, Cap::Perfmon];

/// A command run without the capabilities it needs.
#[derive(Debug, thiserror::Error)]
pub struct Missing {
    pub command: String,
    pub needed: Vec<Cap>,
    pub missing: Vec<Cap>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |caps: &[Cap]| caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
        write!(
            f,
            "{} needs {}; this process lacks {}. Run it as root, or grant them \
             (systemd: AmbientCapabilities={}; a shell: setcap or capsh)",
            self.command,
            list(&self.needed),
            list(&self.missing),
            self.needed
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

/// Which of `needed` an effective set lacks. CAP_SYS_ADMIN stands in for
/// CAP_BPF and CAP_PERFMON, as it does in the kernel.
pub fn lacking(effective: u64, needed: &[Cap]) -> Vec<Cap> {
    let has = |c: Cap| effective & (1u64 << c.bit()) != 0;
    needed
        .iter()
        .copied()
        .filter(|&c| {
            let covered = matches!(c, Cap::Bpf | Cap::Perfmon) && has(Cap::SysAdmin);
            !has(c) && !covered
        })
        .collect()
}

/// The `CapEff:` mask of a `/proc/PID/status` text.
pub fn effective_of(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Fails, naming what is missing, unless this process holds every
/// capability in `needed`.
pub fn require(command: &str, needed: &[Cap]) -> Result<(), Missing> {
    // Unreadable /proc: say nothing here and let the kernel answer.
    let Some(eff) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(effective_of)
    else {
        return Ok(());
    };
    let missing = lacking(eff, needed);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Missing {
        command: command.to_string(),
        needed: needed.to_vec(),
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_mask() {
        let status = "Name:\tkatran\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_of(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_of("Name:\tx\n"), None);
    }

    #[test]
    fn names_what_is_missing() {
        let net_admin = 1u64 << 12;
        assert_eq!(lacking(net_admin, DATAPLANE), vec![Cap::Bpf, Cap::Perfmon]);
        assert_eq!(lacking(0, DATAPLANE), DATAPLANE.to_vec());
        let all = (1u64 << 39) | (1 << 38) | (1 << 12);
        assert!(lacking(all, DATAPLANE).is_empty());
    }

    #[test]
    fn sys_admin_stands_in_for_bpf_and_perfmon() {
        let old_style = (1u64 << 21) | (1 << 12);
        assert!(lacking(old_style, DATAPLANE).is_empty());
        assert_eq!(lacking(1 << 21, DATAPLANE), vec![Cap::NetAdmin]);
    }

    #[test]
    fn the_message_says_how_to_grant() {
        let m = Missing {
            command: "katran apply".into(),
            needed: DATAPLANE.to_vec(),
            missing: vec![Cap::Bpf],
        }
        .to_string();
        assert!(m.contains("katran apply needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON"));
        assert!(m.contains("lacks CAP_BPF."));
        assert!(m.contains("AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON"));
    }
}
