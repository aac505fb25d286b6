//! `BPF_F_MMAPABLE` arrays mapped into this process: the rings (and the
//! replaced dataplane's rings during a replacement) and the per-CPU
//! connection tables are read and written without a system call per
//! element.

use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use anyhow::{ensure, Context, Result};
use libbpf_rs::{MapCore, MapHandle};

use super::abi::Pod;

/// The kernel stores array elements at a multiple of 8 bytes.
fn stride(value_size: usize) -> usize {
    value_size.next_multiple_of(8)
}

/// The whole of one array map's values, shared with the kernel.
struct Mapping {
    ptr: NonNull<u8>,
    bytes: usize,
}

impl Mapping {
    fn new(handle: &MapHandle) -> Result<Mapping> {
        let bytes = (handle.max_entries() as usize * stride(handle.value_size() as usize))
            .next_multiple_of(4096);
        // SAFETY: mapping a BPF_F_MMAPABLE array map's fd, shared, whole size.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                handle.as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap of an array map");
        }
        let ptr = NonNull::new(p.cast::<u8>()).context("mmap returned null")?;
        Ok(Mapping { ptr, bytes })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.bytes);
        }
    }
}

/// An array of 4-byte values, each read and written in one access.
pub struct U32Array {
    map: Mapping,
    slots: usize,
}

/// Slot `i` is the low half of word `2 * i` (elements are 8 bytes apart).
const WORDS_PER_SLOT: usize = 2;

impl U32Array {
    /// Maps the whole of `handle`, which must be a mmapable array of u32.
    pub fn map(handle: &MapHandle) -> Result<U32Array> {
        ensure!(handle.value_size() == 4, "map values are not 4 bytes");
        Ok(U32Array {
            map: Mapping::new(handle)?,
            slots: handle.max_entries() as usize,
        })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    fn words(&self) -> &[AtomicU32] {
        // SAFETY: the mapping holds `slots * WORDS_PER_SLOT` u32s for as
        // long as self lives; the program reads them concurrently, hence
        // atomics rather than plain references.
        unsafe {
            std::slice::from_raw_parts(
                self.map.ptr.as_ptr().cast::<AtomicU32>(),
                self.slots * WORDS_PER_SLOT,
            )
        }
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

/// An array of larger values, copied in and out whole. A copy is not one
/// access: like a map update by system call, the program may meet an
/// element half written, and writers order their stores for that.
pub struct PodArray<T> {
    map: Mapping,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> PodArray<T> {
    /// Maps the whole of `handle`, a mmapable array of `T`.
    pub fn map(handle: &MapHandle) -> Result<PodArray<T>> {
        ensure!(
            handle.value_size() as usize == size_of::<T>(),
            "map values are {} bytes, not {}",
            handle.value_size(),
            size_of::<T>()
        );
        Ok(PodArray {
            map: Mapping::new(handle)?,
            len: handle.max_entries() as usize,
            _t: PhantomData,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at(&self, i: usize) -> *mut T {
        assert!(i < self.len, "element {i} of an array of {}", self.len);
        // SAFETY: in bounds of the mapping (checked above); elements start
        // at multiples of the stride, which keeps T's alignment (at most 8).
        unsafe {
            self.map
                .ptr
                .as_ptr()
                .add(i * stride(size_of::<T>()))
                .cast::<T>()
        }
    }

    pub fn get(&self, i: usize) -> T {
        // SAFETY: a valid element; volatile, as the program writes it too.
        unsafe { std::ptr::read_volatile(self.at(i)) }
    }

    pub fn set(&self, i: usize, v: &T) {
        // SAFETY: as in `get`.
        unsafe { std::ptr::write_volatile(self.at(i), *v) }
    }

    /// The 8 bytes at `offset` of element `i`, as one word: for the fields
    /// the program reads and writes in one access, and for writing an
    /// element in the order the program expects.
    pub fn word(&self, i: usize, offset: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= size_of::<T>(),
            "word at byte {offset} of a {}-byte element",
            size_of::<T>()
        );
        // SAFETY: inside element i (checked above and in `at`), 8-byte
        // aligned (elements are, and so is the offset); shared with the
        // program for as long as self lives, hence an atomic.
        unsafe { &*self.at(i).cast::<u8>().add(offset).cast::<AtomicU64>() }
    }
}
