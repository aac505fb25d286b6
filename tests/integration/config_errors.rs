//! The configuration file's diagnostics, pinned down: every broken file in
//! `tests/fixtures/broken/` must produce exactly the errors listed here (place
//! and wording), every example in `examples/configs/` must load cleanly, and
//! a minimal file must turn into exactly the expected `State`.

use crate::common::ip;

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use katran::config::render::{render, render_errors, Colour};
use katran::config::{self, Config, Diagnostic, Gateway, Settings, Severity, XdpMode};
use katran::model::{
    Backend, Encap, Globals, MacAddr, Proto, RingKind, State, Vip, VipFlags, VipKey,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Diagnostics a file must produce: (line, column, part of the message).
type Expected = &'static [(usize, usize, &'static str)];

/// File name -> the errors it must produce: (line, column, message part).
const BROKEN: &[(&str, Expected)] = &[
    // TOML syntax
    (
        "syntax_unclosed_string",
        &[(2, 21, "invalid TOML: invalid basic string")],
    ),
    (
        "syntax_duplicate_key",
        &[(4, 1, "duplicate key `xdp_mode` in table `dataplane`")],
    ),
    (
        "syntax_duplicate_table",
        &[(4, 1, "table `dataplane` is defined twice")],
    ),
    (
        "syntax_unquoted_address",
        &[(5, 11, "`10.0.0.1:80` needs quotes")],
    ),
    // the file's shape
    ("empty", &[(1, 1, "the file is empty")]),
    (
        "no_dataplane",
        &[(1, 1, "the file has no [dataplane] table")],
    ),
    (
        "dataplane_twice_as_array",
        &[(
            1,
            1,
            "`dataplane` must be a single table, not an array of tables",
        )],
    ),
    (
        "vip_as_single_table",
        &[(4, 1, "`vip` must be an array of tables, not a single table")],
    ),
    ("unknown_table", &[(4, 3, "unknown top-level key `vips`")]),
    (
        "metrics_bad_address",
        &[
            (5, 11, "\"0.0.0.0\" is not an address and port"),
            (6, 1, "unknown key `listen_port` in [metrics]"),
        ],
    ),
    (
        "unknown_key_dataplane",
        &[(3, 1, "unknown key `xdp_mod` in [dataplane]")],
    ),
    (
        "unknown_key_real",
        &[(8, 27, "unknown key `weigth` in real")],
    ),
    (
        "misplaced_key",
        &[(12, 1, "unknown key `gue_port` in [[healthcheck_mark]]")],
    ),
    // [dataplane] values
    (
        "missing_interfaces",
        &[(1, 1, "[dataplane] is missing `interfaces`")],
    ),
    (
        "interfaces_not_array",
        &[(2, 14, "`interfaces` must be an array, not a string")],
    ),
    ("interfaces_empty", &[(2, 14, "`interfaces` is empty")]),
    ("bad_interface_name", &[(2, 23, "is longer than 15 bytes")]),
    ("bad_xdp_mode", &[(3, 12, "unknown XDP mode \"offload\"")]),
    (
        "bad_mac",
        &[(3, 15, "\"00:00:5e:00:53\" is not a MAC address")],
    ),
    (
        "multicast_gateway_mac",
        &[(3, 15, "is a multicast or broadcast MAC address")],
    ),
    (
        "ring_size_not_prime",
        &[(3, 13, "`ring_size` 65536 is not a prime")],
    ),
    (
        "ring_size_out_of_range",
        &[(3, 13, "`ring_size` must be from 17 to 1000003, not 7")],
    ),
    (
        "conn_table_size_too_small",
        &[(
            3,
            19,
            "`conn_table_size` must be from 1024 to 67108864, not 100",
        )],
    ),
    (
        "forwarding_cpus_duplicate",
        &[(3, 26, "CPU 1 is listed twice")],
    ),
    (
        "outer_prefix_low_bytes",
        &[(
            3,
            26,
            "only the first two bytes of `outer_source_v4_prefix` are used",
        )],
    ),
    (
        "tcp_server_id_taken_kind",
        &[(3, 17, "TCP option kind 8 is timestamps")],
    ),
    (
        "udp_timeout_bad",
        &[(3, 15, "\"30 seconds\" is not a duration")],
    ),
    (
        "max_frame_len_too_small",
        &[(
            3,
            17,
            "`max_frame_len` must be 0 or from 60 to 65535, not 40",
        )],
    ),
    (
        "pin_dir_relative",
        &[(3, 11, "`pin_dir` \"bpf/katran\" is not an absolute path")],
    ),
    (
        "pin_dir_outside",
        &[(
            3,
            11,
            "`pin_dir` \"/tmp/katran\" is not a plain path below /sys/fs/bpf/",
        )],
    ),
    (
        "pin_dir_dotdot",
        &[(
            3,
            11,
            "`pin_dir` \"/sys/fs/bpf/../../../tmp/x\" is not a plain path below /sys/fs/bpf/",
        )],
    ),
    // GUE
    (
        "gue_port_without_gue",
        &[(3, 1, "`gue_port` only applies with encap = \"gue\"")],
    ),
    (
        "gue_missing_source_v4",
        &[(
            3,
            9,
            "encap = \"gue\" needs gue_source_v4: real 10.1.0.1 (line 9) is IPv4",
        )],
    ),
    (
        "gue_missing_source_v6",
        &[(
            3,
            9,
            "encap = \"gue\" needs gue_source_v6: real fc00:1::2 (line 9) is IPv6",
        )],
    ),
    (
        "gue_source_wrong_family",
        &[(
            4,
            17,
            "`gue_source_v4` must be an IPv4 address, not fc00:13::37",
        )],
    ),
    // [[vip]] addresses and protocols
    (
        "vip_missing_address",
        &[(4, 1, "[[vip]] is missing `address`")],
    ),
    ("vip_missing_proto", &[(4, 1, "[[vip]] is missing `proto`")]),
    ("vip_missing_port", &[(5, 11, "\"10.0.0.1\" has no port")]),
    (
        "vip_port_out_of_range",
        &[(5, 11, "port 70000 is out of range")],
    ),
    (
        "vip_ipv6_without_brackets",
        &[(5, 11, "\"fc00::1:443\" has no port (or lacks brackets)")],
    ),
    (
        "vip_bad_ipv4",
        &[(5, 11, "\"10.0.0.256\" is not an IPv4 address")],
    ),
    (
        "vip_loopback",
        &[(5, 11, "127.0.0.1 is a loopback address and cannot be a VIP")],
    ),
    ("vip_bad_proto", &[(6, 9, "unknown protocol \"sctp\"")]),
    (
        "duplicate_vip",
        &[(
            10,
            11,
            "duplicate VIP 10.0.0.1:80/tcp (first defined on line 5)",
        )],
    ),
    // reals
    (
        "duplicate_real",
        &[(
            10,
            15,
            "duplicate real 10.1.0.1 in VIP 10.0.0.1:80/tcp (first listed on line 8)",
        )],
    ),
    (
        "weight_out_of_range",
        &[(7, 43, "`weight` must be from 0 to 65535, not 70000")],
    ),
    (
        "weight_quoted",
        &[(7, 43, "`weight` must be an integer, not a string")],
    ),
    ("real_with_port", &[(7, 10, "\"10.1.0.1:8080\" has a port")]),
    (
        "real_hostname",
        &[(7, 10, "\"backend-1.example\" is not an IP address")],
    ),
    (
        "reals_not_array",
        &[(7, 9, "`reals` must be an array, not a string")],
    ),
    // flags
    ("unknown_flag", &[(7, 10, "unknown flag \"no_src_port\"")]),
    (
        "shared_table_with_forwarding_cpus",
        &[(
            4,
            19,
            "`forwarding_cpus` only applies to per-CPU connection tables",
        )],
    ),
    (
        "healthcheck_any_port_without_port",
        &[(8, 15, "its health check must name the port to probe")],
    ),
    (
        "healthcheck_bad_interval",
        &[(8, 43, "`interval` is not a duration from 100ms to 1h")],
    ),
    (
        "healthcheck_bad_type",
        &[(8, 24, "unknown health check type \"icmp\"")],
    ),
    (
        "healthcheck_path_without_http",
        &[(8, 38, "`path` only applies to type = \"http\" checks")],
    ),
    (
        "healthcheck_timeout_above_interval",
        &[(12, 11, "the timeout (5s) is longer than the interval (1s)")],
    ),
    (
        "duplicate_flag",
        &[(7, 25, "flag \"no-src-port\" is listed twice")],
    ),
    (
        "quic_on_tcp",
        &[(
            7,
            10,
            "flag \"quic\" needs a UDP VIP, but VIP 10.0.0.1:443/tcp is TCP",
        )],
    ),
    (
        "udp_flow_migration_on_tcp",
        &[(7, 10, "flag \"udp-flow-migration\" needs a UDP VIP")],
    ),
    (
        "dport_hash_with_no_src_port",
        &[(7, 24, "flags \"dport-hash\" and \"no-src-port\" conflict")],
    ),
    // limits
    (
        "ring_smaller_than_reals",
        &[(
            8,
            9,
            "VIP 10.0.0.1:80/tcp has 19 reals, but ring_size is only 17",
        )],
    ),
    (
        "too_many_vips",
        &[(10, 1, "too many VIPs: 2, but max_vips is 1")],
    ),
    (
        "too_many_reals",
        &[(
            8,
            34,
            "too many reals: 3 distinct addresses, but max_reals is 2; 10.1.0.3 is one too many",
        )],
    ),
    // server ids, marks, down reals
    (
        "server_id_zero",
        &[(11, 6, "`id` must be from 1 to 4294967295, not 0")],
    ),
    (
        "duplicate_server_id",
        &[(15, 6, "server id 1022 is used twice (first on line 11)")],
    ),
    (
        "server_id_unknown_real",
        &[(
            12,
            8,
            "server id 7 names 10.1.0.9, which is not a real of any VIP",
        )],
    ),
    (
        "duplicate_mark",
        &[(14, 8, "socket mark 1000 is used twice (first on line 10)")],
    ),
    (
        "mark_unknown_real",
        &[(
            11,
            8,
            "socket mark 1000 names 10.9.9.9, which is not a real of any VIP",
        )],
    ),
    (
        "down_real_unknown",
        &[(11, 15, "down real 10.1.0.7 is not a real of any VIP")],
    ),
    // everything at once, in file order
    (
        "several_problems",
        &[
            (4, 12, "unknown XDP mode \"offload\""),
            (5, 1, "`gue_port` only applies with encap = \"gue\""),
            (6, 13, "`ring_size` 65536 is not a prime"),
            (9, 11, "\"10.0.0.1\" has no port"),
            (
                11,
                22,
                "duplicate real 10.1.0.1 in this VIP (first listed on line 11)",
            ),
            (16, 10, "flag \"quic\" needs a UDP VIP"),
            (17, 34, "unknown key `weigth` in real"),
            (21, 8, "socket mark 1 names 10.9.9.9"),
        ],
    ),
];

