//! Katran's own XDP program, loaded beside ours so the benchmark can time
//! both on the same frames in one process.
//!
//! `../shared/bench/katran/` (or `$KATRAN_SHARED_DIR/bench/katran/`) holds
//! Katran's compiled object and `katran_prov.py`, which loads it with
//! bpftool and provisions it from one of the benchmark TOML files the way
//! Katran's control plane would. This module runs that script, opens the
//! pinned program by path, and removes every pin again when dropped, also
//! when the benchmark fails half-way.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use katran::kernel::bpf::bpffs;
use libbpf_rs::libbpf_sys;

/// The benchmark folder of the shared material.
pub fn bench_dir() -> PathBuf {
    let shared = std::env::var_os("KATRAN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("bench/katran")
}

fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why Katran cannot be loaded here, or `None` when it can.
pub fn unavailable(dir: &Path) -> Option<String> {
    for file in ["katran_prov.py", "balancer-norate.bpf.o", "bench_pcpu.toml"] {
        if !dir.join(file).exists() {
            return Some(format!(
                "{} is absent (a plain clone has no shared/ folder; \
                 KATRAN_SHARED_DIR names another)",
                dir.join(file).display()
            ));
        }
    }
    for tool in ["python3", "bpftool"] {
        if !have_tool(tool) {
            return Some(format!("needs {tool} (scripts/deps.sh installs it)"));
        }
    }
    None
}

/// How Katran keeps its connection tables.
#[derive(Clone, Copy)]
pub enum Lru {
    /// One LRU table per CPU of `size` entries (`--lru percpu`).
    PerCpu(u32),
    /// Only its shared `fallback_cache` (1,000 entries).
    Fallback,
}

/// Katran loaded, provisioned and pinned; unpinned on drop.
pub struct Katran {
    dir: PathBuf,
    pin: PathBuf,
    state_dir: PathBuf,
    prog: Option<OwnedFd>,
}

impl Katran {
    /// Loads `object` from the shared folder `dir` and applies `config`.
    pub fn load(dir: &Path, object: &str, lru: Lru, config: &str, tag: &str) -> Result<Katran> {
        let id = format!("kperf-katran-{}-{tag}", std::process::id());
        let pin = PathBuf::from(bpffs::ROOT).join(&id);
        let state_dir = std::env::temp_dir().join(&id);
        // A pin left by a killed run of the same process id would stop the
        // script: it cannot be ours any more.
        let _ = std::fs::remove_dir_all(&pin);
        // From here on, drop cleans up whatever the script managed to pin.
        let mut k = Katran {
            dir: dir.to_path_buf(),
            pin,
            state_dir,
            prog: None,
        };
        let pin_arg = k.pin.display().to_string();
        let obj = dir.join(object).display().to_string();
        let mut load = vec!["load", "--obj", &obj, "--pin", &pin_arg];
        let size;
        match lru {
            Lru::PerCpu(n) => {
                size = n.to_string();
                load.extend(["--lru", "percpu", "--lru-size", &size]);
            }
            Lru::Fallback => load.extend(["--lru", "fallback"]),
        }
        k.script(&load)?;
        k.script(&["apply", "--pin", &pin_arg, "--config", config])?;
        k.prog = Some(obj_get(&k.pin.join("progs/balancer_ingress"))?);
        Ok(k)
    }

    /// A map Katran pinned.
    pub fn map(&self, name: &str) -> Result<libbpf_rs::MapHandle> {
        libbpf_rs::MapHandle::from_pinned_path(self.pin.join("maps").join(name))
            .with_context(|| format!("opening Katran's map {name}"))
    }

    /// Katran's new-flow rate state on `cpu`: (new flows in the current
    /// window, the window's start in CLOCK_MONOTONIC ns). Katran keeps it in
    /// its `stats` array at MAX_VIPS (512) + NEW_CONN_RATE_CNTR (2), as
    /// `struct lb_stats {v1, v2}`.
    pub fn conn_rate(&self, stats: &libbpf_rs::MapHandle, cpu: usize) -> Result<(u64, u64)> {
        use libbpf_rs::MapCore;
        let per_cpu = stats
            .lookup_percpu(&514u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .context("reading Katran's stats")?
            .context("Katran's stats has no entry 514")?;
        let v = per_cpu.get(cpu).context("no such CPU")?;
        ensure!(v.len() >= 16, "Katran's stats values are not lb_stats");
        let word = |i: usize| u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
        Ok((word(0), word(1)))
    }

    /// Katran's XDP program.
    pub fn prog(&self) -> BorrowedFd<'_> {
        self.prog.as_ref().expect("set by load").as_fd()
    }

    fn script(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("python3")
            .arg(self.dir.join("katran_prov.py"))
            .args(args)
            .env("KATRAN_REF_STATE_DIR", &self.state_dir)
            .output()
            .context("running python3 katran_prov.py")?;
        ensure!(
            out.status.success(),
            "katran_prov.py {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        Ok(())
    }
}

impl Drop for Katran {
    fn drop(&mut self) {
        let pin = self.pin.display().to_string();
        if let Err(e) = self.script(&["unload", "--pin", &pin]) {
            eprintln!("unloading Katran: {e:#}");
        }
        // The script's unload is `rm -rf`; make sure, even if it failed.
        if self.pin.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.pin) {
                eprintln!("removing {pin}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Opens a pinned BPF object.
fn obj_get(path: &Path) -> Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).context("pin path")?;
    // SAFETY: a valid NUL-terminated path; the result is a new descriptor
    // that nothing else owns, or negative.
    let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
    if fd < 0 {
        bail!(
            "opening {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
