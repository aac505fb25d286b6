//! Every JSON document katran prints, checked against its schema in
//! docs/json/ (the documentation docs/json.md points to): `check`,
//! `explain` and the plan from files (no root), `status`, `stats` and
//! `explain --live` from a pinned dataplane (root).

use crate::common;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs katran; its standard output parsed as JSON, and its exit code.
fn katran(args: &[&str]) -> (Value, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_katran"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run katran");
    let text = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "katran {args:?}: not JSON ({e}):\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (doc, out.status.code().unwrap_or(-1))
}

/// Fails with every place where `doc` breaks docs/json/NAME.schema.json.
fn conforms(name: &str, doc: &Value) {
    let path = root().join(format!("docs/json/{name}.schema.json"));
    let text = std::fs::read_to_string(&path).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} document breaks {}:\n{}\n{doc:#}",
        path.display(),
        errors.join("\n")
    );
}

#[test]
fn check_documents_follow_their_schema() {
    let (ok, code) = katran(&["check", "--json", "examples/configs/minimal.toml"]);
    conforms("check", &ok);
    assert_eq!(code, 0);
    assert_eq!(ok["ok"], true);
    assert!(
        ok["memory"]["total"].as_u64().unwrap_or(0) > ok["memory"]["rings"].as_u64().unwrap_or(0)
    );
    let (bad, code) = katran(&[
        "check",
        "--json",
        "tests/fixtures/broken/metrics_bad_address.toml",
    ]);
    conforms("check", &bad);
    assert_eq!(code, 1);
    assert_eq!(bad["errors"][0]["line"], 5);
    assert_eq!(bad["errors"][0]["column"], 11);
    assert!(bad["errors"][0]["fix"].is_string());
}

#[test]
fn explain_documents_follow_their_schema() {
    for (src, vip) in [
        ("10.0.0.5:4000", "10.0.0.1:80/tcp"),
        ("10.0.0.5:4000", "10.9.9.9:80/tcp"),
    ] {
        let (doc, code) = katran(&[
            "explain",
            "--json",
            src,
            vip,
            "-c",
            "examples/configs/minimal.toml",
        ]);
        conforms("explain", &doc);
        assert_eq!(code, 0);
        assert_eq!(doc["from"], "file");
    }
}

#[test]
fn plan_documents_follow_their_schema() {
    let (doc, code) = katran(&[
        "diff",
        "--json",
        "examples/configs/minimal.toml",
        "examples/configs/weighted.toml",
    ]);
    conforms("plan", &doc);
    assert_eq!(code, 0);
    assert!(doc["changes"].as_array().is_some_and(|c| !c.is_empty()));
}

#[test]
fn status_without_a_dataplane_says_so() {
    let dir = format!("/sys/fs/bpf/ops16-json-absent-{}", std::process::id());
    let (doc, code) = katran(&[
        "status",
        "--json",
        "--pin-dir",
        &dir,
        "--status-file",
        "/nonexistent/status.json",
    ]);
    conforms("status", &doc);
    assert_eq!(code, 0);
    assert_eq!(doc["condition"], "no-dataplane");
}

/// Removes the pins and the status file, also when a test fails.
struct Cleanup(Vec<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
    }
}

fn pin_all(dp: &katran::kernel::bpf::loader::Dataplane, dir: &Path) {
    katran::kernel::bpf::attach::ensure_bpffs(dir).expect("bpffs");
    std::fs::create_dir_all(dir.join("maps")).expect("maps dir");
    let maps = dp.maps().expect("maps");
    for (name, h) in maps.named() {
        katran::kernel::bpf::attach::pin(h.as_fd(), &dir.join("maps").join(name)).expect("pin");
    }
    let stamp = dp.stamp_map().expect("stamp");
    katran::kernel::bpf::attach::pin(stamp.as_fd(), &dir.join("maps/lb_stamp")).expect("pin stamp");
}

