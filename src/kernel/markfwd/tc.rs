//! Attaching the health-check program to an interface's clsact egress hook
//! as a direct-action tc filter (libbpf's `bpf_tc_*` through libbpf-rs's
//! `TcHook`), finding out what is attached there, and detaching.
//!
//! The filter always has the same handle and priority, so katran finds and
//! replaces its own filter and leaves every other one alone. Priority 1
//! makes it run before filters installed with tc's default priorities: its
//! untouched frames go on to them (TC_ACT_UNSPEC), encapsulated ones do not.
//! A tc filter is not a bpf_link and cannot be pinned; it stays attached
//! until detached (or the interface goes away). The clsact qdisc is created
//! when missing and never removed: other programs may use it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use anyhow::{Context, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::{TcHook, TcHookBuilder, TC_EGRESS};

/// "kt": katran's filter among others on the hook.
pub const HANDLE: u32 = 0x6b74;
pub const PRIORITY: u32 = 1;

fn hook(prog: BorrowedFd<'_>, ifindex: u32) -> TcHook {
    TcHookBuilder::new(prog)
        .ifindex(ifindex as i32)
        .replace(true)
        .handle(HANDLE)
        .priority(PRIORITY)
        .hook(TC_EGRESS)
}

/// What libbpf reports for a hook without clsact qdisc (EINVAL) or
/// without katran's filter (ENOENT).
fn absent(e: &libbpf_rs::Error) -> bool {
    matches!(
        e.kind(),
        libbpf_rs::ErrorKind::NotFound | libbpf_rs::ErrorKind::InvalidInput
    )
}

/// The id of the program in katran's egress filter on `ifindex`, if any.
/// `prog` only identifies the hook's owner to libbpf; any program will do.
pub fn attached_id(prog: BorrowedFd<'_>, ifindex: u32) -> Result<Option<u32>> {
    match hook(prog, ifindex).query() {
        Ok(id) => Ok(Some(id)),
        Err(e) if absent(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("querying tc egress of ifindex {ifindex}")),
    }
}

/// Creates the clsact qdisc if missing and attaches (or replaces) katran's
/// egress filter with `prog`.
pub fn attach(prog: BorrowedFd<'_>, ifindex: u32) -> Result<()> {
    let mut h = hook(prog, ifindex);
    h.create()
        .with_context(|| format!("creating the clsact qdisc on ifindex {ifindex}"))?;
    h.attach()
        .with_context(|| format!("attaching to tc egress of ifindex {ifindex}"))?;
    Ok(())
}

/// Removes katran's egress filter from `ifindex`; `false` if there was none.
pub fn detach(prog: BorrowedFd<'_>, ifindex: u32) -> Result<bool> {
    match hook(prog, ifindex).detach() {
        Ok(()) => Ok(true),
        Err(e) if absent(&e) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("detaching from tc egress of ifindex {ifindex}")),
    }
}

/// The kernel's id of a loaded program.
pub fn prog_id(prog: BorrowedFd<'_>) -> Result<u32> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: a program descriptor and an info buffer of the given length.
    let ret = unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(prog.as_fd().as_raw_fd(), &mut info, &mut len)
    };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret)).context("reading a program's id");
    }
    Ok(info.id)
}
