//! The reals' decapsulation program, driven with BPF_PROG_TEST_RUN: frames
//! are encapsulated by running the balancer itself on client frames (every
//! VIP family × real family × IP-in-IP/GUE), then must come out of the
//! decapsulation program as the client's frame again, MACs aside.

use crate::common::{self, ip};

use std::net::{IpAddr, Ipv6Addr};

use katran::apply::apply;
use katran::kernel::bpf::decap::{Decap, DecapStats, DEFAULT_GUE_PORT};
use katran::kernel::bpf::loader::{Dataplane, LoadOptions};
use katran::kernel::testrun::{run_once, verdict_name, XDP_DROP, XDP_PASS, XDP_TX};
use katran::model::{Backend, Encap, MacAddr, Proto, State, Vip, VipFlags, VipKey};

const VIP4: &str = "10.200.0.10";
const VIP6: &str = "fd00:200::10";
const REAL4: &str = "10.201.0.11";
const REAL6: &str = "fd00:201::11";

fn state(real: &str, encap: Encap) -> State {
    let mut s = State::default();
    s.globals.gateway_mac = MacAddr([2, 0, 0, 0, 0, 0xaa]);
    s.globals.encap = encap;
    for vip in [VIP4, VIP6] {
        s.vips.push(Vip {
            key: VipKey {
                addr: ip(vip),
                port: 80,
                proto: Proto::Tcp,
            },
            flags: VipFlags::default(),
            reals: vec![Backend {
                addr: ip(real),
                weight: 1,
            }],
        });
    }
    s
}

fn gue(port: u16) -> Encap {
    Encap::Gue {
        port,
        src_v4: "10.99.0.2".parse().expect("literal"),
        src_v6: "fd00:99::2".parse().expect("literal"),
    }
}

/// A TCP segment from a client to `vip`:80 with `payload` bytes of data.
fn client_frame(vip: &str, payload: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xbb, 2, 0, 0, 0, 0, 0xcc];
    let mut tcp = vec![0u8; 20 + payload];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH, ACK
    for (i, b) in tcp[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    match ip(vip) {
        IpAddr::V4(v) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let mut h = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
            h[2..4].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[10, 100, 0, 2]);
            h.extend_from_slice(&v.octets());
            f.extend(h);
        }
        IpAddr::V6(v) => {
            f.extend_from_slice(&[0x86, 0xdd]);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            let client: Ipv6Addr = "fd00:100::2".parse().expect("literal");
            f.extend_from_slice(&client.octets());
            f.extend_from_slice(&v.octets());
        }
    }
    f.extend(tcp);
    f
}

/// What decapsulation must produce: the client frame under the MACs of the
/// encapsulated frame.
fn expected(client: &[u8], encapsulated: &[u8]) -> Vec<u8> {
    let mut want = encapsulated[..12].to_vec();
    want.extend_from_slice(&client[12..]);
    want
}

struct Rig {
    dp: Dataplane,
    decap: Decap,
}

impl Rig {
    fn new(gue_port: u16) -> Rig {
        katran::kernel::bpf::loader::route_libbpf_log();
        let options = LoadOptions {
            ring_size: 13,
            max_vips: 4,
            max_reals: 4,
            forwarding_cpus: Some(Vec::new()),
            ..LoadOptions::default()
        };
        Rig {
            dp: Dataplane::load(&options).expect("loading the balancer"),
            decap: Decap::load(gue_port).expect("loading decap"),
        }
    }

    /// Client frame to `vip` encapsulated by the balancer under `state`.
    fn encapsulate(&self, state: &State, client: &[u8]) -> Vec<u8> {
        let mut store = self.dp.store().expect("store");
        apply(&mut store, state).expect("apply");
        let (v, out) = run_once(self.dp.balancer(), client).expect("balancer run");
        assert_eq!(v, XDP_TX, "balancer verdict {}", verdict_name(v));
        out
    }

    fn decap(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        run_once(self.decap.prog(), frame).expect("decap run")
    }
}

#[test]
fn decap_every_encapsulation() {
    if !common::privileged("decap every encapsulation") {
        return;
    }
    let rig = Rig::new(DEFAULT_GUE_PORT);
    let mut n = 0;
    for (encap, name) in [(Encap::Ipip, "ipip"), (gue(DEFAULT_GUE_PORT), "gue")] {
        for real in [REAL4, REAL6] {
            for vip in [VIP4, VIP6] {
                for payload in [0, 1, 100, 1400] {
                    let client = client_frame(vip, payload);
                    let enc = rig.encapsulate(&state(real, encap), &client);
                    assert!(
                        enc.len() > client.len(),
                        "{name} {vip}->{real}: not encapsulated"
                    );
                    let (v, got) = rig.decap(&enc);
                    let want = expected(&client, &enc);
                    assert!(
                        v == XDP_PASS && got == want,
                        "{name} VIP {vip} real {real} payload {payload}: verdict {}\n{}",
                        verdict_name(v),
                        common::hex_diff(&want, &got)
                    );
                    n += 1;
                }
            }
        }
    }
    let s = rig.decap.stats().expect("stats");
    let four = 4; // payload sizes per combination
    assert_eq!(
        s,
        DecapStats {
            v4_in_v4: four,
            v6_in_v6: four,
            v4_in_v6: four,
            v6_in_v4: four,
            gue_v4: 2 * four,
            gue_v6: 2 * four,
            passed: 0,
            dropped_malformed: 0,
        },
        "counters:\n{s}"
    );
    println!("decap: {n} encapsulated frames restored\n{s}");
}

