//! A whole load-balanced network in namespaces, for end-to-end tests:
//!
//! ```text
//!  client0..  ──(brc)── router ──(brr)── real0..realN   (decap on each real)
//!                         │
//!                         lb                            (balancer on lb's eth0)
//! ```
//!
//! clients 10.100.0.2.. / fd00:100::2.. (MTU 1500); router↔lb 10.99.0.0/24,
//! fd00:99::/64 (MTU 1600); reals 10.201.0.11.. / fd00:201::11.. (MTU 1600).
//! The router forwards, routes the VIP prefixes 10.200.0.0/24 and
//! fd00:200::/64 to the LB, and reals answer clients directly through it.
//! The test process holds the balancer, the decapsulation programs and every
//! XDP link; dropping the [`Testbed`] (also while panicking) kills spawned
//! processes and deletes the namespaces.

pub mod daemon;
pub mod http;
pub mod mqtt;
pub mod netns;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use katran::apply::{apply, ApplyReport};
use katran::config::XdpMode;
use katran::kernel::bpf::attach::{attach_xdp, Attached};
use katran::kernel::bpf::decap::{Decap, DecapStats, DEFAULT_GUE_PORT};
use katran::kernel::bpf::loader::{Dataplane, LoadOptions};
use katran::model::{MacAddr, State};

pub const VIP4: &str = "10.200.0.10";
pub const VIP6: &str = "fd00:200::10";

/// One end host: its namespace, its interface toward the router, addresses.
#[derive(Clone, Debug)]
pub struct Node {
    pub ns: String,
    pub iface: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

/// Packet and byte counters of an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            rx_packets: self.rx_packets.saturating_sub(o.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(o.rx_bytes),
            tx_packets: self.tx_packets.saturating_sub(o.tx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(o.tx_bytes),
        }
    }
}

pub struct Builder {
    clients: usize,
    reals: usize,
    vips: Vec<IpAddr>,
    mode: XdpMode,
    gue_port: u16,
    attach_balancer: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            clients: 1,
            reals: 3,
            vips: vec![ip(VIP4), ip(VIP6)],
            mode: XdpMode::Native,
            gue_port: DEFAULT_GUE_PORT,
            attach_balancer: true,
        }
    }
}

pub use crate::common::ip;

impl Builder {
    pub fn reals(mut self, n: usize) -> Self {
        self.reals = n.clamp(1, 200);
        self
    }
    /// XDP mode of the balancer and of the reals' decapsulation.
    pub fn mode(mut self, mode: XdpMode) -> Self {
        self.mode = mode;
        self
    }
    /// Whether the test process attaches its balancer to the LB's `eth0`
    /// (default yes); without, something else does (see [`daemon`]).
    pub fn attach_balancer(mut self, yes: bool) -> Self {
        self.attach_balancer = yes;
        self
    }

    pub fn build(self) -> Result<Testbed> {
        netns::delete_stale();
        let tag = netns::unique_tag();
        let options = LoadOptions {
            max_vips: 8,
            max_reals: 64,
            // sized as the README advises: the MQTT tests keep 400
            // sessions, which 4,096 entries in sets of 4 ways evicted from
            // in about one load in twenty
            conn_table_size: 65536,
            fallback_table_size: 4096,
            ..LoadOptions::default()
        };
        let mut tb = Testbed {
            router: format!("{tag}-router"),
            lb: Node {
                ns: format!("{tag}-lb"),
                iface: "eth0".into(),
                v4: Ipv4Addr::new(10, 99, 0, 2),
                v6: "fd00:99::2".parse().expect("literal"),
            },
            clients: (0..self.clients)
                .map(|i| Node {
                    ns: format!("{tag}-c{i}"),
                    iface: "eth0".into(),
                    v4: Ipv4Addr::new(10, 100, 0, 2 + i as u8),
                    v6: Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 2 + i as u16),
                })
                .collect(),
            reals: (0..self.reals)
                .map(|i| Node {
                    ns: format!("{tag}-r{i}"),
                    iface: "eth0".into(),
                    v4: Ipv4Addr::new(10, 201, 0, 11 + i as u8),
                    v6: Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 0x11 + i as u16),
                })
                .collect(),
            tag,
            gateway_mac: MacAddr::default(),
            lb_attached: Attached::Native,
            servers: Vec::new(),
            links: Vec::new(),
            decaps: Vec::new(),
            dp: Dataplane::load(&options).context("loading the balancer")?,
            namespaces: Vec::new(),
        };
        tb.wire(&self)?;
        tb.attach(&self)?;
        Ok(tb)
    }
}

