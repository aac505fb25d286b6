//! HTTP on the testbed: each real runs a tiny Python server answering with
//! its own name, and a Python client makes many connections from distinct
//! source ports at once, reporting which real answered each.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{bail, Context, Result};

use super::Testbed;

/// `python3 -c SERVER NAME PORT`: serves `NAME` on every address (IPv4 and
/// IPv6), prints `ready` once listening.
pub const SERVER: &str = r#"
import http.server, socket, socketserver, sys
name, port = sys.argv[1].encode(), int(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(name)))
        self.end_headers()
        self.wfile.write(name)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    request_queue_size = 512
    daemon_threads = True
    def server_bind(self):
        # no getfqdn(): name lookups may hang in a namespace
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "real", port
server = Server(("::", port), Handler)
print("ready", flush=True)
server.serve_forever()
"#;

/// `python3 -c CLIENT SRC DST PORT FIRST_SPORT COUNT`: COUNT GETs to
/// DST:PORT, the i-th from source port FIRST_SPORT+i, 64 at a time; prints
/// one line per request: `ok NAME` or `err REASON`.
pub const CLIENT: &str = r#"
import socket, sys
from concurrent.futures import ThreadPoolExecutor
src, dst, port, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
def get(sport):
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.bind((src, sport))
            s.connect((dst, port))
            s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.0 200"):
            return "err bad response " + repr(head[:40])
        return "ok " + body.decode()
    except Exception as e:
        return "err " + repr(e)
with ThreadPoolExecutor(64) as pool:
    for line in pool.map(get, range(first, first + count)):
        print(line)
"#;

/// Starts a server named `real<i>` on `port` in every real.
pub fn serve_names(tb: &mut Testbed, port: u16) -> Result<()> {
    let port = port.to_string();
    for i in 0..tb.reals.len() {
        let ns = tb.reals[i].ns.clone();
        let name = format!("real{i}");
        tb.spawn(&ns, &["python3", "-c", SERVER, &name, &port], Some("ready"))?;
    }
    Ok(())
}

/// What many GETs returned: answers per real name, and the failures.
#[derive(Debug, Default)]
pub struct Tally {
    pub by_real: BTreeMap<String, usize>,
    pub errors: Vec<String>,
}

impl Tally {
    pub fn ok(&self) -> usize {
        self.by_real.values().sum()
    }
}

/// `count` GETs from client `c` to `vip`:`port`, from source ports
/// `first_sport`, `first_sport + 1`, ...
pub fn get_many(
    tb: &Testbed,
    c: usize,
    vip: IpAddr,
    port: u16,
    first_sport: u16,
    count: usize,
) -> Result<Tally> {
    let client = tb.clients.get(c).context("no such client")?;
    let src = match vip {
        IpAddr::V4(_) => client.v4.to_string(),
        IpAddr::V6(_) => client.v6.to_string(),
    };
    let out = tb.run(
        &client.ns,
        &[
            "python3",
            "-c",
            CLIENT,
            &src,
            &vip.to_string(),
            &port.to_string(),
            &first_sport.to_string(),
            &count.to_string(),
        ],
    )?;
    let mut t = Tally::default();
    for line in out.lines() {
        match line.split_once(' ') {
            Some(("ok", name)) => *t.by_real.entry(name.to_string()).or_default() += 1,
            Some(("err", why)) => t.errors.push(why.to_string()),
            _ => bail!("unexpected client output line {line:?}"),
        }
    }
    if t.ok() + t.errors.len() != count {
        bail!(
            "the client reported {} of {count} requests",
            t.ok() + t.errors.len()
        );
    }
    Ok(t)
}
