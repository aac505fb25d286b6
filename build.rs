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
    // The version `katran --version` says: the package's, unless a packager
    // builds another (packaging/build-deb.sh VERSION sets KATRAN_VERSION).
    println!("cargo:rerun-if-env-changed=KATRAN_VERSION");
    let version = env::var("KATRAN_VERSION")
        .unwrap_or_else(|_| env::var("CARGO_PKG_VERSION").expect("set by cargo"));
    println!("cargo:rustc-env=KATRAN_VERSION={version}");
    // Extra clang arguments, for test builds whose stamp must differ
    // (packaging/test-deb.sh builds a "previous" package with
    // -DKATRAN_BUILD_TAG=1).
    println!("cargo:rerun-if-env-changed=KATRAN_BPF_CFLAGS");
    let extra = env::var("KATRAN_BPF_CFLAGS").unwrap_or_default();
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
            .source(&src)
            .obj(out.join(format!("{stem}.bpf.o")))
            .clang_args(
                ["-O2", "-g", "-Wall", "-Ibpf", &format!("-I{multiarch}")]
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
