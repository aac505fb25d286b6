//! Errors found when applying a file that passed `check`, as an operator
//! sees them: `katran apply` shows each at the line of the key that caused
//! it (an interface the host lacks or cannot balance on, a gateway it
//! cannot resolve, an interface another XDP program holds), with a caret,
//! the host's reason and a fix. Each test runs the real binary in a network
//! namespace of its own (`nsenter --net`, which keeps the host's bpffs),
//! with a veth pair and no default route.

use crate::common::{self, sh};

use std::path::PathBuf;
use std::process::{Command, Output};

/// A network namespace with `tva`/`tvb` up, a pin directory and a
/// directory for files, all removed when dropped.
struct Host {
    ns: String,
    pins: Vec<PathBuf>,
    dir: PathBuf,
}

impl Host {
    fn new(name: &str) -> Host {
        let tag = format!("kterr-{}-{}", std::process::id(), name.replace(' ', "-"));
        let _ = sh(&["ip", "netns", "del", &tag]);
        assert!(sh(&["ip", "netns", "add", &tag]).status.success());
        for cmd in [
            "link add tva type veth peer name tvb",
            "link set tva up",
            "link set tvb up",
        ] {
            let mut args = vec!["ip", "-n", tag.as_str()];
            args.extend(cmd.split(' '));
            let o = sh(&args);
            assert!(o.status.success(), "{cmd}: {o:?}");
        }
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).expect("a directory for the files");
        let pins = ["a", "b"]
            .iter()
            .map(|p| PathBuf::from(format!("/sys/fs/bpf/{tag}-{p}")))
            .collect();
        Host { ns: tag, pins, dir }
    }

    /// Writes `[dataplane]` with `lines` (line 2 on) and pin directory `pins`
    /// (0 or 1), and one VIP; returns the path.
    fn file(&self, name: &str, lines: &str, pins: usize) -> String {
        let text = format!(
            "[dataplane]\n{lines}\npin_dir = \"{}\"\nconn_table_size = 4096\nmax_vips = 4\nmax_reals = 8\nring_size = 4099\n\n[[vip]]\naddress = \"10.0.0.1:80\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\"]\n",
            self.pins[pins].display()
        );
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("writing the file");
        path.to_string_lossy().into_owned()
    }

    fn apply(&self, file: &str) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg(env!("CARGO_BIN_EXE_katran"))
            .args(["apply", "-c", file])
            .env("RUST_LOG", "error")
            .output()
            .expect("running katran")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.ns]);
        for p in &self.pins {
            let _ = std::fs::remove_dir_all(p);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asserts that `o` failed with exactly one error, rendered at `file:at`
/// (line:column), showing `source` (that line of the file) with a caret
/// under `marked`, the message starting `message` and a help line; returns
/// the error output.
fn refused_at(o: &Output, file: &str, at: &str, source: &str, message: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    let block: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("error: "))
        .collect();
    assert!(
        block.first().is_some_and(|l| l.starts_with(message)),
        "{message:?}: {err}"
    );
    assert!(
        block
            .iter()
            .any(|l| l.ends_with(&format!("--> {file}:{at}"))),
        "placed at {at}: {err}"
    );
    let shown = block
        .iter()
        .position(|l| l.ends_with(&format!("| {source}")));
    let caret = shown.and_then(|i| block.get(i + 1));
    assert!(caret.is_some_and(|l| l.contains('^')), "a caret: {err}");
    assert!(block.iter().any(|l| l.contains("= help: ")), "a fix: {err}");
    err
}

/// Applies, in a namespace of its own, a file whose `[dataplane]` starts
/// with `lines`, and checks it is refused as [`refused_at`] says; `None`
/// when the test cannot run here (skipped).
fn refused(test: &str, lines: &str, at: &str, source: &str, message: &str) -> Option<String> {
    if !common::privileged(test) {
        return None;
    }
    let h = Host::new(test);
    let f = h.file("k.toml", lines, 0);
    Some(refused_at(&h.apply(&f), &f, at, source, message))
}

#[test]
fn an_interface_the_host_lacks_is_shown_at_its_name() {
    let err = refused(
        "an interface the host lacks",
        "interfaces = [\"tva\", \"nosuch0\"]\ngateway_mac = \"02:00:00:00:00:01\"",
        "2:22",
        "interfaces = [\"tva\", \"nosuch0\"]",
        "error: interface `nosuch0` does not exist on this host: No such device",
    );
    assert!(err.is_none_or(|e| e.contains("`ip link` lists them")));
}

#[test]
fn an_interface_that_is_not_ethernet_is_shown_at_its_name() {
    refused(
        "a non-Ethernet interface",
        "gateway_mac = \"02:00:00:00:00:01\"\ninterfaces = [\"lo\"]",
        "3:15",
        "interfaces = [\"lo\"]",
        "error: lo is not an Ethernet interface",
    );
}

#[test]
fn a_gateway_that_cannot_be_resolved_is_shown_at_gateway_mac() {
    let err = refused(
        "an unresolved gateway",
        "interfaces = [\"tva\"]\ngateway_mac = \"auto\"",
        "3:15",
        "gateway_mac = \"auto\"",
        "error: gateway_mac = \"auto\" cannot be resolved: this host has no default route",
    );
    assert!(err.is_none_or(|e| e.contains("= help: set gateway_mac in the file")));
}

#[test]
fn an_interface_another_program_holds_is_shown_at_its_name() {
    if !common::privileged("an interface another program holds") {
        return;
    }
    let h = Host::new("taken");
    let lines = "interfaces = [\"tva\"]\ngateway_mac = \"02:00:00:00:00:01\"";
    let first = h.apply(&h.file("a.toml", lines, 0));
    assert!(first.status.success(), "{first:?}");
    // the same interface for a second dataplane, pinned elsewhere
    let f = h.file("b.toml", lines, 1);
    let err = refused_at(
        &h.apply(&f),
        &f,
        "2:15",
        "interfaces = [\"tva\"]",
        "error: tva already runs XDP program",
    );
    assert!(err.contains("ip link set dev tva xdp off"), "{err}");
}
