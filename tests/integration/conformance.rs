//! Katran's own packet vectors, replayed through our XDP program with
//! BPF_PROG_TEST_RUN: every output frame must be byte-identical.
//! The state of `setup.json` is provisioned through the project's own API
//! (`model::State` + `apply::apply`), as a user's file would be.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::Path;

use base64::Engine;
use katran::apply::apply;
use katran::kernel::bpf::loader::{Dataplane, LoadOptions};
use katran::kernel::testrun::{run_once, verdict_name};
use katran::model::{Backend, Encap, Proto, RingKind, State, Vip, VipFlags, VipKey};
use serde_json::Value;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Base,
    Gue,
    Tpr,
}

fn state_from_setup(setup: &Value, mode: Mode) -> State {
    let mut state = State {
        ring: RingKind::MaglevV1,
        ..State::default()
    };
    state.globals.gateway_mac = setup["gateway_mac"].as_str().unwrap().parse().unwrap();
    for v in setup["vips"].as_array().unwrap() {
        let flags: Vec<&str> = v["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let vip = Vip {
            key: VipKey {
                addr: v["addr"].as_str().unwrap().parse().unwrap(),
                port: v["port"].as_u64().unwrap() as u16,
                proto: if v["proto"] == "tcp" {
                    Proto::Tcp
                } else {
                    Proto::Udp
                },
            },
            flags: VipFlags {
                dport_hash: flags.contains(&"dport-hash"),
                quic: flags.contains(&"quic"),
                udp_flow_migration: flags.contains(&"udp-flow-migration"),
                ..VipFlags::default()
            },
            reals: v["reals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| Backend {
                    addr: r.as_str().unwrap().parse().unwrap(),
                    weight: 1,
                })
                .collect(),
        };
        if let Some(down) = v.get("down_reals") {
            for d in down.as_array().unwrap() {
                state.down_reals.push(d.as_str().unwrap().parse().unwrap());
            }
        }
        state.vips.push(vip);
    }
    let ids: BTreeMap<u32, IpAddr> = setup["server_ids"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_str().unwrap().parse().unwrap()))
        .collect();
    state.server_ids = ids;
    match mode {
        Mode::Base => {}
        Mode::Gue => {
            let g = &setup["gue"];
            state.globals.encap = Encap::Gue {
                port: g["udp_dst_port"].as_u64().unwrap() as u16,
                src_v4: g["outer_src_v4"].as_str().unwrap().parse().unwrap(),
                src_v6: g["outer_src_v6"].as_str().unwrap().parse().unwrap(),
            };
        }
        Mode::Tpr => {
            state.globals.tcp_server_id_kind =
                Some(setup["tpr"]["tcp_option_kind"].as_u64().unwrap() as u8);
        }
    }
    state
}

/// Replays one file; returns (identical, total, failure report).
fn replay(dir: &Path, file: &str, mode: Mode) -> (usize, usize, String) {
    let setup: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("setup.json")).unwrap()).unwrap();
    let packets: Value =
        serde_json::from_str(&fs::read_to_string(dir.join(format!("{file}.json"))).unwrap())
            .unwrap();
    let options = LoadOptions {
        ring_size: setup["ring_size"].as_u64().unwrap() as u32,
        max_vips: 16,
        max_reals: 64,
        forwarding_cpus: Some(Vec::new()), // the shared table only, as Katran's tester
        ..LoadOptions::default()
    };
    katran::kernel::bpf::loader::route_libbpf_log();
    let _ = env_logger::builder().is_test(true).try_init();
    let dp = Dataplane::load(&options).expect("loading the balancer");
    let mut store = dp.store().unwrap();
    apply(&mut store, &state_from_setup(&setup, mode)).expect("provisioning setup.json");

    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ok = 0;
    let mut report = String::new();
    let list = packets.as_array().unwrap();
    for (i, p) in list.iter().enumerate() {
        let inp = b64.decode(p["inp"].as_str().unwrap()).unwrap();
        let want = b64.decode(p["out"].as_str().unwrap()).unwrap();
        let want_verdict = p["ret"].as_str().unwrap();
        let (verdict, got) = run_once(dp.balancer(), &inp).unwrap();
        if verdict_name(verdict) == want_verdict && got == want {
            ok += 1;
        } else {
            report.push_str(&format!(
                "  #{i} {}: verdict {} (want {want_verdict})\n{}",
                p["desc"].as_str().unwrap(),
                verdict_name(verdict),
                common::hex_diff(&want, &got)
            ));
        }
    }
    (ok, list.len(), report)
}

#[test]
fn katran_conformance() {
    const NAME: &str = "conformance katran";
    let Some(dir) = common::conformance_dir(NAME) else {
        return;
    };
    if !common::privileged(NAME) {
        return;
    }
    let mut all_ok = true;
    for (file, mode) in [("base", Mode::Base), ("gue", Mode::Gue), ("tpr", Mode::Tpr)] {
        let (ok, total, report) = replay(&dir, file, mode);
        if ok == total {
            println!("conformance katran/{file}: {ok}/{total} identical");
        } else {
            all_ok = false;
            println!("conformance katran/{file}: {ok}/{total} identical; differing:\n{report}");
        }
    }
    assert!(
        all_ok,
        "some Katran vectors were not reproduced byte for byte (see above)"
    );
}
