//! A fleet of two balancers behind an ECMP router, as docs/fleet.md sets it
//! up: a router namespace running BIRD 2 (BGP from both balancers, ECMP
//! with `merge paths`, `fib_multipath_hash_policy = 1`), two balancer
//! namespaces each running `katran run` with `[announce] table = 100` and
//! BIRD exporting that table, three reals running `katran real` (XDP decap),
//! and a client. Every katran here is the real binary, entered with
//! `nsenter --net` so the pins stay on the host's bpffs.
//!
//! ```text
//!   client ── router ──┬── lb0 (katran run + bird)
//!                      ├── lb1 (katran run + bird)
//!                      └── brr ── real0, real1, real2 (katran real)
//! ```
//!
//! Checked, in one run (the setup takes seconds): both balancers' routes
//! reach the router as two next hops; 200 flows spread over both balancers
//! and each is answered by the real `katran explain` names; `katran drain`
//! withdraws one balancer's route and 20 long-lived connections move to the
//! other without a reset; every real of a VIP failing its health check
//! withdraws its route, and their recovery announces it again; and, as a
//! control, different weights on the two balancers do break a connection
//! that moves, so the test can fail.
//!
//! Needs root, `bird` (Debian `bird2`), `python3`, `ip` and `nsenter`.

use crate::common;
use crate::testbed;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use katran::kernel::live::Pins;
use testbed::daemon::{katran_bin, Proc, ECHO_SERVER};
use testbed::http::{CLIENT, SERVER};
use testbed::netns;

/// Generous bound for every wait: the event is checked, not the time.
const WAIT: Duration = Duration::from_secs(60);
const VIP: &str = "10.200.0.10";
/// A VIP address of its own whose only VIP has a health check.
const CHECKED: &str = "10.200.0.20";
const CLIENT_ADDR: &str = "10.100.0.2";
const REALS: usize = 3;

fn real_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 201, 0, 11 + i as u8)
}