fn broken_dir() -> PathBuf {
    root().join("tests/fixtures/broken")
}

fn errors_of(path: &Path) -> Vec<Diagnostic> {
    match config::load(path) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e.0,
    }
}

#[test]
fn every_broken_file_reports_exactly_its_errors() {
    let mut failures = Vec::new();
    for (name, expected) in BROKEN {
        let path = broken_dir().join(format!("{name}.toml"));
        let got = errors_of(&path);
        let summary: Vec<String> = got
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect();
        if got.len() != expected.len() {
            failures.push(format!(
                "{name}: expected {} errors, got {}: {summary:#?}",
                expected.len(),
                got.len()
            ));
            continue;
        }
        for (d, (line, column, part)) in got.iter().zip(expected.iter()) {
            if (d.line, d.column) != (*line, *column) || !d.message.contains(part) {
                failures.push(format!(
                    "{name}: expected {line}:{column} \"{part}\", got {}:{} \"{}\"",
                    d.line, d.column, d.message
                ));
            }
            if d.severity != Severity::Error {
                failures.push(format!("{name}: {} is not an error", d.message));
            }
            if d.help.as_deref().is_none_or(str::is_empty) {
                failures.push(format!("{name}: \"{}\" has no help", d.message));
            }
            if !d.file.ends_with(&format!("{name}.toml")) {
                failures.push(format!("{name}: diagnostic names file {}", d.file));
            }
            if let Some(problem) = shown_wrong(&path, d) {
                failures.push(format!("{name}: {problem}"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// What is wrong with how `d` is rendered, if anything: the rendering must
/// name the diagnostic's own file:line:column, show that line of the file
/// and put a caret under the span.
fn shown_wrong(path: &Path, d: &Diagnostic) -> Option<String> {
    let shown = render(d, Colour::Never);
    let place = format!(" --> {}:{}:{}\n", d.file, d.line, d.column);
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().nth(d.line.checked_sub(1)?).unwrap_or_default();
    let source = format!("{} | {line}", d.line);
    let title = format!("error: {}\n", d.message);
    let caret = shown
        .lines()
        .any(|l| l.trim_start().starts_with('|') && l.contains('^'));
    if !shown.starts_with(&title) || !shown.contains(&place) {
        Some(format!("not placed at {place:?}: {shown}"))
    } else if !shown.lines().any(|l| l.trim_end() == source.trim_end()) {
        Some(format!("does not show {source:?}: {shown}"))
    } else if !caret {
        Some(format!("no caret: {shown}"))
    } else {
        None
    }
}

#[test]
fn every_broken_file_is_in_the_table() {
    let mut on_disk: Vec<String> = fs::read_dir(broken_dir())
        .expect("tests/fixtures/broken exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = BROKEN.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    assert!(listed.len() >= 35, "only {} broken fixtures", listed.len());
}

#[test]
fn diagnostics_render_like_cargo() {
    let text = fs::read_to_string(broken_dir().join("duplicate_real.toml")).expect("fixture");
    let err = config::parse(&text, "katran.toml").expect_err("duplicate real");
    assert_eq!(
        render(&err.0[0], Colour::Never),
        "error: duplicate real 10.1.0.1 in VIP 10.0.0.1:80/tcp (first listed on line 8)
  --> katran.toml:10:15
   |
10 |   { address = \"10.1.0.1\", weight = 3 },
   |               ^^^^^^^^^^
   |
   = help: list each real once per VIP; to send it more flows, raise its weight"
    );

    let text =
        fs::read_to_string(broken_dir().join("unknown_key_dataplane.toml")).expect("fixture");
    let err = config::parse(&text, "katran.toml").expect_err("typo");
    assert_eq!(
        render(&err.0[0], Colour::Never),
        "error: unknown key `xdp_mod` in [dataplane]
 --> katran.toml:3:1
  |
3 | xdp_mod = \"native\"
  | ^^^^^^^
  |
  = help: did you mean `xdp_mode`?"
    );
}

/// The one-line form stays for logs and the daemon's status file.
#[test]
fn diagnostics_also_print_on_one_line() {
    let text =
        fs::read_to_string(broken_dir().join("unknown_key_dataplane.toml")).expect("fixture");
    let err = config::parse(&text, "katran.toml").expect_err("typo");
    assert_eq!(
        err.to_string(),
        "katran.toml:3:1: error: unknown key `xdp_mod` in [dataplane]\n  help: did you mean `xdp_mode`?"
    );
}

#[test]
fn several_errors_render_one_block_each_then_their_count() {
    let text = fs::read_to_string(broken_dir().join("several_problems.toml")).expect("fixture");
    let err = config::parse(&text, "k.toml").expect_err("several problems");
    let shown = render_errors(&err.0, "k.toml", Colour::Never);
    let titles = shown.lines().filter(|l| l.starts_with("error: ")).count();
    let places = shown.lines().filter(|l| l.contains("--> k.toml:")).count();
    let helps = shown.lines().filter(|l| l.contains(" = help: ")).count();
    let carets = shown
        .lines()
        .filter(|l| l.trim_start().starts_with('|') && l.contains('^'))
        .count();
    assert!(err.len() > 1);
    assert_eq!(titles, err.len() + 1, "{shown}");
    assert_eq!(places, err.len(), "{shown}");
    assert_eq!(helps, err.len(), "{shown}");
    assert_eq!(carets, err.len(), "{shown}");
    assert!(
        shown.ends_with(&format!("\nerror: k.toml has {} errors", err.len())),
        "{shown}"
    );
}

#[test]
fn helps_point_at_the_fix() {
    let help = |name: &str| -> String {
        let e = errors_of(&broken_dir().join(format!("{name}.toml")));
        e[0].help.clone().unwrap_or_default()
    };
    assert_eq!(help("unknown_key_real"), "did you mean `weight`?");
    assert_eq!(help("unknown_table"), "did you mean `vip`?");
    assert!(help("misplaced_key").starts_with("`gue_port` belongs in [dataplane]"));
    assert!(help("bad_xdp_mode").contains("\"native\", \"generic\" or \"auto\""));
    assert!(help("vip_bad_proto").contains("\"tcp\" or \"udp\""));
    assert!(help("unknown_flag").starts_with("did you mean \"no-src-port\"?"));
    assert!(help("vip_ipv6_without_brackets").contains("\"[fc00::1]:443\""));
    assert!(help("vip_missing_port").contains("\"10.0.0.1:PORT\""));
    assert!(help("ring_size_not_prime").contains("65521 and 65537"));
    assert_eq!(help("weight_quoted"), "remove the quotes: weight = 100");
    assert_eq!(
        help("syntax_unquoted_address"),
        "text values need quotes: address = \"10.0.0.1:80\""
    );
    assert!(help("outer_prefix_low_bytes").contains("\"172.16.0.0\""));
    assert!(help("too_many_vips").contains("raise max_vips"));
    assert!(help("gue_missing_source_v4").starts_with("add gue_source_v4"));
    assert!(help("vip_missing_proto").contains("proto = \"tcp\""));
}

#[test]
fn unreadable_files_are_errors_without_a_place() {
    let e = config::load(Path::new("/nonexistent/katran.toml")).expect_err("missing file");
    assert_eq!(e.len(), 1);
    assert_eq!((e.0[0].line, e.0[0].column), (0, 0));
    assert!(e
        .to_string()
        .starts_with("/nonexistent/katran.toml: error: cannot read the file"));
    let shown = render(&e.0[0], Colour::Never);
    assert!(
        shown.starts_with("error: cannot read the file")
            && shown.contains("--> /nonexistent/katran.toml\n"),
        "{shown}"
    );
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root().join("examples/configs"))
        .expect("examples/configs exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_loads_without_errors_or_warnings() {
    let all = examples();
    for want in [
        "minimal",
        "ipv6",
        "weighted",
        "gue",
        "quic",
        "healthcheck-marks",
        "mqtt-cluster",
        "demo",
    ] {
        assert!(
            all.iter().any(|p| p.file_stem().is_some_and(|s| s == want)),
            "examples/configs/{want}.toml is missing"
        );
    }
    for path in &all {
        match config::load(path) {
            Ok(l) => assert!(
                l.warnings.is_empty(),
                "{}: {:?}",
                path.display(),
                l.warnings
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ),
            Err(e) => panic!("{}:\n{e}", path.display()),
        }
    }
}

#[test]
fn the_man_page_example_loads() {
    // The page's EXAMPLE section is a whole file between .EX and .EE.
    let page = fs::read_to_string(root().join("man/katran.toml.5")).expect("man page");
    let start = page.find(".SH EXAMPLE").expect("EXAMPLE section");
    let body = &page[start..];
    let ex = body.find(".EX\n").expect(".EX") + 4;
    let ee = body.find(".EE").expect(".EE");
    let text = body[ex..ee]
        .replace("\\e", "\\")
        .replace("\\-", "-")
        .replace("\\(dq", "\"");
    let loaded = config::parse(&text, "katran.toml(5)").unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn a_minimal_file_becomes_the_expected_state() {
    let text = "[dataplane]\ninterfaces = [\"eth0\"]\n\n[[vip]]\naddress = \"10.0.0.1:80\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\", { address = \"10.1.0.2\", weight = 3 }]\n";
    let loaded = config::parse(text, "katran.toml").expect("valid");
    assert!(loaded.warnings.is_empty());
    let expected = Config {
        settings: Settings {
            interfaces: vec!["eth0".into()],
            xdp_mode: XdpMode::Auto,
            gateway: Gateway::Auto,
            ring_size: 65_537,
            max_vips: 256,
            max_reals: 4_096,
            conn_table_size: 65_536,
            forwarding_cpus: None,
            shared_conn_table: false,
            vip_real_counters: false,
            pin_dir: PathBuf::from("/sys/fs/bpf/katran"),
        },
        state: State {
            globals: Globals {
                gateway_mac: MacAddr([0; 6]),
                encap: Encap::Ipip,
                tcp_server_id_kind: None,
                src_v4_prefix: Ipv4Addr::new(172, 16, 0, 0),
                src_v6_prefix: "100::".parse().expect("v6"),
                max_conn_rate: 125_000,
                udp_timeout_s: 30,
                max_frame_len: 1514,
            },
            ring: RingKind::MaglevV2,
            vips: vec![Vip {
                key: VipKey {
                    addr: ip("10.0.0.1"),
                    port: 80,
                    proto: Proto::Tcp,
                },
                flags: VipFlags::default(),
                reals: vec![
                    Backend {
                        addr: ip("10.1.0.1"),
                        weight: 1,
                    },
                    Backend {
                        addr: ip("10.1.0.2"),
                        weight: 3,
                    },
                ],
            }],
            server_ids: BTreeMap::new(),
            down_reals: Vec::new(),
            drained: Default::default(),
        },
        somarks: BTreeMap::new(),
        announce: None,
        metrics: None,
        failing: Default::default(),
        healthchecks: BTreeMap::new(),
    };
    assert_eq!(loaded.config, expected);
    assert_eq!(
        expected.settings,
        Settings {
            interfaces: vec!["eth0".into()],
            ..Settings::default()
        }
    );
}

#[test]
fn every_key_reaches_the_model() {
    let text = r#"
[dataplane]
interfaces = ["eth0", "eth1"]
xdp_mode = "native"
gateway_mac = "02:00:5E:00:53:01"
encap = "gue"
gue_port = 6080
gue_source_v4 = "10.0.13.37"
gue_source_v6 = "fc00:13::37"
ring = "maglev-v1"
ring_size = 131071
max_vips = 16
max_reals = 64
conn_table_size = 2048
forwarding_cpus = [2, 0]
outer_source_v4_prefix = "10.99.0.0"
outer_source_v6_prefix = "fc00:99::"
tcp_server_id = 253
max_conn_rate = 0
udp_timeout = "2m"
max_frame_len = 0
vip_real_counters = true
pin_dir = "/sys/fs/bpf/lb"

[[vip]]
address = "[fc00::1]:443"
proto = "udp"
flags = ["quic", "udp-flow-migration", "no-src-port"]
reals = ["fc00:1::1", { address = "10.1.0.2", weight = 0 }, "10.1.0.3"]

[[vip]]
address = "10.0.0.1:0"
proto = "tcp"
flags = ["dport-hash", "no-conn-table"]
[[vip.reals]]
address = "10.1.0.3"
weight = 65535

[[server_id]]
id = 77
real = "fc00:1::1"

[[healthcheck_mark]]
mark = 4242
real = "10.1.0.3"

[udp_flow_migration]
down_reals = ["10.1.0.2"]
"#;
    let loaded = config::parse(text, "all.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    let mac = MacAddr([0x02, 0x00, 0x5e, 0x00, 0x53, 0x01]);
    assert_eq!(
        c.settings,
        Settings {
            interfaces: vec!["eth0".into(), "eth1".into()],
            xdp_mode: XdpMode::Native,
            gateway: Gateway::Mac(mac),
            ring_size: 131_071,
            max_vips: 16,
            max_reals: 64,
            conn_table_size: 2048,
            forwarding_cpus: Some(vec![2, 0]),
            shared_conn_table: false,
            vip_real_counters: true,
            pin_dir: PathBuf::from("/sys/fs/bpf/lb"),
        }
    );
    assert_eq!(
        c.state.globals,
        Globals {
            gateway_mac: mac,
            encap: Encap::Gue {
                port: 6080,
                src_v4: Ipv4Addr::new(10, 0, 13, 37),
                src_v6: "fc00:13::37".parse::<Ipv6Addr>().expect("v6"),
            },
            tcp_server_id_kind: Some(253),
            src_v4_prefix: Ipv4Addr::new(10, 99, 0, 0),
            src_v6_prefix: "fc00:99::".parse().expect("v6"),
            max_conn_rate: 0,
            udp_timeout_s: 120,
            max_frame_len: 0,
        }
    );
    assert_eq!(c.state.ring, RingKind::MaglevV1);
    assert_eq!(c.state.vips.len(), 2);
    let v = &c.state.vips[0];
    assert_eq!(
        v.key,
        VipKey {
            addr: ip("fc00::1"),
            port: 443,
            proto: Proto::Udp
        }
    );
    assert_eq!(
        v.flags.names(),
        vec!["no-src-port", "quic", "udp-flow-migration"]
    );
    assert_eq!(
        v.reals,
        vec![
            Backend {
                addr: ip("fc00:1::1"),
                weight: 1
            },
            Backend {
                addr: ip("10.1.0.2"),
                weight: 0
            },
            Backend {
                addr: ip("10.1.0.3"),
                weight: 1
            },
        ]
    );
    let v = &c.state.vips[1];
    assert_eq!(v.key.port, 0);
    assert_eq!(v.flags.names(), vec!["dport-hash", "no-conn-table"]);
    assert_eq!(
        v.reals,
        vec![Backend {
            addr: ip("10.1.0.3"),
            weight: 65_535
        }]
    );
    assert_eq!(c.state.server_ids, BTreeMap::from([(77, ip("fc00:1::1"))]));
    assert_eq!(c.somarks, BTreeMap::from([(4242, ip("10.1.0.3"))]));
    assert_eq!(c.state.down_reals, vec![ip("10.1.0.2")]);
}

#[test]
fn tcp_server_id_true_means_kind_183_and_durations_take_seconds() {
    let base = "[dataplane]\ninterfaces = [\"eth0\"]\n";
    let with = |extra: &str| {
        config::parse(&format!("{base}{extra}\n"), "t.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .config
            .state
            .globals
    };
    assert_eq!(with("tcp_server_id = true").tcp_server_id_kind, Some(183));
    assert_eq!(with("tcp_server_id = false").tcp_server_id_kind, None);
    assert_eq!(with("udp_timeout = 45").udp_timeout_s, 45);
    assert_eq!(with("udp_timeout = \"1h\"").udp_timeout_s, 3600);
    assert_eq!(
        with("encap = \"gue\"").encap,
        Encap::Gue {
            port: 9886,
            src_v4: Ipv4Addr::UNSPECIFIED,
            src_v6: Ipv6Addr::UNSPECIFIED,
        }
    );
}

/// Warnings: the file loads, and each dubious thing is reported once.
#[test]
fn dubious_files_load_with_warnings() {
    let cases: &[(&str, Expected)] = &[
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\n",
            &[(1, 1, "the file defines no VIP")],
        ),
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\n[[vip]]\naddress = \"10.0.0.1:80\"\nproto = \"tcp\"\n",
            &[(3, 1, "VIP 10.0.0.1:80/tcp has no reals")],
        ),
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\n[[vip]]\naddress = \"10.0.0.1:80\"\nproto = \"tcp\"\nreals = [{ address = \"10.1.0.1\", weight = 0 }]\n",
            &[(6, 9, "every real of VIP 10.0.0.1:80/tcp has weight 0")],
        ),
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\n[[vip]]\naddress = \"10.0.0.1:443\"\nproto = \"tcp\"\nflags = [\"dport-hash\"]\nreals = [\"10.1.0.1\"]\n",
            &[(6, 10, "flag \"dport-hash\" on a VIP with the fixed port 443")],
        ),
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\n[[vip]]\naddress = \"[::ffff:10.0.0.1]:80\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\"]\n",
            &[(4, 11, "is an IPv4-mapped IPv6 address")],
        ),
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\n[[vip]]\naddress = \"10.0.0.1:80\"\nproto = \"tcp\"\nreals = [\"10.1.0.1\"]\n[[server_id]]\nid = 5\nreal = \"10.1.0.1\"\n",
            &[(7, 1, "server ids have no effect")],
        ),
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\n[[vip]]\naddress = \"10.0.0.1:53\"\nproto = \"udp\"\nreals = [\"10.1.0.1\"]\n[udp_flow_migration]\ndown_reals = [\"10.1.0.1\"]\n",
            &[(8, 15, "down real 10.1.0.1 has no effect")],
        ),
    ];
    for (text, expected) in cases {
        let loaded = config::parse(text, "w.toml").unwrap_or_else(|e| panic!("{text}\n{e}"));
        let got: Vec<(usize, usize, String)> = loaded
            .warnings
            .iter()
            .map(|d| (d.line, d.column, d.message.clone()))
            .collect();
        assert_eq!(got.len(), expected.len(), "{text}\n{got:#?}");
        for (g, e) in got.iter().zip(expected.iter()) {
            assert_eq!((g.0, g.1), (e.0, e.1), "{text}\n{got:#?}");
            assert!(g.2.contains(e.2), "{text}\n{got:#?}");
        }
        assert!(loaded
            .warnings
            .iter()
            .all(|w| w.severity == Severity::Warning));
        let w = &loaded.warnings[0];
        let shown = render(w, Colour::Never);
        let place = format!(" --> w.toml:{}:{}\n", w.line, w.column);
        assert!(
            shown.starts_with("warning: ") && shown.contains(&place) && shown.contains('^'),
            "{shown}"
        );
    }
}

#[test]
fn the_demo_testbed_is_what_the_demo_expects() {
    let c = config::load(&root().join("examples/configs/demo.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(c.settings.interfaces, vec!["lb0".to_string()]);
    let mac = MacAddr([2, 0, 0, 0, 0, 1]);
    assert_eq!(c.settings.gateway, Gateway::Mac(mac));
    assert_eq!(c.state.globals.gateway_mac, mac);
    let summary: Vec<(String, Vec<(IpAddr, u32)>)> = c
        .state
        .vips
        .iter()
        .map(|v| {
            (
                v.key.to_string(),
                v.reals.iter().map(|r| (r.addr, r.weight)).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "10.200.0.10:80/tcp".to_string(),
                vec![
                    (ip("10.201.0.11"), 1),
                    (ip("10.201.0.12"), 1),
                    (ip("10.201.0.13"), 2)
                ]
            ),
            (
                "10.200.0.10:1883/tcp".to_string(),
                vec![
                    (ip("10.201.0.11"), 1),
                    (ip("10.201.0.12"), 1),
                    (ip("10.201.0.13"), 1)
                ]
            ),
            (
                "[fd00:200::10]:80/tcp".to_string(),
                vec![
                    (ip("fd00:201::11"), 1),
                    (ip("fd00:201::12"), 1),
                    (ip("fd00:201::13"), 1)
                ]
            ),
        ]
    );
}

/// No input makes the parser panic: every prefix of every example, and the
/// same with each line dropped in turn, is either accepted or reported.
#[test]
fn truncated_and_mangled_files_never_panic() {
    for path in examples() {
        let text = fs::read_to_string(&path).expect("example");
        let mut cut = 0;
        while cut <= text.len() {
            let part = &text[..cut];
            if let Err(e) = config::parse(part, "cut.toml") {
                assert!(!e.is_empty(), "{}: empty error list", path.display());
                assert!(e.iter().all(|d| d.line >= 1 && d.column >= 1));
            }
            cut += text[cut..].chars().next().map_or(1, char::len_utf8);
        }
        let lines: Vec<&str> = text.lines().collect();
        for skip in 0..lines.len() {
            let mangled: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, l)| *l)
                .collect();
            let _ = config::parse(&mangled.join("\n"), "mangled.toml");
        }
    }
}

#[test]
fn byte_order_marks_and_crlf_line_ends_are_placed_right() {
    let text = "[dataplane]\r\ninterfaces = [\"eth0\"]\r\nxdp_mode = \"fast\"\r\n";
    let e = config::parse(text, "crlf.toml").expect_err("bad mode");
    assert_eq!((e.0[0].line, e.0[0].column), (3, 12));
    let text = "\u{feff}[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"fast\"\n";
    let e = config::parse(text, "bom.toml").expect_err("bad mode");
    assert_eq!((e.0[0].line, e.0[0].column), (3, 12));
}

#[test]
fn metrics_are_off_without_the_table_and_on_loopback_with_it() {
    let base = "[dataplane]\ninterfaces = [\"eth0\"]\n";
    let off = config::parse(base, "f").expect("valid");
    assert_eq!(off.config.metrics, None);
    let on = config::parse(&format!("{base}[metrics]\n"), "f").expect("valid");
    let addr = on.config.metrics.expect("[metrics]").address;
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_eq!(addr.port(), 9870);
    let named =
        config::parse(&format!("{base}[metrics]\naddress = \"[::]:9100\"\n"), "f").expect("valid");
    assert_eq!(
        named.config.metrics.map(|m| m.address.to_string()),
        Some("[::]:9100".into())
    );
}
