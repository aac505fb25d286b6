//! Code placement for the side-by-side runs.
//!
//! The kernel puts every JIT-compiled program in a shared pack, one after the
//! other, so where ours, the floor and Katran's land depends on what was
//! loaded before them: on ours alone, a change to our program's length moves
//! Katran's and the floor's code too. Where the code lands decides which
//! branch-predictor and cache entries it shares with the kernel's own code,
//! and that moved a path's time by up to 20% (for Katran as for ours) from
//! one build to the next without a change to the code measured. A spacer is
//! a program of a random length loaded before each program under test and
//! kept loaded with it, so each placement puts every program somewhere else
//! and the pooled runs measure the programs rather than their addresses.

use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{bail, Result};
use libbpf_rs::libbpf_sys;

/// Instructions of the longest spacer: `r0 = 0` compiles to 2 bytes, so a
/// spacer shifts what follows by up to 8 KiB, beyond a page.
const MAX_LEN: u64 = 4096;

/// A loaded program that is never run; dropping it frees its place.
pub struct Spacer {
    _fd: OwnedFd,
}

impl Spacer {
    /// Loads a spacer of a length drawn from `rng`.
    pub fn load(rng: &mut Rng) -> Result<Spacer> {
        // At least one: a bare `exit` returns an unset r0, which the
        // verifier refuses (EACCES), and one load in 4,096 failed the run.
        let len = 1 + rng.below(MAX_LEN) as usize;
        // `r0 = 0` (BPF_ALU64 | BPF_MOV | BPF_K) `len` times, then `exit`.
        let mut insns = vec![0xb7u64; len];
        insns.push(0x95);
        let name = c"kperf_spacer";
        let license = c"GPL";
        // SAFETY: `insns` holds `insns.len()` 8-byte instructions in the
        // kernel's layout (code in the first byte, registers and immediates
        // zero), and the strings are NUL-terminated; no options.
        let fd = unsafe {
            libbpf_sys::bpf_prog_load(
                libbpf_sys::BPF_PROG_TYPE_XDP,
                name.as_ptr(),
                license.as_ptr(),
                insns.as_ptr().cast(),
                insns.len() as _,
                std::ptr::null_mut(),
            )
        };
        if fd < 0 {
            bail!(
                "loading a spacer program: {}",
                std::io::Error::from_raw_os_error(-fd)
            );
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(Spacer {
            _fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }
}

/// A small pseudo-random sequence (xorshift64*), seeded from the clock: the
/// placements only need to differ, not to be unpredictable.
pub struct Rng(u64);

impl Rng {
    pub fn from_clock() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(nanos | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % n
    }
}