#[test]
fn decap_gue_port_is_configurable() {
    if !common::privileged("decap gue port") {
        return;
    }
    let custom = Rig::new(6080);
    let default = Rig::new(DEFAULT_GUE_PORT);
    for vip in [VIP4, VIP6] {
        let client = client_frame(vip, 10);
        let enc = custom.encapsulate(&state(REAL6, gue(6080)), &client);
        let (v, got) = custom.decap(&enc);
        assert_eq!((v, got), (XDP_PASS, expected(&client, &enc)), "{vip}");
        // UDP to another port is somebody else's traffic.
        let (v, got) = default.decap(&enc);
        assert_eq!((v, got), (XDP_PASS, enc), "{vip} on the default port");
    }
    assert_eq!(custom.decap.stats().expect("stats").gue_v4, 1);
    assert_eq!(default.decap.stats().expect("stats").passed, 2);
}

#[test]
fn decap_passes_other_traffic_untouched() {
    if !common::privileged("decap passes other traffic") {
        return;
    }
    let rig = Rig::new(DEFAULT_GUE_PORT);
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        f
    };
    let mut frames = vec![arp, client_frame(VIP4, 0), client_frame(VIP6, 30)];
    // A GUE-port datagram whose payload is no IP header (a real GUE header).
    let enc = rig.encapsulate(&state(REAL4, gue(DEFAULT_GUE_PORT)), &client_frame(VIP4, 5));
    let mut gue_hdr = enc.clone();
    gue_hdr[14 + 20 + 8] = 0x00;
    frames.push(gue_hdr);
    // An outer IPv4 fragment.
    let enc = rig.encapsulate(&state(REAL4, Encap::Ipip), &client_frame(VIP4, 5));
    let mut frag = enc.clone();
    frag[14 + 6] = 0x20; // more fragments
    frames.push(frag);
    let count = frames.len() as u64;
    for f in frames {
        let (v, got) = rig.decap(&f);
        assert_eq!(v, XDP_PASS);
        assert_eq!(got, f, "changed:\n{}", common::hex_diff(&f, &got));
    }
    let s = rig.decap.stats().expect("stats");
    assert_eq!(s.passed, count, "{s}");
    assert_eq!(s.decapsulated() + s.dropped_malformed, 0, "{s}");
}

#[test]
fn decap_drops_malformed_encapsulation() {
    if !common::privileged("decap drops malformed") {
        return;
    }
    let rig = Rig::new(DEFAULT_GUE_PORT);
    let mut bad: Vec<(String, Vec<u8>)> = Vec::new();
    for (encap, name) in [(Encap::Ipip, "ipip"), (gue(DEFAULT_GUE_PORT), "gue")] {
        for real in [REAL4, REAL6] {
            for vip in [VIP4, VIP6] {
                let enc = rig.encapsulate(&state(real, encap), &client_frame(vip, 40));
                let outer = if real == REAL4 { 20 } else { 40 };
                let inner = 14 + outer + if name == "gue" { 8 } else { 0 };
                let tag = format!("{name} {vip} in {real}");
                // Cut inside the payload: the outer length no longer fits.
                bad.push((format!("{tag}: truncated"), enc[..enc.len() - 10].to_vec()));
                // Cut inside the inner header.
                bad.push((
                    format!("{tag}: inner header cut"),
                    enc[..inner + 10].to_vec(),
                ));
                // The inner header contradicts the outer one or itself: the
                // wrong version for IP-in-IP; for GUE (where the version is
                // the only hint) an IPv4 header length below 20, or an IPv6
                // header read as IPv4 (its total length is then 0).
                let mut f = enc.clone();
                f[inner] = match (name, vip) {
                    ("gue", VIP4) => 0x44,
                    ("gue", _) => 0x45,
                    _ => f[inner] ^ 0x20,
                };
                bad.push((format!("{tag}: inner version"), f));
                // The inner length exceeds what the outer header leaves.
                let mut f = enc.clone();
                let len_at = inner + if vip == VIP4 { 2 } else { 4 };
                f[len_at] = 0x7f;
                bad.push((format!("{tag}: inner length"), f));
            }
        }
    }
    for (what, f) in &bad {
        let (v, _) = rig.decap(f);
        assert_eq!(v, XDP_DROP, "{what}: {}", verdict_name(v));
    }
    let s = rig.decap.stats().expect("stats");
    assert_eq!(s.dropped_malformed, bad.len() as u64, "{s}");
    assert_eq!(s.decapsulated(), 0, "{s}");
}
