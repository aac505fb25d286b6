//! Attaching XDP programs to interfaces through `bpf_link`s, pinning them so
//! they outlive the process (a restarted daemon adopts them), and detaching.
//! Used for the balancer and for the reals' decapsulation program alike.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use libbpf_rs::libbpf_sys;

use crate::config::XdpMode;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// How a program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Native,
    Generic,
}

impl std::fmt::Display for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Attached::Native => "native",
            Attached::Generic => "generic",
        })
    }
}

/// An interface name that is also safe as a pin file name.
pub fn check_iface_name(iface: &str) -> Result<()> {
    let valid = !iface.is_empty()
        && iface.len() <= 15
        && iface != "."
        && iface != ".."
        && !iface.contains(|c: char| c == '/' || c.is_whitespace() || c == '\0');
    if !valid {
        bail!("`{iface}` is not a valid interface name");
    }
    Ok(())
}

pub fn ifindex(name: &str) -> Result<u32> {
    let c =
        CString::new(name).with_context(|| format!("interface name {name:?} has a NUL byte"))?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("no interface named {name}"));
    }
    Ok(idx)
}

fn link_create(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags,
        ..Default::default()
    };
    // SAFETY: valid program fd and options for the duration of the call.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, libbpf_sys::BPF_XDP, &opts)
    };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a fresh descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches `prog` to `iface` in `mode`, returning the link and the mode used.
pub fn attach_xdp(prog: BorrowedFd<'_>, iface: &str, mode: XdpMode) -> Result<(OwnedFd, Attached)> {
    let idx = ifindex(iface)?;
    let native = || link_create(prog, idx, XDP_FLAGS_DRV_MODE);
    let generic = || link_create(prog, idx, XDP_FLAGS_SKB_MODE);
    let (link, how) = match mode {
        XdpMode::Native => (
            native().with_context(|| format!("native XDP on {iface}"))?,
            Attached::Native,
        ),
        XdpMode::Generic => (
            generic().with_context(|| format!("generic XDP on {iface}"))?,
            Attached::Generic,
        ),
        XdpMode::Auto => match native() {
            Ok(l) => (l, Attached::Native),
            Err(e) => {
                log::info!("{iface}: native XDP unavailable ({e}), using generic");
                (
                    generic().with_context(|| format!("generic XDP on {iface}"))?,
                    Attached::Generic,
                )
            }
        },
    };
    Ok((link, how))
}

/// Pins any BPF object (map, program, link) at `path`.
pub fn pin(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).context("pin path has a NUL byte")?;
    // SAFETY: valid fd and NUL-terminated path.
    let ret = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret))
            .with_context(|| format!("pinning at {}", path.display()));
    }
    Ok(())
}

/// Opens a pinned object.
pub fn open_pinned(path: &Path) -> Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).context("pin path has a NUL byte")?;
    // SAFETY: NUL-terminated path.
    let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd))
            .with_context(|| format!("opening {}", path.display()));
    }
    // SAFETY: a fresh descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Refuses `path` unless it is a pinned BPF link (the kernel's fdinfo of
/// the opened object names a `link_type`): an entry someone else made under
/// `links/` must not pass for an attachment.
pub fn check_pinned_link(path: &Path) -> Result<()> {
    let not_a_link = || {
        format!(
            "{} is not a pinned BPF link; katran did not make it: remove it and apply again",
            path.display()
        )
    };
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("examining {}", path.display()))?;
    if meta.is_dir() {
        bail!(not_a_link());
    }
    let fd = open_pinned(path).with_context(not_a_link)?;
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .with_context(|| format!("reading the fdinfo of {}", path.display()))?;
    if !info.lines().any(|l| l.starts_with("link_type:")) {
        bail!(not_a_link());
    }
    Ok(())
}

/// Detaches the pinned link at `path` from its interface and removes the pin.
pub fn detach_pinned(path: &Path) -> Result<()> {
    let link = open_pinned(path)?;
    // SAFETY: a link fd.
    let ret = unsafe { libbpf_sys::bpf_link_detach(link.as_fd().as_raw_fd()) };
    if ret < 0 {
        bail!(
            "detaching {}: {}",
            path.display(),
            io::Error::from_raw_os_error(-ret)
        );
    }
    fs::remove_file(path).with_context(|| format!("removing {}", path.display()))
}

/// Makes sure `dir` is a private directory on the host's bpffs (see
/// [`super::bpffs::ensure`]: refuses a private mount namespace such as
/// `ip netns exec` gives).
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    super::bpffs::ensure(dir)
}
