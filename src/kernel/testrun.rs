//! Runs a program once on a frame with BPF_PROG_TEST_RUN: the conformance
//! tests, our own vectors and the benchmark all drive the dataplane this way.
//! Works on a plain descriptor, so any thread can run a loaded program.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::libbpf_sys;

/// XDP verdicts, as the kernel numbers them.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

pub fn verdict_name(v: u32) -> &'static str {
    match v {
        0 => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        4 => "XDP_REDIRECT",
        _ => "unknown",
    }
}

/// One run (`repeat = 1`) into `out`: verdict, output length, kernel time.
pub fn run_into(prog: &impl AsFd, frame: &[u8], out: &mut [u8]) -> Result<(u32, usize, Duration)> {
    run_with_context(prog, frame, &[], out)
}

/// As [`run_into`], with a program context given as bytes (a tc program's
/// `struct __sk_buff`, which the kernel completes with zeros); empty: none.
pub fn run_with_context(
    prog: &impl AsFd,
    frame: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(u32, usize, Duration)> {
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: frame.as_ptr().cast(),
        data_size_in: frame.len() as u32,
        data_out: out.as_mut_ptr().cast(),
        data_size_out: out.len() as u32,
        ctx_in: if context.is_empty() {
            std::ptr::null()
        } else {
            context.as_ptr().cast()
        },
        ctx_size_in: context.len() as u32,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: the buffers outlive the call and their sizes are given.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_fd().as_raw_fd(), &mut opts) };
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret)).context("BPF_PROG_TEST_RUN");
    }
    Ok((
        opts.retval,
        opts.data_size_out as usize,
        Duration::from_nanos(u64::from(opts.duration)),
    ))
}

/// One run: the verdict and the frame as the program left it.
pub fn run_once(prog: &impl AsFd, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
    // Room for the largest encapsulation the program adds.
    let mut out = vec![0u8; frame.len() + 128];
    let (verdict, len, _) = run_into(prog, frame, &mut out)?;
    out.truncate(len);
    Ok((verdict, out))
}

/// One run into `out`: the verdict and the kernel-measured time in ns.
pub fn run_timed(prog: &impl AsFd, frame: &[u8], out: &mut [u8]) -> Result<(u32, u64)> {
    let (verdict, _, took) = run_into(prog, frame, out)?;
    Ok((verdict, took.as_nanos() as u64))
}
