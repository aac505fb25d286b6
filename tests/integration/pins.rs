//! Pins on a hostile or unusual host: a mount namespace whose /sys/fs/bpf
//! is not the host's bpffs (as `ip netns exec` makes) is refused with a way
//! out; `katran down` removes only a pin directory katran made; pin
//! directories are private (0700); an entry under `links/` that is not a
//! pinned link is refused; the apply lock is not waited for forever.
//! Needs root and `unshare`; prints `skipped: ...` otherwise. Everything is
//! under `/sys/fs/bpf/katran-test-<pid>-…` or `/tmp/katran-test-<pid>-…`,
//! removed also on failure.

use crate::common;

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use katran::kernel::bpf::{attach, bpffs};
use libbpf_rs::{MapHandle, MapType};

/// A directory removed (with whatever is pinned in it) on drop.
struct Dir(PathBuf);

impl Dir {
    fn bpf(name: &str) -> Dir {
        Dir(PathBuf::from(format!(
            "/sys/fs/bpf/katran-test-{}-{name}",
            std::process::id()
        )))
    }
    fn tmp(name: &str) -> Dir {
        Dir(std::env::temp_dir().join(format!("katran-test-{}-{name}", std::process::id())))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn katran(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_katran"))
        .args(args)
        .output()
        .expect("running katran")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A small array map pinned at `path`.
fn pin_map(path: &Path) {
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let map = MapHandle::create(MapType::Array, Some("kt_test"), 4, 4, 1, &opts).expect("map");
    attach::pin(map.as_fd(), path).expect("pin");
}

#[test]
fn a_mount_namespace_without_the_hosts_bpffs_is_refused() {
    const NAME: &str = "pins: private mount namespace";
    if !common::privileged(NAME) || !common::tools(NAME, &["unshare", "umount"]) {
        return;
    }
    let pins = Dir::bpf("netns");
    let cfg_dir = Dir::tmp("netns-cfg");
    fs::create_dir_all(&cfg_dir.0).expect("cfg dir");
    let cfg = cfg_dir.0.join("k.toml");
    fs::write(
        &cfg,
        format!(
            "[dataplane]\ninterfaces = [\"lo\"]\npin_dir = \"{}\"\ngateway_mac = \"02:00:00:00:00:01\"\n",
            pins.0.display()
        ),
    )
    .expect("config");
    let bin = env!("CARGO_BIN_EXE_katran");
    let pin_dir = pins.0.to_string_lossy().into_owned();
    // What `ip netns exec` does to /sys/fs/bpf, in a private copy of the
    // mount namespace: the host's bpffs is not there.
    for args in [
        vec![bin, "apply", "-c", cfg.to_str().expect("utf-8")],
        vec![bin, "real", "attach", "-i", "lo", "--pin-dir", &pin_dir],
    ] {
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("umount -l /sys/fs/bpf && exec \"$@\"")
            .arg("sh")
            .args(&args)
            .output()
            .expect("unshare");
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {all}");
        assert!(
            all.contains("nsenter --net=/run/netns/NS"),
            "{args:?} should say how to do it: {all}"
        );
        assert!(!pins.0.exists(), "{args:?} left pins on the host");
    }
}

#[test]
fn down_removes_only_katrans_own_pin_directory() {
    const NAME: &str = "pins: down";
    if !common::privileged(NAME) {
        return;
    }
    // a plain directory with files
    let plain = Dir::tmp("plain");
    fs::create_dir_all(plain.0.join("maps")).expect("mkdir");
    fs::write(plain.0.join("precious"), "data").expect("write");
    let out = katran(&["down", "--pin-dir", plain.0.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not on the bpf filesystem"),
        "{}",
        text(&out)
    );
    assert!(
        plain.0.join("precious").exists(),
        "down removed a plain directory"
    );

    // on bpffs, katran's layout plus a stranger's pinned map
    let foreign = Dir::bpf("foreign");
    fs::create_dir_all(foreign.0.join("maps")).expect("mkdir");
    fs::create_dir_all(foreign.0.join("theirs")).expect("mkdir");
    pin_map(&foreign.0.join("maps/lb_mine"));
    pin_map(&foreign.0.join("theirs/map"));
    let out = katran(&["down", "--pin-dir", foreign.0.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("(theirs)"), "{}", text(&out));
    assert!(foreign.0.join("theirs/map").exists() && foreign.0.join("maps/lb_mine").exists());

    // only katran's layout (and empty directories): removed
    fs::remove_file(foreign.0.join("theirs/map")).expect("unpin");
    let out = katran(&["down", "--pin-dir", foreign.0.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!foreign.0.exists());
}

#[test]
fn pin_directories_are_private_and_links_must_be_links() {
    const NAME: &str = "pins: private";
    if !common::privileged(NAME) {
        return;
    }
    let dir = Dir::bpf("private");
    fs::create_dir_all(&dir.0).expect("mkdir");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).expect("chmod");
    bpffs::ensure(&dir.0).expect("ensure");
    let mode = fs::metadata(&dir.0).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "pin directory mode {mode:o}");

    // not on bpffs
    let tmp = Dir::tmp("not-bpffs");
    let err = bpffs::ensure(&tmp.0.join("x")).expect_err("a pin dir in /tmp");
    assert!(
        err.to_string().contains("not on the bpf filesystem"),
        "{err:#}"
    );
    assert!(!tmp.0.exists(), "ensure created a directory outside bpffs");

    // links/eth0 made by someone else: a directory, or a pinned map
    let links = dir.0.join("links");
    fs::create_dir_all(links.join("eth0")).expect("mkdir");
    let err = attach::check_pinned_link(&links.join("eth0")).expect_err("a directory");
    assert!(err.to_string().contains("not a pinned BPF link"), "{err:#}");
    pin_map(&links.join("eth1"));
    let err = attach::check_pinned_link(&links.join("eth1")).expect_err("a map");
    assert!(err.to_string().contains("not a pinned BPF link"), "{err:#}");
}

#[test]
fn the_apply_lock_is_not_waited_for_forever() {
    const NAME: &str = "pins: lock";
    if !common::privileged(NAME) {
        return;
    }
    let dir = Dir::tmp("lock");
    fs::create_dir_all(&dir.0).expect("mkdir");
    let held = katran::kernel::live::lock(&dir.0).expect("first lock");
    let other = fs::File::open(&dir.0).expect("open");
    let err = katran::files::flock_wait::exclusive(&other, &dir.0, Duration::from_millis(300))
        .expect_err("the lock is held");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("still held") && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    drop(held);
    katran::files::flock_wait::exclusive(&other, &dir.0, Duration::from_secs(30))
        .expect("free now");
}

/// Without CAP_BPF / CAP_PERFMON (dropped from the bounding set, so even
/// root lacks them) every command that changes the dataplane fails at once,
/// naming what is missing, before any verifier output and with nothing
/// pinned.
#[test]
fn missing_capabilities_are_named_before_anything_happens() {
    const NAME: &str = "pins: capabilities";
    if !common::privileged(NAME) || !common::tools(NAME, &["setpriv"]) {
        return;
    }
    let pins = Dir::bpf("caps");
    let cfg_dir = Dir::tmp("caps-cfg");
    fs::create_dir_all(&cfg_dir.0).expect("cfg dir");
    let cfg = cfg_dir.0.join("k.toml");
    fs::write(
        &cfg,
        format!(
            "[dataplane]\ninterfaces = [\"lo\"]\npin_dir = \"{}\"\ngateway_mac = \"02:00:00:00:00:01\"\n\n[[vip]]\naddress = \"10.9.9.9:80\"\nproto = \"tcp\"\nreals = [\"10.8.8.8\"]\n",
            pins.0.display()
        ),
    )
    .expect("config");
    let bin = env!("CARGO_BIN_EXE_katran");
    let cfg = cfg.to_str().expect("utf-8");
    let pin_dir = pins.0.to_str().expect("utf-8");
    for args in [
        vec!["apply", "-c", cfg],
        vec!["run", "-c", cfg],
        vec!["down", "--pin-dir", pin_dir],
        vec!["real", "attach", "-i", "lo", "--pin-dir", pin_dir],
    ] {
        let out = Command::new("setpriv")
            .args([
                "--bounding-set=-bpf,-perfmon,-sys_admin",
                "--inh-caps=-bpf,-perfmon,-sys_admin",
            ])
            .arg(bin)
            .args(&args)
            .output()
            .expect("setpriv");
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {all}");
        assert!(
            all.contains("lacks CAP_BPF, CAP_PERFMON.") && all.contains("AmbientCapabilities="),
            "{args:?} should name the missing capabilities: {all}"
        );
        assert!(
            all.lines().count() == 1 && !all.contains("Permission denied"),
            "{args:?} said more: {all}"
        );
        assert!(!pins.0.exists(), "{args:?} pinned something");
    }
}
