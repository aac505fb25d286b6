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

/// Points the pinned XDP link at `path` to `new` instead of `expected`,
/// atomically (`bpf_link_update` with `BPF_F_REPLACE`): the interface runs
/// one program or the other, never none, and the kernel refuses if the
/// link no longer runs `expected`.
pub fn link_update(path: &Path, new: BorrowedFd<'_>, expected: BorrowedFd<'_>) -> Result<()> {
    let link = open_pinned(path)?;
    let opts = libbpf_sys::bpf_link_update_opts {
        sz: size_of::<libbpf_sys::bpf_link_update_opts>() as _,
        flags: libbpf_sys::BPF_F_REPLACE,
        old_prog_fd: expected.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: valid link and program descriptors and options for the call.
    let ret =
        unsafe { libbpf_sys::bpf_link_update(link.as_fd().as_raw_fd(), new.as_raw_fd(), &opts) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret))
            .with_context(|| format!("switching the program of {}", path.display()));
    }
    Ok(())
}

/// Makes sure `dir` is a private directory on the host's bpffs (see
/// [`super::bpffs::ensure`]: refuses a private mount namespace such as
/// `ip netns exec` gives).
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    super::bpffs::ensure(dir)
}

/// Attaches `prog` to `iface` in exactly `how`: no fallback, so the mode a
/// plan announced is the mode that runs.
pub fn attach_as(prog: BorrowedFd<'_>, iface: &str, how: Attached) -> Result<OwnedFd> {
    let idx = ifindex(iface)?;
    let flags = match how {
        Attached::Native => XDP_FLAGS_DRV_MODE,
        Attached::Generic => XDP_FLAGS_SKB_MODE,
    };
    link_create(prog, idx, flags).with_context(|| format!("{how} XDP on {iface}"))
}

/// What the kernel says about XDP on one interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpState {
    /// Program attached in the driver (native), if any.
    pub native_prog: Option<u32>,
    /// Program attached in the generic path, if any.
    pub generic_prog: Option<u32>,
    /// The driver advertises native XDP (NETDEV_XDP_ACT_BASIC).
    pub native_capable: bool,
}

impl XdpState {
    /// The attached program and how, if any.
    pub fn attached(&self) -> Option<(u32, Attached)> {
        self.native_prog
            .map(|p| (p, Attached::Native))
            .or(self.generic_prog.map(|p| (p, Attached::Generic)))
    }
}

const NETDEV_XDP_ACT_BASIC: u64 = 1 << 0;

/// Queries XDP on the interface with index `ifindex`.
pub fn query(ifindex: u32) -> Result<XdpState> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: valid options struct of the declared size.
    let ret = unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret))
            .with_context(|| format!("querying XDP on interface index {ifindex}"));
    }
    let id = |v: u32| (v != 0).then_some(v);
    Ok(XdpState {
        native_prog: id(opts.drv_prog_id),
        generic_prog: id(opts.skb_prog_id),
        native_capable: opts.feature_flags & NETDEV_XDP_ACT_BASIC != 0,
    })
}

/// The id of a BPF program or link object's program.
pub fn prog_id_of(fd: BorrowedFd<'_>) -> Result<u32> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: a program fd and an info buffer of the given length.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret)).context("reading program info");
    }
    Ok(info.id)
}

/// The program a pinned XDP link runs, and the interface it is on.
pub fn link_info(fd: BorrowedFd<'_>) -> Result<(u32, u32)> {
    let mut info = libbpf_sys::bpf_link_info::default();
    let mut len = size_of::<libbpf_sys::bpf_link_info>() as u32;
    // SAFETY: a link fd and an info buffer of the given length.
    let ret = unsafe { libbpf_sys::bpf_link_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret)).context("reading link info");
    }
    // SAFETY: the kernel filled the xdp member for an XDP link.
    let ifindex = unsafe { info.__bindgen_anon_1.xdp.ifindex };
    Ok((info.prog_id, ifindex))
}

/// The name of the program with id `id`, for messages.
pub fn prog_name(id: u32) -> String {
    // SAFETY: plain id lookup.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return "?".into();
    }
    // SAFETY: a fresh descriptor we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: a program fd and an info buffer of the given length.
    let ret =
        unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_fd().as_raw_fd(), &mut info, &mut len) };
    if ret < 0 {
        return "?".into();
    }
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&name).into_owned()
}

/// Whether the interface is Ethernet (ARPHRD_ETHER), the only link type
/// the balancer's frames make sense on. Asked of the kernel in this
/// process's network namespace (sysfs may show another one's).
pub fn is_ethernet(iface: &str) -> Result<bool> {
    check_iface_name(iface)?;
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error())
            .context("opening a socket to ask about an interface");
    }
    // SAFETY: a fresh descriptor we now own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: a valid socket and an ifreq with a NUL-terminated name (checked length <= 15).
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if ret < 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("reading the link type of {iface}"));
    }
    // SAFETY: SIOCGIFHWADDR filled the hardware-address member.
    let family = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    Ok(family == libc::ARPHRD_ETHER)
}
