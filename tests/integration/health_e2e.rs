//! Active health checks end to end: `katran run` probes each real through
//! the VIP path (socket mark -> tc forwarding -> decap on the real); a real
//! whose service stops is drained within fall x interval, new connections
//! avoid it, connections to the other reals live on; when the service comes
//! back the real returns within rise x interval. For HTTP and for MQTT.
//! Needs root, python3 and mosquitto; prints `skipped: ...` otherwise.

use crate::common;
use crate::testbed;

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use testbed::daemon::{Daemon, Proc};
use testbed::{http, ip, Testbed, VIP4};

const INTERVAL_MS: u64 = 300;
const FALL: u64 = 2;
const RISE: u64 = 2;
/// Generous bound for every wait: a real must get drained (or restored),
/// however loaded the machine; how long it took (about fall or rise x
/// interval) is printed, not asserted.
const WAIT: Duration = Duration::from_secs(30);

/// A process in a namespace, killed on drop.
struct Spawned(Child);

impl Spawned {
    fn new(ns: &str, args: &[&str]) -> Result<Spawned> {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {args:?} in {ns}"))?;
        Ok(Spawned(child))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP/1.1 server answering its name, keeping connections open.
const SERVER: &str = r#"
import http.server, socket, socketserver, sys
name = sys.argv[1].encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        # answer in the request's version: HTTP/1.0 closes, 1.1 keeps alive
        self.protocol_version = self.request_version
        self.send_response(200)
        self.send_header("Content-Length", str(len(name)))
        self.end_headers()
        self.wfile.write(name)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 512
    daemon_threads = True
    allow_reuse_address = True
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "real", 80
S(("0.0.0.0", 80), H).serve_forever()
"#;

/// Holds N keep-alive connections to the VIP; prints `conn I NAME` for each,
/// then on every `check` line does a GET on each and prints `ok I NAME` or
/// `err I REASON`, then `done`.
const HOLDER: &str = r#"
import http.client, sys
vip, n = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(n):
    c = http.client.HTTPConnection(vip, 80, timeout=5)
    c.request("GET", "/")
    conns.append(c)
    print("conn", i, c.getresponse().read().decode(), flush=True)
for line in sys.stdin:
    for i, c in enumerate(conns):
        try:
            c.request("GET", "/")
            print("ok", i, c.getresponse().read().decode(), flush=True)
        except Exception as e:
            print("err", i, repr(e), flush=True)
    print("done", flush=True)
"#;

fn vip_with_check(tb: &Testbed, check: &str, port: u16) -> String {
    let reals: Vec<String> = tb.reals.iter().map(|r| format!("\"{}\"", r.v4)).collect();
    format!(
        "\n[[vip]]\naddress = \"{VIP4}:{port}\"\nproto = \"tcp\"\nreals = [{}]\n\
         healthcheck = {{ {check}, interval = \"{INTERVAL_MS}ms\", timeout = \"250ms\", rise = {RISE}, fall = {FALL} }}\n",
        reals.join(", ")
    )
}

/// Waits until real `real` of the VIP is (un)healthy per the daemon and has
/// the expected ring weight in the live maps; returns how long it took.
fn wait_health(
    d: &Daemon,
    real: impl Into<IpAddr>,
    healthy: bool,
    limit: Duration,
) -> Result<Duration> {
    let real: IpAddr = real.into();
    let start = Instant::now();
    loop {
        let st = d.status()?;
        let flagged = st
            .health
            .iter()
            .any(|(_, r, h)| r == &real.to_string() && h.healthy == healthy);
        // the live maps hold the verdict; the ring weight follows it
        let weight_ok = d.live()?.is_some_and(|s| {
            s.vips.iter().all(|v| {
                v.reals
                    .iter()
                    .filter(|r| r.addr == real)
                    .all(|r| (s.ring_weight(&v.key, r) > 0) == healthy)
            })
        });
        if flagged && weight_ok {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            anyhow::bail!(
                "{real} not {} within {limit:?}; status health: {:?}\n{}",
                if healthy { "healthy" } else { "drained" },
                st.health,
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn http_health_checks_drain_and_restore_a_real() {
    const NAME: &str = "health e2e http";
    if !common::privileged(NAME) || !common::tools(NAME, &["python3", "ip", "nsenter"]) {
        return;
    }
    let tb = Testbed::builder()
        .reals(3)
        .attach_balancer(false)
        .build()
        .unwrap();
    let mut servers: Vec<Option<Spawned>> = Vec::new();
    for (i, r) in tb.reals.iter().enumerate() {
        servers.push(Some(
            Spawned::new(&r.ns, &["python3", "-c", SERVER, &format!("real{i}")]).unwrap(),
        ));
    }
    let mut d = Daemon::new(&tb).unwrap();
    d.write_in_place(&d.file(&[vip_with_check(&tb, "type = \"http\", path = \"/\"", 80)]))
        .unwrap();
    d.start().unwrap();
    let all_healthy = WAIT;
    for r in &tb.reals {
        wait_health(&d, r.v4, true, all_healthy).unwrap();
    }

    // long-lived connections, spread over the reals
    let mut holder = Proc::python(&tb.clients[0].ns, HOLDER, &[VIP4, "24"]).unwrap();
    let mut on: Vec<String> = Vec::new();
    for _ in 0..24 {
        on.push(
            holder
                .line(Duration::from_secs(10))
                .unwrap()
                .split_whitespace()
                .nth(2)
                .unwrap()
                .to_string(),
        );
    }

    let victim = tb.reals[0].v4;
    servers[0] = None; // stop real0's server
    let took = wait_health(&d, victim, false, WAIT).unwrap();
    println!(
        "health http: real0 drained {took:?} after its server stopped (fall x interval = {}ms)",
        INTERVAL_MS * FALL
    );

    let t = http::get_many(&tb, 0, ip(VIP4), 80, 21_000, 120).unwrap();
    assert!(
        t.errors.is_empty(),
        "new requests failed: {:?}",
        &t.errors[..t.errors.len().min(5)]
    );
    assert_eq!(
        t.by_real.get("real0"),
        None,
        "a drained real got new connections: {:?}",
        t.by_real
    );

    holder.send("check").unwrap();
    let mut kept = 0;
    for _ in 0..24 {
        let line = holder.line(Duration::from_secs(10)).unwrap();
        let parts: Vec<&str> = line.split_whitespace().collect();
        let i: usize = parts[1].parse().unwrap();
        if on[i] != "real0" {
            assert_eq!(parts[0], "ok", "a connection to {} broke: {line}", on[i]);
            assert_eq!(parts[2], on[i], "a connection moved");
            kept += 1;
        }
    }
    assert_eq!(holder.line(Duration::from_secs(5)).unwrap(), "done");

    servers[0] = Some(Spawned::new(&tb.reals[0].ns, &["python3", "-c", SERVER, "real0"]).unwrap());
    let back = wait_health(&d, victim, true, WAIT).unwrap();
    let t = http::get_many(&tb, 0, ip(VIP4), 80, 23_000, 120).unwrap();
    assert!(t.errors.is_empty());
    assert!(
        t.by_real.get("real0").copied().unwrap_or(0) > 0,
        "real0 did not come back: {:?}",
        t.by_real
    );
    let status = String::from_utf8(d.katran_status(false).unwrap().stdout).unwrap();
    assert!(status.contains("healthy since"), "{status}");
    println!(
        "health http: {kept} connections to other reals kept working; real0 back {back:?} after restart (rise x interval = {}ms); split after {:?}",
        INTERVAL_MS * RISE,
        t.by_real
    );
    drop(holder);
    drop(d);
    drop(servers);
    drop(tb);
}

#[test]
fn mqtt_health_checks_drain_and_restore_a_broker() {
    const NAME: &str = "health e2e mqtt";
    if !common::privileged(NAME) || !common::tools(NAME, &["mosquitto", "python3", "ip", "nsenter"])
    {
        return;
    }
    let tb = Testbed::builder()
        .reals(3)
        .attach_balancer(false)
        .build()
        .unwrap();
    let d0 = Daemon::new(&tb).unwrap();
    let conf = d0.dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        "listener 1883 0.0.0.0\nallow_anonymous true\npersistence false\n",
    )
    .unwrap();
    let conf = conf.to_string_lossy().to_string();
    let broker = |i: usize| Spawned::new(&tb.reals[i].ns, &["mosquitto", "-c", &conf]).unwrap();
    let mut brokers: Vec<Option<Spawned>> = (0..3).map(|i| Some(broker(i))).collect();
    let mut d = d0;
    d.write_in_place(&d.file(&[vip_with_check(&tb, "type = \"mqtt\"", 1883)]))
        .unwrap();
    d.start().unwrap();
    for r in &tb.reals {
        wait_health(&d, r.v4, true, Duration::from_secs(10)).unwrap();
    }
    let victim = tb.reals[1].v4;
    brokers[1] = None;
    let took = wait_health(&d, victim, false, WAIT).unwrap();
    brokers[1] = Some(broker(1));
    let back = wait_health(&d, victim, true, WAIT).unwrap();
    println!(
        "health mqtt: broker drained {took:?} after it stopped, back {back:?} after it restarted"
    );
    drop(d);
    drop(brokers);
}
