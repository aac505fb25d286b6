//! "Apply you can trust", against the kernel: a failed apply changes
//! nothing, the plan names every change (interfaces, dataplane
//! replacements, ring repairs, kept health verdicts), and the live maps read
//! back to exactly the file. Each test makes its own network namespace with
//! a veth pair and its own pin directory, and runs the real `katran` binary
//! there with `nsenter --net` (which keeps the host's bpffs in view).

use crate::common::{self, sh};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use katran::apply::{apply, read_live};
use katran::kernel::live::{self, Pins};
use katran::snapshot::Snapshot;
use katran::store::MapStore;

struct Host {
    ns: String,
    pins: PathBuf,
    dir: PathBuf,
}

impl Host {
    fn new(name: &str) -> Host {
        let tag = format!("kt{}-{name}", std::process::id());
        let ns = tag.clone();
        let _ = sh(&["ip", "netns", "del", &ns]);
        assert!(sh(&["ip", "netns", "add", &ns]).status.success());
        for cmd in [
            "link add tva type veth peer name tvb",
            "link set tva up",
            "link set tvb up",
            "link set lo up",
        ] {
            let mut args = vec!["ip", "-n", ns.as_str()];
            args.extend(cmd.split(' '));
            let o = sh(&args);
            assert!(o.status.success(), "{cmd}: {o:?}");
        }
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).unwrap();
        Host {
            ns,
            pins: PathBuf::from(format!("/sys/fs/bpf/katran-test-{tag}")),
            dir,
        }
    }

    /// A configuration file with these interfaces and VIP tables.
    fn file(&self, name: &str, dataplane: &str, vips: &str) -> String {
        let text = format!(
            "[dataplane]\n{dataplane}\ngateway_mac = \"02:00:00:00:00:01\"\npin_dir = \"{}\"\nconn_table = \"shared\"\nconn_table_size = 4096\nmax_vips = 8\nmax_reals = 16\nring_size = 4099\n\n{vips}",
            self.pins.display()
        );
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn katran(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns))
            .arg(env!("CARGO_BIN_EXE_katran"))
            .args(args);
        cmd.output().expect("running katran")
    }

    /// Applies a file with two VIPs on `tva` (the starting point of most
    /// tests here).
    fn apply_on_tva(&self) {
        ok(&self.katran(&[
            "apply",
            "-c",
            &self.file("a.toml", "interfaces = [\"tva\"]", &vips(1)),
        ]));
    }

    fn snapshot(&self) -> Snapshot {
        let store = live::open(&Pins::new(&self.pins))
            .unwrap()
            .expect("a dataplane");
        Snapshot::read(&store).unwrap()
    }

    fn xdp_on(&self, iface: &str) -> bool {
        let o = sh(&["ip", "-n", &self.ns, "link", "show", "dev", iface]);
        String::from_utf8_lossy(&o.stdout).contains("xdp")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.pins);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "katran failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn failed(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "expected exit 1: {o:?}");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn vips(weight: u32) -> String {
    format!(
        "[[vip]]\naddress = \"10.0.0.1:80\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\", {{ address = \"10.1.0.2\", weight = {weight} }}]\n\n[[vip]]\naddress = \"[2001:db8::]:80\"\nproto = \"tcp\"\nreals = [\"10.1.0.3\"]\n"
    )
}

#[test]
fn a_failing_interface_changes_nothing() {
    if !common::privileged("a failing interface changes nothing") {
        return;
    }
    let h = Host::new("trust1");
    h.apply_on_tva();
    let before = h.snapshot();

    let typo = h.file("b.toml", "interfaces = [\"tva\", \"typo0\"]", &vips(5));
    let err = failed(&h.katran(&["apply", "-c", &typo]));
    assert!(err.contains("typo0"), "{err}");
    assert_eq!(h.snapshot(), before, "a failed apply changed the maps");

    let lo = h.file("c.toml", "interfaces = [\"lo\", \"tva\"]", &vips(5));
    let err = failed(&h.katran(&["apply", "-c", &lo]));
    assert!(err.contains("lo is not an Ethernet interface"), "{err}");
    assert_eq!(h.snapshot(), before, "a failed apply changed the maps");
    assert!(!h.xdp_on("lo"), "XDP was attached to lo");
}