pub struct Testbed {
    pub tag: String,
    pub router: String,
    pub lb: Node,
    pub clients: Vec<Node>,
    pub reals: Vec<Node>,
    /// The router's MAC on the LB link: where the balancer sends frames.
    pub gateway_mac: MacAddr,
    /// How the balancer ended up attached.
    pub lb_attached: Attached,
    // Dropped in this order: servers, links, programs, then namespaces.
    servers: Vec<Child>,
    links: Vec<OwnedFd>,
    decaps: Vec<Decap>,
    dp: Dataplane,
    namespaces: Vec<String>,
}

const SYSCTLS: &[&str] = &[
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
];

impl Testbed {
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn wire(&mut self, b: &Builder) -> Result<()> {
        let r = self.router.clone();
        let ends: Vec<Node> = self
            .clients
            .iter()
            .chain(self.reals.iter())
            .chain([&self.lb])
            .cloned()
            .collect();
        for ns in std::iter::once(&r).chain(ends.iter().map(|n| &n.ns)) {
            netns::add(ns)?;
            self.namespaces.push(ns.clone());
            let mut args = vec!["sysctl", "-q", "-w"];
            args.extend_from_slice(SYSCTLS);
            if *ns == r {
                args.extend_from_slice(&[
                    "net.ipv4.ip_forward=1",
                    "net.ipv6.conf.all.forwarding=1",
                ]);
            }
            netns::exec(ns, &args)?;
        }

        // Router: one bridge for the clients, one for the reals, a link to lb.
        let mut cmds = vec![
            "link set dev lo up".to_string(),
            "link add brc type bridge".into(),
            "link add brr type bridge".into(),
            "link set dev brr mtu 1600".into(),
        ];
        let peer = |name: &str, n: &Node| {
            format!(
                "link add name {name} type veth peer name {} netns {}",
                n.iface, n.ns
            )
        };
        for (i, c) in self.clients.iter().enumerate() {
            cmds.push(peer(&format!("c{i}"), c));
            cmds.push(format!("link set dev c{i} master brc up"));
        }
        for (i, real) in self.reals.iter().enumerate() {
            cmds.push(peer(&format!("r{i}"), real));
            cmds.push(format!("link set dev r{i} mtu 1600 master brr up"));
        }
        cmds.push(peer("lb", &self.lb));
        cmds.extend(
            [
                "link set dev lb mtu 1600 up",
                "link set dev brr mtu 1600 up",
                "link set dev brc up",
                "addr add 10.100.0.1/24 dev brc",
                "addr add fd00:100::1/64 dev brc nodad",
                "addr add 10.201.0.1/24 dev brr",
                "addr add fd00:201::1/64 dev brr nodad",
                "addr add 10.99.0.1/24 dev lb",
                "addr add fd00:99::1/64 dev lb nodad",
            ]
            .map(String::from),
        );
        cmds.push(format!("route add 10.200.0.0/24 via {}", self.lb.v4));
        cmds.push(format!("route add fd00:200::/64 via {}", self.lb.v6));
        netns::ip_batch(&r, &cmds)?;

        let end = |n: &Node, mtu: u32, gw4: &str, gw6: &str, plen: u8| -> Vec<String> {
            vec![
                "link set dev lo up".into(),
                format!("link set dev {} mtu {mtu} up", n.iface),
                format!("addr add {}/{plen} dev {}", n.v4, n.iface),
                format!("addr add {}/64 dev {} nodad", n.v6, n.iface),
                format!("route add default via {gw4}"),
                format!("route add default via {gw6}"),
            ]
        };
        for c in &self.clients {
            netns::ip_batch(&c.ns, &end(c, 1500, "10.100.0.1", "fd00:100::1", 24))?;
            // Native XDP on the way takes frames as they are: no partial
            // checksums may leave the client.
            netns::exec(&c.ns, &["ethtool", "-K", &c.iface, "tx", "off"])?;
        }
        netns::ip_batch(
            &self.lb.ns,
            &end(&self.lb, 1600, "10.99.0.1", "fd00:99::1", 24),
        )?;
        for real in &self.reals {
            netns::ip_batch(&real.ns, &end(real, 1600, "10.201.0.1", "fd00:201::1", 24))?;
            for vip in &b.vips {
                let vip = *vip;
                netns::within(&real.ns, move || katran::kernel::real::setup(vip))
                    .with_context(|| format!("setting up real {}", real.ns))?;
            }
        }
        let mac = netns::exec(&r, &["cat", "/sys/class/net/lb/address"])?;
        self.gateway_mac = mac
            .trim()
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))
            .context("the router's MAC")?;
        Ok(())
    }

    fn attach(&mut self, b: &Builder) -> Result<()> {
        // XDP_TX on a veth needs an XDP program on the peer.
        let pass = self.dp.pass_floor().as_fd();
        let (link, _) = netns::within(&self.router, || attach_xdp(pass, "lb", XdpMode::Native))?;
        self.links.push(link);
        if b.attach_balancer {
            let prog = self.dp.balancer().as_fd();
            let iface = self.lb.iface.clone();
            let (link, how) = netns::within(&self.lb.ns, || attach_xdp(prog, &iface, b.mode))?;
            self.links.push(link);
            self.lb_attached = how;
        }
        for real in &self.reals {
            let decap = Decap::load(b.gue_port)?;
            let prog = decap.prog().as_fd();
            let (link, _) = netns::within(&real.ns, || attach_xdp(prog, &real.iface, b.mode))?;
            self.links.push(link);
            self.decaps.push(decap);
        }
        Ok(())
    }

    /// An empty state that forwards to this testbed's router.
    pub fn state(&self) -> State {
        let mut s = State::default();
        s.globals.gateway_mac = self.gateway_mac;
        s
    }

    /// Programs the balancer with `state` (atomically, as `katran apply`).
    pub fn apply(&self, state: &State) -> Result<ApplyReport> {
        let mut store = self.dp.store()?;
        apply(&mut store, state)
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }

    /// Counters of real `i`'s decapsulation program.
    pub fn decap_stats(&self, i: usize) -> Result<DecapStats> {
        self.decaps.get(i).context("no such real")?.stats()
    }

    /// Runs a command in namespace `ns`; its standard output.
    pub fn run(&self, ns: &str, args: &[&str]) -> Result<String> {
        netns::exec(ns, args)
    }

    /// Starts a background process in `ns`, killed when the testbed drops.
    /// With `ready`, waits until its standard output prints that line.
    pub fn spawn(&mut self, ns: &str, args: &[&str], ready: Option<&str>) -> Result<()> {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {args:?} in {ns}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        self.servers.push(child);
        if let Some(want) = ready {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                match lines.next() {
                    Some(Ok(l)) if l.trim() == want => break,
                    Some(Ok(_)) => continue,
                    _ => bail!("{args:?} in {ns} exited before printing {want:?}"),
                }
            }
        }
        Ok(())
    }

    /// Runs the balancer on CPU `cpu` for every frame it receives, as a
    /// NIC's receive hashing keeps each flow on one queue and CPU. Without
    /// it a veth delivers a frame on whichever CPU sent it, a flow's frames
    /// wander between CPUs, and a frame on a CPU whose connection table has
    /// no entry for the flow is hashed on the current ring: after a change
    /// of reals, possibly to another real.
    ///
    /// Exact with [`XdpMode::Generic`]: the program then runs where the
    /// kernel processes the frame, which receive packet steering (RPS) on
    /// the balancer's interface sets. A native program on a veth runs in the
    /// poll of its one queue, wherever that poll was started, which this
    /// cannot steer.
    pub fn steer_balancer_to_cpu(&self, cpu: usize) -> Result<()> {
        let file = format!("/sys/class/net/{}/queues/rx-0/rps_cpus", self.lb.iface);
        let mask = format!("{:x}", 1u64 << cpu.min(63));
        netns::exec(&self.lb.ns, &["sh", "-c", &format!("echo {mask} > {file}")]).map(drop)
    }

    /// Packet and byte counters of `iface` in `ns`.
    pub fn counters(&self, ns: &str, iface: &str) -> Result<Counters> {
        let dir = format!("/sys/class/net/{iface}/statistics");
        let names = ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"];
        let files: Vec<String> = names.iter().map(|n| format!("{dir}/{n}")).collect();
        let mut args = vec!["cat"];
        args.extend(files.iter().map(String::as_str));
        let out = netns::exec(ns, &args)?;
        let v: Vec<u64> = out
            .split_whitespace()
            .map(|s| s.parse().context("a counter"))
            .collect::<Result<_>>()?;
        if v.len() != 4 {
            bail!("unexpected counters of {iface} in {ns}: {out:?}");
        }
        Ok(Counters {
            rx_packets: v[0],
            rx_bytes: v[1],
            tx_packets: v[2],
            tx_bytes: v[3],
        })
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.links.clear();
        for ns in self.namespaces.drain(..).rev() {
            netns::delete(&ns);
        }
    }
}
