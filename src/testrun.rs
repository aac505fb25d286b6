//! Runs a program once on a frame with BPF_PROG_TEST_RUN: the conformance
//! tests, our own vectors and the benchmark all drive the dataplane this way.

use anyhow::{Context, Result};
use libbpf_rs::ProgramInput;
use libbpf_rs::ProgramMut;

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

/// One run, `repeat = 1`: the verdict and the frame as the program left it.
pub fn run_once(prog: &ProgramMut<'_>, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
    // Room for the largest encapsulation the program adds.
    let mut out = vec![0u8; frame.len() + 128];
    let input = ProgramInput {
        data_in: Some(frame),
        data_out: Some(&mut out),
        repeat: 1,
        ..Default::default()
    };
    let output = prog.test_run(input).context("BPF_PROG_TEST_RUN")?;
    let verdict = output.return_value;
    let len = output.data.map(|d| d.len()).unwrap_or(0);
    out.truncate(len);
    Ok((verdict, out))
}

/// Like [`run_once`], also returning the kernel-measured run time in ns.
pub fn run_timed(prog: &ProgramMut<'_>, frame: &[u8], out: &mut [u8]) -> Result<(u32, u64)> {
    let input = ProgramInput {
        data_in: Some(frame),
        data_out: Some(out),
        repeat: 1,
        ..Default::default()
    };
    let output = prog.test_run(input).context("BPF_PROG_TEST_RUN")?;
    Ok((output.return_value, output.duration.as_nanos() as u64))
}
