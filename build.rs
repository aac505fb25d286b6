//! Compiles every `bpf/*.bpf.c` into a libbpf-rs skeleton in `OUT_DIR`,
//! and stamps the balancer: `KATRAN_BALANCER_STAMP` is a hash of its
//! compiled object (code, maps, and the BTF of every type shared with
//! Rust), so a running dataplane can be told apart from the one this
//! binary would load (`katran status`, dataplane replacement).

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");

    println!("cargo:rerun-if-changed=bpf");
    // Extra clang arguments, for test builds whose stamp must differ
    // (packaging/test-deb.sh builds a "previous" package with
    // -DKATRAN_BUILD_TAG=1).
    println!("cargo:rerun-if-env-changed=KATRAN_BPF_CFLAGS");
    let extra = env::var("KATRAN_BPF_CFLAGS").unwrap_or_default();
    // The compiler: clang 19 (Debian 12 has it; scripts/deps.sh installs
    // it), whose BPF code generation is better than the default clang 14's,
    // for the BPF ISA v3 (32-bit ALU and jumps, Linux 5.1 and later):
    // measured, about 0.05 of Katran's time off every path. KATRAN_CLANG
    // names another.
    println!("cargo:rerun-if-env-changed=KATRAN_CLANG");
    let clang = env::var("KATRAN_CLANG").unwrap_or_else(|_| "clang-19".into());
    if std::process::Command::new(&clang)
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("{clang} not found: run scripts/deps.sh (or set KATRAN_CLANG)");
    }
    let mut sources: Vec<PathBuf> = fs::read_dir("bpf")
        .expect("bpf/ exists")
        .map(|e| e.expect("readable bpf/ entry").path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".bpf.c")))
        .collect();
    sources.sort();

    for src in sources {
        let stem = src
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .expect("bpf source name")
            .to_string();
        SkeletonBuilder::new()
            .clang(&clang)
            .source(&src)
            .obj(out.join(format!("{stem}.bpf.o")))
            .clang_args(
                [
                    "-O2",
                    "-g",
                    "-Wall",
                    "-mcpu=v3",
                    "-Ibpf",
                    &format!("-I{multiarch}"),
                ]
                .into_iter()
                .map(String::from)
                .chain(extra.split_whitespace().map(String::from)),
            )
            .build_and_generate(out.join(format!("{stem}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
        if stem == "balancer" {
            let obj = fs::read(out.join("balancer.bpf.o")).expect("the balancer object");
            println!("cargo:rustc-env=KATRAN_BALANCER_STAMP={:016x}", fnv1a(&obj));
        }
    }
}

/// 64-bit FNV-1a: an identity for a build, not a defence against forgery.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