#[test]
fn the_plan_names_interfaces_and_a_dataplane_replacement() {
    if !common::privileged("the plan names interfaces and replacements") {
        return;
    }
    let h = Host::new("trust2");
    h.apply_on_tva();
    let both = h.file("b.toml", "interfaces = [\"tva\", \"tvb\"]", &vips(1));
    let out = ok(&h.katran(&["apply", "-c", &both, "--dry-run"]));
    assert!(out.contains("+ attach tvb"), "{out}");
    ok(&h.katran(&["apply", "-c", &both]));
    assert!(h.xdp_on("tvb"));
    let one = h.file("c.toml", "interfaces = [\"tva\"]", &vips(1));
    let out = ok(&h.katran(&["apply", "-c", &one, "--dry-run"]));
    assert!(out.contains("- detach tvb"), "{out}");
    ok(&h.katran(&["apply", "-c", &one]));
    assert!(!h.xdp_on("tvb"));

    let before = h.snapshot();
    let text = std::fs::read_to_string(&one)
        .unwrap()
        .replace("conn_table = \"shared\"", "conn_table = \"per-cpu\"");
    std::fs::write(&one, text).unwrap();
    let out = ok(&h.katran(&["apply", "-c", &one, "--dry-run"]));
    assert!(
        out.contains("! replace dataplane: conn_table shared -> per-cpu"),
        "{out}"
    );
    assert!(
        out.contains("connection-table entries are carried over"),
        "{out}"
    );
    assert_eq!(h.snapshot(), before, "a dry-run changed the maps");
    // the replacement runs what the plan said: the same configuration, now
    // with per-CPU tables (tests/replace.rs runs it under traffic)
    let o = h.katran(&["apply", "-c", &one]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("replaced the dataplane"), "{err}");
    let store = live::open(&Pins::new(&h.pins)).unwrap().unwrap();
    assert!(store.load_shape().unwrap().per_cpu_tables.is_some());
    assert_eq!(read_live(&store).unwrap(), before.state().unwrap());
    assert!(h.xdp_on("tva"));
}

#[test]
fn another_xdp_program_is_refused_by_name_before_any_change() {
    if !common::privileged("another XDP program is refused") {
        return;
    }
    let h = Host::new("trust3");
    h.apply_on_tva();
    let other = format!("{}-other", h.pins.display());
    ok(&h.katran(&["real", "attach", "-i", "tvb", "--pin-dir", &other]));
    let before = h.snapshot();
    let both = h.file("b.toml", "interfaces = [\"tva\", \"tvb\"]", &vips(4));
    let err = failed(&h.katran(&["apply", "-c", &both]));
    let _ = std::fs::remove_dir_all(&other);
    assert!(err.contains("tvb already runs XDP program"), "{err}");
    assert!(err.contains("decap"), "the program is named: {err}");
    assert_eq!(h.snapshot(), before);
}

