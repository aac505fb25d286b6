//! Namespace `b` of a [`Pair`] as a real server: it owns the reals'
//! addresses (10.70.0.11, fd00:70::11) on `vb`, holds the VIPs
//! (10.60.0.10, fd00:60::10) on `lo`, unwraps IP-in-IP with katran's XDP
//! decapsulation program (generic mode: veth frames arrive as GSO skbs),
//! and runs a TCP server answering each connection with the number of
//! bytes it received. A marked client in `a` is then a complete TCP
//! health check: encapsulated there, answered directly from here.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use katran::config::XdpMode;
use katran::kernel::bpf::attach::attach_xdp;
use katran::kernel::bpf::decap::{Decap, DecapStats, DEFAULT_GUE_PORT};

use super::netns;
use super::pair::Pair;

pub const VIP4: &str = "10.60.0.10";
pub const VIP6: &str = "fd00:60::10";
pub const REAL4: &str = "10.70.0.11";
pub const REAL6: &str = "fd00:70::11";
pub const PORT: &str = "7002";

/// `python3 -c SERVER PORT`: dual-stack; prints `ready` once listening.
const SERVER: &str = r#"
import socket, sys, threading
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
def serve(c):
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
    c.sendall(str(n).encode())
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// `python3 -c CLIENT DST PORT MARK BYTES`: sends BYTES from a socket with
/// SO_MARK = MARK, prints the server's answer.
const CLIENT: &str = r#"
import socket, sys
dst, port, mark, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
with socket.socket(fam, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    # a lone full-size segment (no GSO) would not fit the MTU once
    # encapsulated, and is dropped as too big: whether TCP ever sends one
    # is timing; segments of 1300 bytes fit, GSO frames still come
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1300)
    s.settimeout(5)
    s.connect((dst, port))
    s.sendall(b"x" * size)
    s.shutdown(socket.SHUT_WR)
    print(s.recv(64).decode(), flush=True)
"#;

pub struct RealSide {
    server: Child,
    _link: OwnedFd,
    decap: Decap,
}

impl RealSide {
    pub fn new(pair: &Pair) -> Result<RealSide> {
        netns::ip_batch(
            &pair.b,
            &[
                format!("addr add {REAL4}/32 dev vb"),
                format!("addr add {REAL6}/128 dev vb nodad"),
                format!("addr add {VIP4}/32 dev lo"),
                format!("addr add {VIP6}/128 dev lo"),
            ],
        )?;
        let decap = Decap::load(DEFAULT_GUE_PORT)?;
        let prog = decap.prog().as_fd();
        let (link, _) = netns::within(&pair.b, || attach_xdp(prog, "vb", XdpMode::Generic))?;
        let mut server = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", pair.b))
            .args(["python3", "-c", SERVER, PORT])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the server")?;
        let out = server.stdout.take().context("server stdout")?;
        let side = RealSide {
            server,
            _link: link,
            decap,
        };
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("the server in {} did not start: {line:?}", pair.b);
        }
        Ok(side)
    }

    /// Sends `bytes` to `vip` from a socket marked `mark` in `a`; the
    /// server's answer (the count it received).
    pub fn check(&self, pair: &Pair, vip: &str, mark: u32, bytes: usize) -> Result<String> {
        let (mark, bytes) = (mark.to_string(), bytes.to_string());
        let args = ["python3", "-c", CLIENT, vip, PORT, &mark, &bytes];
        Ok(netns::exec(&pair.a, &args)?.trim().to_string())
    }

    pub fn decap_stats(&self) -> Result<DecapStats> {
        self.decap.stats()
    }
}

impl Drop for RealSide {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
