//! `katran check`'s statement of pinned memory against the kernel's own
//! accounting: the `memlock` the kernel reports for each map of a loaded
//! dataplane, summed, must match what `memory::of` computes from the same
//! settings. Needs root.

use crate::common;

use std::os::fd::{AsFd, AsRawFd};

use katran::kernel::bpf::loader::{Dataplane, LoadOptions};

/// The kernel's memlock of every map of `dp`, in bytes.
fn kernel_memlock(dp: &Dataplane) -> u64 {
    let maps = dp.maps().expect("maps");
    let stamp = dp.stamp_map().expect("stamp");
    let mut fds: Vec<i32> = maps
        .named()
        .iter()
        .map(|(_, h)| h.as_fd().as_raw_fd())
        .collect();
    fds.push(stamp.as_fd().as_raw_fd());
    fds.iter()
        .map(|fd| {
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).expect("fdinfo");
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .expect("a memlock line")
        })
        .sum()
}

#[test]
fn stated_memory_matches_the_kernels_accounting() {
    if !common::privileged("stated memory") {
        return;
    }
    let cpus = libbpf_rs::num_possible_cpus().expect("cpus") as u32;
    let cases = [
        ("defaults (per-CPU tables)", LoadOptions::default()),
        (
            "large per-CPU tables",
            LoadOptions {
                conn_table_size: 1 << 20,
                fallback_table_size: 1 << 20,
                ..LoadOptions::default()
            },
        ),
        (
            "shared table only",
            LoadOptions {
                max_vips: 64,
                forwarding_cpus: Some(Vec::new()),
                ..LoadOptions::default()
            },
        ),
        (
            "per-(VIP, real) counters",
            LoadOptions {
                max_vips: 64,
                max_reals: 1024,
                vip_real_counters: true,
                ..LoadOptions::default()
            },
        ),
    ];
    for (name, o) in cases {
        let dp = Dataplane::load(&o).expect("load");
        let kernel = kernel_memlock(&dp) as f64;
        let stated = katran::views::memory::of(&o, cpus).total as f64;
        let off = (stated - kernel).abs() / kernel;
        println!(
            "memory {name}: stated {}, kernel {} ({:.1}% apart)",
            katran::views::memory::human(stated as u64),
            katran::views::memory::human(kernel as u64),
            off * 100.0
        );
        assert!(
            off < 0.01,
            "{name}: stated {stated} bytes, the kernel accounts {kernel}"
        );
    }
}