#[test]
fn live_maps_read_back_exactly_ipv6_included_and_rings_are_repaired() {
    if !common::privileged("live maps read back exactly") {
        return;
    }
    let h = Host::new("trust4");
    let f = h.file("a.toml", "interfaces = [\"tva\"]", &vips(1));
    ok(&h.katran(&["apply", "-c", &f]));
    let o = h.katran(&["apply", "-c", &f, "--dry-run", "--detailed-exitcode"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // a ring changed behind katran's back
    {
        let mut store = live::open(&Pins::new(&h.pins)).unwrap().unwrap();
        let snap = Snapshot::read(&store).unwrap();
        let rec = snap.vips_of(snap.active).into_values().next().unwrap();
        let changes = [katran::maglev::RingDelta { slot: 7, real: 0 }];
        store.write_ring(rec.ring_id, &changes).unwrap();
    }
    let out = ok(&h.katran(&["apply", "-c", &f, "--dry-run"]));
    assert!(
        out.contains("slots differ from what its reals imply; rewritten"),
        "{out}"
    );
    ok(&h.katran(&["apply", "-c", &f]));
    let o = h.katran(&["apply", "-c", &f, "--dry-run", "--detailed-exitcode"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn a_manual_apply_keeps_a_drained_real_drained() {
    if !common::privileged("a manual apply keeps a drained real drained") {
        return;
    }
    let h = Host::new("trust5");
    let checked = "[[vip]]\naddress = \"10.0.0.1:80\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\", \"10.1.0.2\"]\nhealthcheck = { type = \"tcp\" }\n";
    let f = h.file("a.toml", "interfaces = [\"tva\"]", checked);
    ok(&h.katran(&["apply", "-c", &f]));
    // what `katran run` does when 10.1.0.2 fails its check
    {
        let mut store = live::open(&Pins::new(&h.pins)).unwrap().unwrap();
        let mut s = read_live(&store).unwrap().unwrap();
        s.drained
            .insert((s.vips[0].key, "10.1.0.2".parse().unwrap()));
        apply(&mut store, &s).unwrap();
    }
    let out = ok(&h.katran(&["apply", "-c", &f]));
    assert!(
        out.contains("real 10.1.0.2 in 10.0.0.1:80/tcp stays drained"),
        "{out}"
    );
    let store = live::open(&Pins::new(&h.pins)).unwrap().unwrap();
    let s = read_live(&store).unwrap().unwrap();
    assert_eq!(s.drained.len(), 1, "the verdict survived the manual apply");
}

#[test]
fn a_dry_run_that_cannot_read_the_pins_fails_instead_of_planning_against_nothing() {
    if !common::privileged("an unprivileged dry-run fails")
        || !common::tools("an unprivileged dry-run fails", &["setpriv"])
    {
        return;
    }
    let h = Host::new("trust6");
    let f = h.file("a.toml", "interfaces = [\"tva\"]", &vips(1));
    ok(&h.katran(&["apply", "-c", &f]));
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&h.dir, perms).unwrap();
    std::fs::set_permissions(
        Path::new(&f),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let o = sh(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        env!("CARGO_BIN_EXE_katran"),
        "apply",
        "-c",
        &f,
        "--dry-run",
        "--detailed-exitcode",
    ]);
    // Where /sys/fs/bpf itself is 0700 (as systemd mounts it) the
    // dry-run cannot even see the pin directory; elsewhere it cannot open
    // it. Either way it says it cannot read the live dataplane.
    let err = failed(&o);
    assert!(err.contains("cannot read the live dataplane"), "{err}");
}

/// status, stats, explain --live and down take pin_dir from `-c FILE`.
#[test]
fn every_command_finds_the_dataplane_through_the_file() {
    if !common::privileged("commands read pin_dir from -c") {
        return;
    }
    let h = Host::new("trustc");
    let file = h.file("a.toml", "interfaces = [\"tva\"]", &vips(1));
    ok(&h.katran(&["apply", "-c", &file]));
    let pins = h.pins.display().to_string();
    let status = ok(&h.katran(&["status", "-c", &file]));
    assert!(
        status.contains(&format!("dataplane pinned at {pins}")),
        "{status}"
    );
    // the mode as the kernel reports it (no daemon has recorded one)
    assert!(status.contains("tva (native)"), "{status}");
    let stats = ok(&h.katran(&["stats", "-c", &file, "--json", "--interval", "0.1"]));
    assert!(stats.contains("\"vips\""), "{stats}");
    let explain = ok(&h.katran(&[
        "explain",
        "192.0.2.7:4000",
        "10.0.0.1:80/tcp",
        "-c",
        &file,
        "--live",
    ]));
    assert!(explain.contains("connection table"), "{explain}");
    // one or the other, not both
    let both = h.katran(&["status", "-c", &file, "--pin-dir", &pins]);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    let down = h.katran(&["down", "-c", &file]);
    assert!(down.status.success(), "{down:?}");
    assert!(!h.pins.exists(), "down -c left {pins}");
}