fn run(args: &[&str]) -> String {
    netns::host(args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A process started in a namespace, killed when dropped.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(ns: &str, args: &[&str], log: &Path) -> Spawned {
    let out = std::fs::File::create(log).expect("log file");
    Spawned(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {args:?} in {ns}: {e}")),
    )
}

/// A server script that prints `ready` once listening.
fn serve(ns: &str, script: &str, args: &[&str]) -> Proc {
    let p = Proc::python(ns, script, args).expect("server");
    assert_eq!(p.line(Duration::from_secs(20)).expect("ready"), "ready");
    p
}

struct Balancer {
    ns: String,
    addr: Ipv4Addr,
    pins: PathBuf,
    config: PathBuf,
    daemon: Option<Spawned>,
    bird: Option<Spawned>,
}

struct Fleet {
    tag: String,
    dir: PathBuf,
    router: String,
    client: String,
    reals: Vec<String>,
    lbs: Vec<Balancer>,
    servers: Vec<Proc>,
    /// The servers of the checked VIP.
    checked: Vec<Proc>,
    router_bird: Option<Spawned>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for lb in &mut self.lbs {
            lb.daemon = None;
            lb.bird = None;
            let _ = Command::new(katran_bin())
                .args(["down", "--force", "--pin-dir"])
                .arg(&lb.pins)
                .output();
            let _ = std::fs::remove_file(katran::kernel::announce::drain_marker(&lb.pins));
            let run = Path::new(katran::files::daemon_lock::RUN_DIR);
            let _ = std::fs::remove_file(run.join(katran::files::daemon_lock::file_name(&lb.pins)));
            let _ = std::fs::remove_dir_all(&lb.pins);
        }
        self.router_bird = None;
        self.servers.clear();
        self.checked.clear();
        for i in 0..REALS {
            let _ = std::fs::remove_dir_all(self.real_pins(i));
        }
        for ns in self.all_namespaces() {
            netns::delete(&ns);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// BIRD on the router: BGP from both balancers (one AS for the fleet, so
/// their routes are equal and ECMP forms) into the kernel as one multipath
/// route.
fn router_bird(lbs: &[Balancer]) -> String {
    let mut conf = String::from(
        "log stderr all;\nrouter id 10.100.0.1;\n\
         protocol device { scan time 1; }\n\
         protocol kernel {\n  ipv4 { import none; export all; };\n  merge paths on;\n}\n",
    );
    for (i, lb) in lbs.iter().enumerate() {
        conf.push_str(&format!(
            "protocol bgp lb{i} {{\n  local 10.99.{i}.1 as 65000;\n  neighbor {} as 65001;\n  \
             hold time 3; keepalive time 1; connect retry time 1;\n  \
             ipv4 {{ import all; export none; }};\n}}\n",
            lb.addr
        ));
    }
    conf
}

/// BIRD on a balancer: learns katran's routes from table 100 and exports
/// them to the router, next hop itself.
fn balancer_bird(i: usize, lb: &Balancer) -> String {
    format!(
        "log stderr all;\nrouter id {addr};\n\
         protocol device {{ scan time 1; }}\n\
         protocol kernel katran {{\n  ipv4 {{ import all; export none; }};\n  \
         kernel table 100;\n  learn;\n  scan time 1;\n}}\n\
         protocol bgp uplink {{\n  local {addr} as 65001;\n  neighbor 10.99.{i}.1 as 65000;\n  \
         hold time 3; keepalive time 1; connect retry time 1;\n  \
         ipv4 {{ import none; export all; next hop self; }};\n}}\n",
        addr = lb.addr
    )
}

impl Fleet {
    fn real_pins(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("/sys/fs/bpf/katran-test-{}-r{i}", self.tag))
    }

    fn all_namespaces(&self) -> Vec<String> {
        let mut v = vec![self.router.clone(), self.client.clone()];
        v.extend(self.reals.iter().cloned());
        v.extend(self.lbs.iter().map(|l| l.ns.clone()));
        v
    }

    fn new() -> Fleet {
        netns::delete_stale();
        let tag = netns::unique_tag();
        let dir = std::env::temp_dir().join(format!("katran-fleet-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let lbs = (0..2)
            .map(|i| Balancer {
                ns: format!("{tag}-lb{i}"),
                addr: Ipv4Addr::new(10, 99, i as u8, 2),
                pins: PathBuf::from(format!("/sys/fs/bpf/katran-test-{tag}-lb{i}")),
                config: dir.join(format!("lb{i}.toml")),
                daemon: None,
                bird: None,
            })
            .collect();
        let mut f = Fleet {
            router: format!("{tag}-router"),
            client: format!("{tag}-client"),
            reals: (0..REALS).map(|i| format!("{tag}-r{i}")).collect(),
            lbs,
            servers: Vec::new(),
            checked: Vec::new(),
            router_bird: None,
            tag,
            dir,
        };
        for ns in f.all_namespaces() {
            netns::add(&ns).expect("namespace");
        }
        f.wire();
        f
    }

    fn wire(&mut self) {
        let r = self.router.clone();
        let mut cmds: Vec<String> = vec![
            "link set lo up".into(),
            "link add brr type bridge".into(),
            "link set brr up".into(),
            "addr add 10.201.0.1/24 dev brr".into(),
        ];
        netns::ip_batch(&r, &cmds).expect("router");
        let pair = |a_ns: &str, a: &str, b_ns: &str, b: &str| {
            run(&[
                "ip", "-n", a_ns, "link", "add", a, "type", "veth", "peer", "name", b, "netns",
                b_ns,
            ]);
        };
        pair(&r, "rc", &self.client, "eth0");
        for (i, lb) in self.lbs.iter().enumerate() {
            pair(&r, &format!("lb{i}"), &lb.ns, "eth0");
        }
        for (i, ns) in self.reals.iter().enumerate() {
            pair(&r, &format!("r{i}"), ns, "eth0");
        }
        cmds = vec![
            "link set rc up".into(),
            "addr add 10.100.0.1/24 dev rc".into(),
        ];
        for i in 0..self.lbs.len() {
            cmds.push(format!("link set lb{i} up"));
            cmds.push(format!("addr add 10.99.{i}.1/24 dev lb{i}"));
        }
        for i in 0..REALS {
            cmds.push(format!("link set r{i} master brr up"));
        }
        netns::ip_batch(&r, &cmds).expect("router links");
        for s in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.fib_multipath_hash_policy=1",
        ] {
            run(&[
                "nsenter",
                &format!("--net=/run/netns/{r}"),
                "sysctl",
                "-qw",
                s,
            ]);
        }
        let end = |ns: &str, addr: String, gw: &str| {
            netns::ip_batch(
                ns,
                &[
                    "link set lo up".into(),
                    "link set eth0 up".into(),
                    format!("addr add {addr} dev eth0"),
                    format!("route add default via {gw}"),
                ],
            )
            .expect("end host");
        };
        end(&self.client, format!("{CLIENT_ADDR}/24"), "10.100.0.1");
        for (i, lb) in self.lbs.iter().enumerate() {
            end(&lb.ns, format!("{}/24", lb.addr), &format!("10.99.{i}.1"));
        }
        for (i, ns) in self.reals.iter().enumerate() {
            end(ns, format!("{}/24", real_addr(i)), "10.201.0.1");
            let net = format!("--net=/run/netns/{ns}");
            let bin = katran_bin();
            let bin = bin.to_str().expect("utf-8");
            run(&["nsenter", &net, bin, "real", "setup", "--vip", VIP]);
            run(&["nsenter", &net, bin, "real", "setup", "--vip", CHECKED]);
            let pins = self.real_pins(i);
            run(&[
                "nsenter",
                &net,
                bin,
                "real",
                "attach",
                "-i",
                "eth0",
                "--mode",
                "generic",
                "--pin-dir",
                pins.to_str().expect("utf-8"),
            ]);
        }
    }

    /// The file both balancers run (only `pin_dir` differs).
    fn file(&self, lb: usize, weights: &[u32], extra: &str) -> String {
        let reals: Vec<String> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| format!("{{ address = \"{}\", weight = {w} }}", real_addr(i)))
            .collect();
        format!(
            "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"generic\"\nconn_table = \"shared\"\n\
             conn_table_size = 4096\nmax_vips = 8\nmax_reals = 16\nring_size = 4099\n\
             pin_dir = \"{}\"\n\n[announce]\ntable = 100\n\n\
             [[vip]]\naddress = \"{VIP}:80\"\nproto = \"tcp\"\nreals = [{}]\n{extra}\n\
             [[vip]]\naddress = \"{VIP}:7000\"\nproto = \"tcp\"\nreals = [{}]\n\n\
             [[vip]]\naddress = \"{CHECKED}:8080\"\nproto = \"tcp\"\nreals = [{}]\n\
             healthcheck = {{ type = \"tcp\", interval = \"300ms\", timeout = \"250ms\", rise = 2, fall = 2 }}\n",
            self.lbs[lb].pins.display(),
            reals.join(", "),
            reals.join(", "),
            reals.join(", ")
        )
    }

    fn start(&mut self, weights: &[u32], extra: &str) {
        for i in 0..REALS {
            let ns = self.reals[i].clone();
            let name = format!("real{i}");
            self.servers.push(serve(&ns, SERVER, &[&name, "80"]));
            self.servers.push(serve(&ns, ECHO_SERVER, &[&name, "7000"]));
        }
        self.serve_checked();
        let conf = self.dir.join("router-bird.conf");
        std::fs::write(&conf, router_bird(&self.lbs)).expect("bird conf");
        self.router_bird = Some(self.bird(&self.router.clone(), &conf, "router"));
        for i in 0..self.lbs.len() {
            std::fs::write(&self.lbs[i].config, self.file(i, weights, extra)).expect("file");
            self.start_balancer(i);
        }
    }

    /// The servers behind the checked VIP (port 8080), one per real.
    fn serve_checked(&mut self) {
        self.checked = (0..REALS)
            .map(|i| serve(&self.reals[i], SERVER, &[&format!("real{i}"), "8080"]))
            .collect();
    }

    fn bird(&self, ns: &str, conf: &Path, name: &str) -> Spawned {
        let sock = self.dir.join(format!("{name}.ctl"));
        spawn_in(
            ns,
            &[
                "bird",
                "-f",
                "-c",
                conf.to_str().expect("utf-8"),
                "-s",
                sock.to_str().expect("utf-8"),
                "-P",
                self.dir
                    .join(format!("{name}.pid"))
                    .to_str()
                    .expect("utf-8"),
            ],
            &self.dir.join(format!("{name}-bird.log")),
        )
    }

    fn start_balancer(&mut self, i: usize) {
        let conf = self.dir.join(format!("lb{i}-bird.conf"));
        std::fs::write(&conf, balancer_bird(i, &self.lbs[i])).expect("bird conf");
        let bird = self.bird(&self.lbs[i].ns.clone(), &conf, &format!("lb{i}"));
        let status = self.dir.join(format!("lb{i}-status.json"));
        let bin = katran_bin();
        let daemon = spawn_in(
            &self.lbs[i].ns,
            &[
                bin.to_str().expect("utf-8"),
                "run",
                "-c",
                self.lbs[i].config.to_str().expect("utf-8"),
                "--status-file",
                status.to_str().expect("utf-8"),
            ],
            &self.dir.join(format!("lb{i}-katran.log")),
        );
        self.lbs[i].bird = Some(bird);
        self.lbs[i].daemon = Some(daemon);
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// The router's next hops for the VIP.
    fn next_hops(&self) -> Vec<String> {
        self.next_hops_of(VIP)
    }

    /// The router's next hops for a VIP address.
    fn next_hops_of(&self, addr: &str) -> Vec<String> {
        let out = netns::host(&[
            "ip",
            "-n",
            &self.router,
            "-j",
            "route",
            "show",
            &format!("{addr}/32"),
        ])
        .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let Some(route) = v.get(0) else {
            return Vec::new();
        };
        match route.get("nexthops").and_then(|n| n.as_array()) {
            Some(hops) => hops
                .iter()
                .filter_map(|h| h["gateway"].as_str().map(String::from))
                .collect(),
            None => route["gateway"]
                .as_str()
                .map(String::from)
                .into_iter()
                .collect(),
        }
    }

    fn wait_next_hops(&self, n: usize, what: &str) -> Duration {
        self.wait_next_hops_of(VIP, n, what)
    }

    fn wait_next_hops_of(&self, addr: &str, n: usize, what: &str) -> Duration {
        let t0 = Instant::now();
        while self.next_hops_of(addr).len() != n {
            assert!(
                t0.elapsed() < WAIT,
                "{what}: the router has {:?} for {addr}, not {n} next hop(s)\nrouter bird:\n{}\nlb0 bird:\n{}\nlb0 katran:\n{}\nlb1 katran:\n{}",
                self.next_hops_of(addr),
                self.log("router-bird.log"),
                self.log("lb0-bird.log"),
                self.log("lb0-katran.log"),
                self.log("lb1-katran.log")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t0.elapsed()
    }

    /// Packets each balancer forwarded to VIPs so far.
    fn forwarded(&self) -> Vec<u64> {
        self.lbs
            .iter()
            .map(|lb| {
                let store = katran::kernel::live::open(&Pins::new(&lb.pins))
                    .expect("open")
                    .expect("pinned");
                let s = katran::views::stats::snapshot(&store).expect("stats");
                s.vips.values().map(|t| t.packets).sum()
            })
            .collect()
    }

    /// `count` GETs from source ports `first..`: the client's lines, `ok
    /// NAME` or `err REASON`, in port order.
    fn requests(&self, first: u16, count: usize) -> String {
        netns::host(&[
            "nsenter",
            &format!("--net=/run/netns/{}", self.client),
            "python3",
            "-c",
            CLIENT,
            CLIENT_ADDR,
            VIP,
            "80",
            &first.to_string(),
            &count.to_string(),
        ])
        .expect("client")
    }

    /// `count` GETs from source ports `first..`: how many failed, and the
    /// first failure.
    fn try_get(&self, first: u16, count: usize) -> (usize, String) {
        let out = self.requests(first, count);
        let failed: Vec<&str> = out.lines().filter(|l| !l.starts_with("ok ")).collect();
        (
            failed.len(),
            failed.first().map(|s| s.to_string()).unwrap_or_default(),
        )
    }

    /// `count` GETs from source ports `first..`: (source port, real name).
    fn get(&self, first: u16, count: usize) -> Vec<(u16, String)> {
        self.requests(first, count)
            .lines()
            .enumerate()
            .map(|(i, l)| match l.split_once(' ') {
                Some(("ok", name)) => (first + i as u16, name.to_string()),
                _ => panic!("request from port {} failed: {l}", first + i as u16),
            })
            .collect()
    }
}

/// `IFACE MAC ADDRESS`: one gratuitous ARP (a broadcast reply) saying
/// ADDRESS is at MAC, as a router sends when its MAC changes.
const GRATUITOUS_ARP: &str = r#"
import socket, sys
iface, mac, ip = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), socket.inet_aton(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
arp = b"\x00\x01\x08\x00\x06\x04\x00\x02" + mac + ip + b"\xff" * 6 + ip
s.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)
"#;

/// `COUNT FIRST`: COUNT connections to VIP:7000 from source ports FIRST..;
/// each stdin line pings every one and prints the names that answered, or
/// `err I REASON` for the first that failed.
const CONNECTIONS: &str = r#"
import socket, sys
count, first = int(sys.argv[1]), int(sys.argv[2])
conns = []
for i in range(count):
    s = socket.socket()
    s.settimeout(20)
    s.bind(("10.100.0.2", first + i))
    s.connect(("10.200.0.10", 7000))
    conns.append(s.makefile("rwb"))
print("connected", flush=True)
for line in sys.stdin:
    names = []
    try:
        for i, c in enumerate(conns):
            c.write(b"ping\n"); c.flush()
            answer = c.readline()
            if not answer:
                raise Exception("closed")
            names.append(answer.split()[0].decode())
        print(" ".join(names), flush=True)
    except Exception as e:
        print("err", i, repr(e), flush=True)
"#;

struct Connections(Proc);

impl Connections {
    fn open(f: &Fleet, count: usize, first: u16) -> Connections {
        let p = Proc::python(
            &f.client,
            CONNECTIONS,
            &[&count.to_string(), &first.to_string()],
        )
        .expect("connections");
        assert_eq!(
            p.line(Duration::from_secs(30)).expect("connected"),
            "connected"
        );
        Connections(p)
    }

    /// The real each connection answers from, or the failure.
    fn ping(&mut self) -> Result<Vec<String>, String> {
        self.0.send("ping").expect("send");
        let line = self.0.line(Duration::from_secs(60)).expect("answer");
        if line.starts_with("err") {
            Err(line)
        } else {
            Ok(line.split(' ').map(String::from).collect())
        }
    }
}

fn katran_in(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(katran_bin())
        .args(args)
        .output()
        .expect("katran")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_fleet_behind_ecmp_balances_drains_and_fails_over() {
    const NAME: &str = "fleet";
    if !common::privileged(NAME)
        || !common::tools(NAME, &["bird", "python3", "ip", "nsenter", "sysctl"])
    {
        return;
    }
    let mut f = Fleet::new();
    f.start(&[1, 1, 1], "");

    // 1. both balancers' routes reach the router
    let took = f.wait_next_hops(2, "start");
    println!("  two next hops for {VIP} {took:?} after the start");

    // 2. 200 flows: both balancers carry a share; each answer is the real
    //    `katran explain` names for the flow
    let before = f.forwarded();
    let answers = f.get(20000, 200);
    let after = f.forwarded();
    let share: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: u64 = share.iter().sum();
    println!("  200 flows: packets per balancer {share:?}");
    for s in &share {
        assert!(
            *s * 100 >= total * 30,
            "a balancer carried under 30%: {share:?}"
        );
    }
    let mut per_real: BTreeMap<&str, usize> = BTreeMap::new();
    for lb in 0..f.lbs.len() {
        let cfg = katran::config::load(&f.lbs[lb].config)
            .expect("file")
            .config;
        for (sport, name) in &answers {
            let src = format!("{CLIENT_ADDR}:{sport}");
            let flow = katran::explain::parse_flow(&src, &format!("{VIP}:80/tcp")).expect("flow");
            let e = katran::explain::explain(&cfg.state, cfg.settings.ring_size, flow);
            let want = e.real.map(|r| r.to_string()).unwrap_or_default();
            let got = real_addr(name.trim_start_matches("real").parse().expect("name")).to_string();
            assert_eq!(got, want, "lb{lb}: flow from {src} answered by {name}");
            if lb == 0 {
                *per_real.entry(name).or_default() += 1;
            }
        }
    }
    println!("  every answer is the real katran explain names, on both balancers: {per_real:?}");

    // 3. drain lb0: its route goes, 20 long-lived connections move to lb1
    //    and keep their real
    let mut conns = Connections::open(&f, 20, 30000);
    let reals = conns.ping().expect("first ping");
    let t0 = Instant::now();
    let drain = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", f.lbs[0].ns))
        .arg(katran_bin())
        .args([
            "drain",
            "-c",
            f.lbs[0].config.to_str().expect("utf-8"),
            "--timeout",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("katran drain");
    f.wait_next_hops(1, "drain");
    println!(
        "  drained lb0: one next hop {:?} after the drain began",
        t0.elapsed()
    );
    let drain = drain.wait_with_output().expect("drain");
    println!(
        "  katran drain: {}",
        String::from_utf8_lossy(&drain.stdout)
            .lines()
            .last()
            .unwrap_or("")
    );
    assert!(drain.status.success(), "{}", text(&drain));
    assert_eq!(f.next_hops(), ["10.99.1.2"]);
    let moved = f.forwarded()[1];
    assert_eq!(
        conns.ping().expect("after the drain"),
        reals,
        "a connection moved real"
    );
    assert!(
        f.forwarded()[1] > moved,
        "lb1 did not carry the connections"
    );
    let undo = katran_in(
        &f.lbs[0].ns,
        &[
            "drain",
            "--undo",
            "-c",
            f.lbs[0].config.to_str().expect("utf-8"),
        ],
    );
    assert!(undo.status.success(), "{}", text(&undo));
    f.wait_next_hops(2, "undo");
    assert_eq!(conns.ping().expect("after the undo"), reals);

    // 5. every real of the checked VIP fails its health check: its address
    //    is withdrawn by both balancers; the servers back: announced again
    f.wait_next_hops_of(CHECKED, 2, "checked VIP at start");
    let t0 = Instant::now();
    f.checked.clear();
    f.wait_next_hops_of(CHECKED, 0, "every real failing");
    println!(
        "  every real of {CHECKED}:8080 failing: withdrawn {:?} after the servers stopped",
        t0.elapsed()
    );
    assert_eq!(f.next_hops().len(), 2, "{VIP} must stay announced");
    let t0 = Instant::now();
    f.serve_checked();
    f.wait_next_hops_of(CHECKED, 2, "servers back");
    println!("  servers back: announced again {:?} later", t0.elapsed());

    // 4. lb0's BIRD and katran killed without warning: after the BGP hold
    //    time the router sends everything to lb1; no connection breaks
    let t0 = Instant::now();
    f.lbs[0].bird = None;
    f.lbs[0].daemon = None;
    f.wait_next_hops(1, "lb0 killed");
    println!(
        "  lb0's processes killed: one next hop {:?} later (the kernel closed BIRD's session; \
         a silent loss would take the 3 s hold time)",
        t0.elapsed()
    );
    assert_eq!(conns.ping().expect("after the kill"), reals);
    f.start_balancer(0);
    f.wait_next_hops(2, "lb0 back");
    assert_eq!(conns.ping().expect("with lb0 back"), reals);

    // 7. the router's MAC changes (and it says so, as routers do): under
    //    gateway_mac = "auto" both balancers follow; no request fails after
    //    the first second
    let t0 = Instant::now();
    let announce_mac = |i: usize| {
        let (iface, mac) = (format!("lb{i}"), format!("02:aa:bb:cc:00:{i:02x}"));
        let net = format!("--net=/run/netns/{}", f.router);
        let ip = format!("10.99.{i}.1");
        run(&[
            "nsenter",
            &net,
            "python3",
            "-c",
            GRATUITOUS_ARP,
            &iface,
            &mac,
            &ip,
        ]);
    };
    for i in 0..f.lbs.len() {
        let mac = format!("02:aa:bb:cc:00:{i:02x}");
        let iface = format!("lb{i}");
        run(&[
            "ip", "-n", &f.router, "link", "set", "dev", &iface, "address", &mac,
        ]);
        announce_mac(i);
    }
    let (mut early, mut late, mut first_late) = (0, 0, String::new());
    let mut sport = 40000;
    let mut repeated = false;
    while t0.elapsed() < Duration::from_secs(4) {
        let after_first_second = t0.elapsed() > Duration::from_secs(1);
        // routers repeat it: a kernel ignores one that comes within a
        // second (locktime) of confirming the old address
        if after_first_second && !repeated {
            (0..f.lbs.len()).for_each(announce_mac);
            repeated = true;
        }
        let (failed, first) = f.try_get(sport, 10);
        sport += 10;
        if after_first_second {
            late += failed;
            if first_late.is_empty() {
                first_late = first;
            }
        } else {
            early += failed;
        }
    }
    println!("  router MAC changed: {early} request(s) failed in the first second, {late} after");
    assert_eq!(
        late, 0,
        "requests failed after the first second: {first_late}"
    );
    for i in 0..f.lbs.len() {
        let log = || f.log(&format!("lb{i}-katran.log"));
        while !log().contains("gateway MAC changed from") {
            assert!(t0.elapsed() < WAIT, "lb{i} did not follow:\n{}", log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!("  both balancers followed the new MAC");

    // 6. control: different weights on lb1; the connections that lb0 carried
    //    and that now reach lb1 with no table entry move to another real
    let different = f.file(1, &[5, 1, 1], "");
    std::fs::write(&f.lbs[1].config, &different).expect("file");
    let want = katran::config::parse(&different, "lb1")
        .expect("file")
        .config
        .state;
    let pins1 = Pins::new(&f.lbs[1].pins);
    let t0 = Instant::now();
    loop {
        let live = katran::apply::read_live(&katran::kernel::live::open(&pins1).unwrap().unwrap())
            .unwrap();
        if live.is_some_and(|l| l.vips.iter().any(|v| v.reals == want.vips[0].reals)) {
            break;
        }
        assert!(t0.elapsed() < WAIT, "lb1 did not apply the new weights");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut control = Connections::open(&f, 20, 31000);
    let first = control.ping().expect("control");
    let drain = katran_in(
        &f.lbs[0].ns,
        &[
            "drain",
            "-c",
            f.lbs[0].config.to_str().expect("utf-8"),
            "--timeout",
            "30",
        ],
    );
    assert!(drain.status.success(), "{}", text(&drain));
    f.wait_next_hops(1, "control drain");
    let broke = match control.ping() {
        Err(e) => format!("a connection broke: {e}"),
        Ok(now) if now != first => "a connection moved real".to_string(),
        Ok(_) => String::new(),
    };
    println!("  control (different weights): {broke}");
    assert!(
        !broke.is_empty(),
        "with different weights no connection broke: this test could not fail"
    );

    // withdraw_on_exit: lb1's daemon stopped with SIGTERM takes its route
    // with it (lb0 is drained: nothing is left)
    let text1 = different.replace("table = 100\n", "table = 100\nwithdraw_on_exit = true\n");
    std::fs::write(&f.lbs[1].config, &text1).expect("file");
    let log_path = f.dir.join("lb1-katran.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let t0 = Instant::now();
    while log().matches("reload (file changed)").count() < 2 {
        assert!(t0.elapsed() < WAIT, "lb1 did not reload:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let daemon = f.lbs[1].daemon.take().expect("lb1's daemon");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    f.wait_next_hops(0, "lb1 stopped with withdraw_on_exit");
    assert!(
        log().contains("withdrew 2 announcement(s) (withdraw_on_exit)"),
        "{}",
        log()
    );
    drop(daemon);
}