#[test]
fn live_documents_follow_their_schema() {
    if !common::privileged("live JSON documents") {
        return;
    }
    use katran::model::{Backend, MacAddr, Proto, RingKind, State, Vip, VipFlags, VipKey};
    let dp =
        katran::kernel::bpf::loader::Dataplane::load(&katran::kernel::bpf::loader::LoadOptions {
            max_vips: 16,
            max_reals: 64,
            forwarding_cpus: Some(Vec::new()),
            ..Default::default()
        })
        .expect("load");
    let mut store = dp.store().expect("store");
    let key = VipKey {
        addr: "10.200.0.1".parse().expect("ip"),
        port: 80,
        proto: Proto::Tcp,
    };
    let mut state = State {
        ring: RingKind::MaglevV2,
        ..State::default()
    };
    state.globals.gateway_mac = MacAddr([2, 0, 0, 0, 0, 1]);
    state.vips = vec![Vip {
        key,
        flags: VipFlags::default(),
        reals: ["10.1.0.1", "10.1.0.2", "fd00::1"]
            .iter()
            .map(|a| Backend {
                addr: a.parse().expect("ip"),
                weight: 2,
            })
            .collect(),
    }];
    state.drained.insert((key, "10.1.0.2".parse().expect("ip")));
    katran::apply::apply(&mut store, &state).expect("apply");
    let dir = PathBuf::from(format!("/sys/fs/bpf/ops16-json-{}", std::process::id()));
    let status_file =
        std::env::temp_dir().join(format!("ops16-json-{}-status.json", std::process::id()));
    let _cleanup = Cleanup(vec![dir.clone(), status_file.clone()]);
    pin_all(&dp, &dir);
    let mut daemon = katran::files::status_file::DaemonStatus {
        pid: std::process::id(),
        config: "/etc/katran.toml".into(),
        attached: vec![("eth9".into(), "native".into())],
        reloads_ok: 2,
        ..Default::default()
    };
    let mut h = katran::daemon::health::tracker::RealHealth::new(1);
    h.healthy = false;
    h.last_error = Some("connection refused".into());
    daemon.health.push((key.to_string(), "10.1.0.2".into(), h));
    daemon.write(&status_file).expect("status file");
    let dir_s = dir.display().to_string();
    let status_s = status_file.display().to_string();

    let (status, code) = katran(&[
        "status",
        "--json",
        "--pin-dir",
        &dir_s,
        "--status-file",
        &status_s,
    ]);
    conforms("status", &status);
    assert_eq!(code, 0);
    assert_eq!(status["condition"], "ok");
    assert_eq!(
        status["live"]["ring"], "maglev-v2",
        "spelled as in the file"
    );
    let reals = &status["live"]["vips"][0]["reals"];
    assert_eq!(reals[1]["drained"], true);
    assert_eq!(reals[1]["effective_weight"], 0);
    assert_eq!(reals[0]["effective_weight"], 2);
    let health = &status["daemon"]["health"][0];
    assert_eq!(health["real"], "10.1.0.2", "health is an object: {health}");
    assert_eq!(health["healthy"], false);
    assert_eq!(status["daemon"]["attached"][0]["interface"], "eth9");
    assert_eq!(status["daemon"]["running"], true);

    let (stats, code) = katran(&["stats", "--json", "--interval", "0.05", "--pin-dir", &dir_s]);
    conforms("stats", &stats);
    assert_eq!(code, 0);
    let vip_rate = &stats["rates"]["vips"][0];
    assert_eq!(vip_rate["vip"], "10.200.0.1:80/tcp");
    assert!(vip_rate["pps"].is_number() && vip_rate["bits_per_second"].is_number());

    let (explain, code) = katran(&[
        "explain",
        "--json",
        "--live",
        "--pin-dir",
        &dir_s,
        "192.168.1.1:5000",
        "10.200.0.1:80/tcp",
    ]);
    conforms("explain", &explain);
    assert_eq!(code, 0);
    assert_eq!(explain["from"], "live");
    println!("json: status, stats and explain --live follow their schemas");
}
