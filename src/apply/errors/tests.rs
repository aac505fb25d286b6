use anyhow::Context;

use super::*;
use crate::config::{parse, Loaded};

const FILE: &str = "[dataplane]
interfaces = [\"eth0\"]
gateway_mac = \"auto\"
max_reals = 4

[[vip]]
address = \"10.0.0.1:80\"
proto = \"tcp\"
reals = [\"10.1.0.1\"]
";

fn loaded() -> Loaded {
    parse(FILE, "k.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn placed(err: &anyhow::Error) -> Diagnostic {
    let l = loaded();
    place(err, &l.text).unwrap_or_else(|| panic!("{err:#} was not placed"))
}

#[test]
fn a_dataplane_too_small_is_placed_at_max_reals() {
    let err = anyhow::Error::from(PlanError::TooManyReals { want: 4, max: 4 }).context("planning");
    let d = placed(&err);
    assert_eq!((d.line, d.column), (4, 1));
    assert!(d.message.starts_with("too many reals"), "{}", d.message);
    assert!(d.help.unwrap_or_default().starts_with("raise max_reals"));
}

#[test]
fn an_unresolved_gateway_is_placed_at_its_value() {
    let err = Err::<(), _>(GatewayError::NoDefaultRoute)
        .context("gateway_mac = \"auto\"")
        .expect_err("an error");
    let d = placed(&err);
    assert_eq!((d.line, d.column), (3, 15));
    assert_eq!(
        d.message,
        "gateway_mac = \"auto\" cannot be resolved: this host has no default route"
    );
    assert!(d
        .help
        .unwrap_or_default()
        .starts_with("set gateway_mac in the file"));
}

#[test]
fn an_error_naming_no_key_is_left_as_it_is() {
    let l = loaded();
    let err = anyhow::anyhow!("/sys/fs/bpf is not a bpf filesystem");
    assert_eq!(place(&err, &l.text), None);
}

#[test]
fn an_interface_the_host_refuses_is_placed_at_its_name() {
    let err = anyhow::Error::from(IfaceProblem::NotEthernet("eth0".into())).context("planning");
    let d = placed(&err);
    assert_eq!((d.line, d.column), (2, 15));
    assert_eq!(
        d.message,
        "eth0 is not an Ethernet interface: the balancer rewrites Ethernet frames"
    );
    assert!(d
        .help
        .unwrap_or_default()
        .starts_with("name the Ethernet interface"));
}

#[test]
fn failures_are_told_apart_by_their_type() {
    let capacity = anyhow::Error::from(PlanError::TooManyVips { want: 9, max: 8 });
    assert_eq!(kind(&capacity.context("planning")), FailureKind::Capacity);
    let host = anyhow::Error::from(IfaceProblem::NotEthernet("lo".into()));
    assert_eq!(kind(&host), FailureKind::Host);
    let gateway = anyhow::Error::from(GatewayError::NoDefaultRoute);
    assert_eq!(kind(&gateway), FailureKind::Host);
    assert_eq!(
        kind(&anyhow::anyhow!("bpf_link_update: EPERM")),
        FailureKind::Kernel
    );
}
