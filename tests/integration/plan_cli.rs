//! `katran apply --dry-run` and `katran diff` as a user runs them: text,
//! JSON, exit codes. No privileges: the pin directory does not exist, so the
//! plan is made against an empty state and nothing is created.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn katran(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_katran"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("running katran")
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("katran-plan-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pin_dir() -> String {
    format!("/sys/fs/bpf/katran-test-{}-never-made", std::process::id())
}

fn file(extra_dataplane: &str, vips: &str) -> String {
    format!(
        "[dataplane]\ninterfaces = [\"eth0\"]\ngateway_mac = \"02:00:00:00:00:01\"\npin_dir = \"{}\"\n{extra_dataplane}\n{vips}",
        pin_dir()
    )
}

const VIP_A: &str = "[[vip]]\naddress = \"10.0.0.1:80\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\", { address = \"10.1.0.2\", weight = 2 }]\n";
const VIP_B: &str =
    "[[vip]]\naddress = \"[2001:db8::]:443\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\"]\n";

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn dry_run_prints_the_plan_against_nothing_and_creates_nothing() {
    let d = Dir::new("dry");
    let f = d.file("a.toml", &file("", VIP_A));
    let o = katran(&["apply", "-c", &f, "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = text(&o);
    assert!(
        out.contains("+ vip 10.0.0.1:80/tcp with 2 real(s)"),
        "{out}"
    );
    assert!(
        out.contains("+ real 10.1.0.2 (weight 2) in 10.0.0.1:80/tcp"),
        "{out}"
    );
    assert!(out.contains("+ attach eth0"), "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("planning against an empty state"));
    assert!(
        !Path::new(&pin_dir()).exists(),
        "a dry-run created the pin directory"
    );
}

#[test]
fn dry_run_detailed_exitcode_is_2_on_changes_and_1_on_errors() {
    let d = Dir::new("exit");
    let f = d.file("a.toml", &file("", VIP_A));
    let o = katran(&["apply", "-c", &f, "--dry-run", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let bad = d.file(
        "bad.toml",
        &file(
            "",
            "[[vip]]\naddress = \"10.0.0.1:80\"\nproto = \"tcp\"\nreals = [\"not-an-ip\"]\n",
        ),
    );
    let o = katran(&["apply", "-c", &bad, "--dry-run", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}

#[test]
fn dry_run_json_has_a_format_version_and_every_change() {
    let d = Dir::new("json");
    let f = d.file("a.toml", &file("", &format!("{VIP_A}{VIP_B}")));
    let o = katran(&["apply", "-c", &f, "--dry-run", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["from_empty"], true);
    let ops: Vec<&str> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["op"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops.iter().filter(|o| **o == "add-vip").count(),
        2,
        "{ops:?}"
    );
    assert_eq!(
        ops.iter().filter(|o| **o == "add-real").count(),
        3,
        "{ops:?}"
    );
    assert!(ops.contains(&"attach"), "{ops:?}");
    assert!(v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["vip"] == "[2001:db8::]:443/tcp"));
}

#[test]
fn diff_shows_every_key_and_has_a_detailed_exitcode() {
    let d = Dir::new("diff");
    let old = d.file(
        "old.toml",
        &format!(
            "[dataplane]\ninterfaces = [\"eth0\"]\npin_dir = \"{}\"\n\n{VIP_A}healthcheck = {{ type = \"tcp\" }}\n",
            pin_dir()
        ),
    );
    let same = katran(&["diff", &old, &old, "--detailed-exitcode"]);
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    assert!(text(&same).contains("no changes"));

    let new = d.file(
        "new.toml",
        &format!(
            "[dataplane]\ninterfaces = [\"eth0\", \"eth1\"]\ngateway_mac = \"02:00:00:00:00:09\"\npin_dir = \"{}\"\nring_size = 4099\nconn_table = \"shared\"\nconn_table_size = 8192\n\n[[vip]]\naddress = \"10.0.0.1:80\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\", {{ address = \"10.1.0.2\", weight = 3 }}]\n",
            pin_dir()
        ),
    );
    let o = katran(&["diff", &old, &new, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let out = text(&o);
    for want in [
        "~ gateway_mac: auto -> 02:00:00:00:00:09",
        "! replace dataplane: ring_size 65537 -> 4099",
        "! replace dataplane: conn_table per-cpu",
        "-> shared",
        "! replace dataplane: conn_table_size",
        "+ attach eth1",
        "~ real 10.1.0.2 in 10.0.0.1:80/tcp: weight 2 -> 3",
        "slots move",
        "~ healthcheck of 10.0.0.1:80/tcp: tcp on port 80",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    let j = katran(&["diff", &old, &new, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("JSON");
    let lines = out.lines().filter(|l| !l.starts_with("= ")).count() - 1; // the summary
    assert_eq!(
        v["changes"].as_array().unwrap().len(),
        lines,
        "text and JSON show the same changes"
    );
}

/// `n` VIPs of 3 reals each.
fn many_vips(n: u32) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[vip]]\naddress = \"10.0.{}.{}:80\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\", \"10.1.0.2\", \"10.1.0.3\"]\n",
                i / 250,
                i % 250 + 1
            )
        })
        .collect()
}

#[test]
fn large_plans_print_in_brief_unless_asked_for_every_line() {
    let d = Dir::new("brief");
    let empty = d.file("empty.toml", &file("max_vips = 1024", ""));
    let big = d.file("big.toml", &file("max_vips = 1024", &many_vips(300)));
    // 300 VIPs + 900 reals + 300 rings: far above the 200 lines of a brief
    let brief = text(&katran(&["diff", &empty, &big]));
    let lines: Vec<&str> = brief.lines().collect();
    assert!(lines.len() < 12, "{brief}");
    assert!(
        brief.contains("+ 300 VIP(s) added: 10.0.0.1:80/tcp"),
        "{brief}"
    );
    assert!(
        brief.contains("+ 900 real(s) added in 300 VIP(s)"),
        "{brief}"
    );
    assert!(brief.contains("--full lists each"), "{brief}");
    assert!(brief.ends_with("ring slot(s) move\n"), "{brief}");
    let full = text(&katran(&["diff", &empty, &big, "--full"]));
    assert!(full.lines().count() > 1200, "{}", full.lines().count());
    assert_eq!(
        full.lines().last(),
        lines.last().copied(),
        "the same summary line"
    );
    // a small plan lists every line, unless --summary
    let small = d.file("small.toml", &file("", VIP_A));
    let listed = text(&katran(&["diff", &empty, &small]));
    assert!(listed.contains("+ real 10.1.0.2 (weight 2)"), "{listed}");
    let summed = text(&katran(&["diff", &empty, &small, "--summary"]));
    assert!(
        summed.contains("+ 2 real(s) added in 1 VIP(s): 10.0.0.1:80/tcp"),
        "{summed}"
    );
    assert!(!summed.contains("+ real 10.1.0.2"), "{summed}");
}

#[test]
fn check_states_the_pinned_memory_and_warns_above_a_gib() {
    let d = Dir::new("memory");
    let small = d.file("small.toml", &file("", VIP_A));
    let o = katran(&["check", &small]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).contains("pins about 2"), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).is_empty(), "{o:?}");
    let huge = d.file("huge.toml", &file("max_vips = 16384", VIP_A));
    let o = katran(&["check", &huge]);
    assert_eq!(o.status.code(), Some(0), "a warning, not an error");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("warning: the dataplane would pin 16.") && err.contains("GiB"),
        "{err}"
    );
    // shown at max_vips (line 5), the key that asks for it
    assert!(err.contains(&format!(" --> {huge}:5:1\n")), "{err}");
    assert!(err.contains("5 | max_vips = 16384"), "{err}");
    assert!(err.contains("= help: lower max_vips"), "{err}");
}
