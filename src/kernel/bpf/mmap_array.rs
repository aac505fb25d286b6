//! A `BPF_F_MMAPABLE` array of 4-byte values, mapped into this process:
//! the rings (and the replaced dataplane's rings during a replacement) are
//! read and written without a system call per slot.

use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{ensure, Context, Result};
use libbpf_rs::{MapCore, MapHandle};

/// The kernel stores array elements 8 bytes apart, so slot `i` is the low
/// half of word `2 * i`.
const WORDS_PER_SLOT: usize = 2;

pub struct U32Array {
    ptr: NonNull<AtomicU32>,
    slots: usize,
}

impl U32Array {
    fn bytes(slots: usize) -> usize {
        (slots * WORDS_PER_SLOT * 4).next_multiple_of(4096)
    }

    /// Maps the whole of `handle`, which must be a mmapable array of u32.
    pub fn map(handle: &MapHandle) -> Result<U32Array> {
        ensure!(handle.value_size() == 4, "map values are not 4 bytes");
        let slots = handle.max_entries() as usize;
        // SAFETY: mapping a BPF_F_MMAPABLE array map's fd, shared, whole size.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::bytes(slots),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                handle.as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap of an array map");
        }
        let ptr = NonNull::new(p.cast::<AtomicU32>()).context("mmap returned null")?;
        Ok(U32Array { ptr, slots })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    fn words(&self) -> &[AtomicU32] {
        // SAFETY: the mapping holds `slots * WORDS_PER_SLOT` u32s for as
        // long as self lives; the program reads them concurrently, hence
        // atomics rather than plain references.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.slots * WORDS_PER_SLOT) }
    }

    pub fn get(&self, slot: usize) -> u32 {
        self.words()[slot * WORDS_PER_SLOT].load(Ordering::Relaxed)
    }

    /// One aligned 4-byte store: the program never sees a torn slot.
    pub fn set(&self, slot: usize, value: u32) {
        self.words()[slot * WORDS_PER_SLOT].store(value, Ordering::Relaxed)
    }

    pub fn read(&self, range: std::ops::Range<usize>) -> Vec<u32> {
        range.map(|i| self.get(i)).collect()
    }
}

impl Drop for U32Array {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), Self::bytes(self.slots));
        }
    }
}
