//! MQTT on the testbed: a mosquitto broker in every real (anonymous, no
//! persistence, no logging, listening on every address at 1883), and a
//! minimal MQTT 3.1.1 client held by the test process: CONNECT, SUBSCRIBE
//! and PUBLISH at QoS 0, one TCP connection per [`Session`].
//!
//! Sessions are opened on a thread inside a client's namespace, so their
//! sockets live there, and are then used from any thread. Which broker (real)
//! holds a session is read from the reals' own socket tables (`ss`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{netns, Testbed};

pub const PORT: u16 = 1883;

/// How long one read or write may block before the session counts as broken.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a program lives: a directory of `PATH`, or an sbin directory
/// (root's tools such as mosquitto are there and not always on `PATH`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The brokers' configuration directory; removed when dropped.
pub struct Brokers {
    dir: PathBuf,
}

impl Drop for Brokers {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts mosquitto in every real and waits until each accepts connections.
/// The brokers are the testbed's processes: they die with it.
pub fn serve(tb: &mut Testbed) -> Result<Brokers> {
    let mosquitto = find_program("mosquitto").context("mosquitto is not installed")?;
    let dir = std::env::temp_dir().join(format!("{}-mqtt", tb.tag));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let brokers = Brokers { dir };
    let conf = brokers.dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        "listener 1883\nallow_anonymous true\npersistence false\nlog_dest none\n",
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    let (prog, conf) = (mosquitto.to_string_lossy(), conf.to_string_lossy());
    for i in 0..tb.reals.len() {
        let ns = tb.reals[i].ns.clone();
        tb.spawn(&ns, &[&prog, "-c", &conf], None)?;
    }
    for real in &tb.reals {
        wait_listening(&real.ns)?;
    }
    Ok(brokers)
}

fn wait_listening(ns: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let up = netns::within(ns, || {
            let to = SocketAddr::from(([127, 0, 0, 1], PORT));
            Ok(TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_ok())
        })?;
        if up {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("mosquitto in {ns} does not listen on {PORT}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One MQTT connection through the VIP.
pub struct Session {
    stream: TcpStream,
    /// The client id, also the session's own topic (`t/<id>`).
    pub id: String,
    /// The client side's port: how the reals' socket tables name it.
    pub port: u16,
    next_packet_id: u16,
}

/// A received PUBLISH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

fn with_len(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A packet: first byte, the remaining length (variable-length integer), body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A TCP connection from `src` (address and port) to `dst`: fixed source
/// ports make the flows, so which real each one hashes to, the same on
/// every run.
fn connect_from(src: SocketAddr, dst: SocketAddr) -> io::Result<TcpStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: all-zero bytes are a valid sockaddr_storage.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match a {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in.
                unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: 0,
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in6.
                unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        (ss, len as libc::socklen_t)
    }
    let family = if src.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // addresses outlive the calls.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let stream = TcpStream::from(fd);
        // Bounds connect() too.
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let one: libc::c_int = 1;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&stream);
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let (a, len) = sockaddr(src);
        if libc::bind(raw, &a as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let (a, len) = sockaddr(dst);
        if libc::connect(raw, &a as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Opens `n` sessions from client `c` to `vip`:[`PORT`], the i-th from
/// source port `first_sport + i`, ids `<prefix><i>`; each connected
/// (CONNACK) and subscribed to its own topic (SUBACK).
pub fn connect_many(
    tb: &Testbed,
    c: usize,
    vip: IpAddr,
    first_sport: u16,
    n: usize,
    prefix: &str,
) -> Result<Vec<Session>> {
    let client = tb.clients.get(c).context("no such client")?;
    let src = match vip {
        IpAddr::V4(_) => IpAddr::V4(client.v4),
        IpAddr::V6(_) => IpAddr::V6(client.v6),
    };
    let streams = netns::within(&client.ns, || {
        (0..n)
            .map(|i| {
                let sport = first_sport
                    .checked_add(i as u16)
                    .context("source ports past 65535")?;
                connect_from(SocketAddr::new(src, sport), SocketAddr::new(vip, PORT))
                    .with_context(|| format!("connection {i} from port {sport} to {vip}:{PORT}"))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut sessions = Vec::with_capacity(n);
    for (i, stream) in streams.into_iter().enumerate() {
        let mut s = Session::handshake(stream, format!("{prefix}{i}"))?;
        let topic = s.topic();
        s.subscribe(&topic)?;
        sessions.push(s);
    }
    Ok(sessions)
}

impl Session {
    fn handshake(stream: TcpStream, id: String) -> Result<Session> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let port = stream.local_addr()?.port();
        let mut s = Session {
            stream,
            id,
            port,
            next_packet_id: 1,
        };
        // CONNECT: "MQTT", level 4, clean session, keep-alive 600 s.
        let mut body = Vec::new();
        with_len(&mut body, b"MQTT");
        body.extend_from_slice(&[4, 0x02]);
        body.extend_from_slice(&600u16.to_be_bytes());
        with_len(&mut body, s.id.as_bytes());
        s.send(&packet(0x10, &body))?;
        let (kind, body) = s.read_packet()?;
        if kind != 0x20 || body.len() != 2 || body[1] != 0 {
            bail!(
                "{}: expected CONNACK accepted, got {kind:#x} {body:?}",
                s.id
            );
        }
        Ok(s)
    }

    /// The session's own topic.
    pub fn topic(&self) -> String {
        format!("t/{}", self.id)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .map_err(|e| broken(&self.id, "writing", e))
    }

    fn read_packet(&mut self) -> Result<(u8, Vec<u8>)> {
        let mut first = [0u8; 1];
        self.read_exact(&mut first)?;
        let mut len = 0usize;
        for shift in [0, 7, 14, 21] {
            let mut b = [0u8; 1];
            self.read_exact(&mut b)?;
            len |= ((b[0] & 0x7f) as usize) << shift;
            if b[0] & 0x80 == 0 {
                let mut body = vec![0u8; len];
                self.read_exact(&mut body)?;
                return Ok((first[0] & 0xf0, body));
            }
        }
        bail!("{}: malformed remaining length", self.id)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.stream
            .read_exact(buf)
            .map_err(|e| broken(&self.id, "reading", e))
    }

    /// SUBSCRIBE to `filter` at QoS 0; waits for the SUBACK.
    pub fn subscribe(&mut self, filter: &str) -> Result<()> {
        let pid = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
        let mut body = pid.to_be_bytes().to_vec();
        with_len(&mut body, filter.as_bytes());
        body.push(0);
        self.send(&packet(0x82, &body))?;
        let (kind, body) = self.read_packet()?;
        if kind != 0x90 || body.len() != 3 || body[..2] != pid.to_be_bytes() || body[2] != 0 {
            bail!(
                "{}: expected SUBACK for {filter}, got {kind:#x} {body:?}",
                self.id
            );
        }
        Ok(())
    }

    /// PUBLISH at QoS 0.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<()> {
        let mut body = Vec::new();
        with_len(&mut body, topic.as_bytes());
        body.extend_from_slice(payload);
        self.send(&packet(0x30, &body))
    }

    /// The next PUBLISH the broker sends (PINGRESPs are skipped).
    pub fn next_message(&mut self) -> Result<Message> {
        loop {
            let (kind, body) = self.read_packet()?;
            match kind {
                0xd0 => continue,
                0x30 if body.len() >= 2 => {
                    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
                    let topic = body.get(2..2 + n).context("short PUBLISH")?;
                    return Ok(Message {
                        topic: String::from_utf8_lossy(topic).into_owned(),
                        payload: body[2 + n..].to_vec(),
                    });
                }
                _ => bail!("{}: unexpected packet {kind:#x} {body:?}", self.id),
            }
        }
    }

    /// Publishes `payload` to the session's own topic and reads it back:
    /// one round trip through the balancer, the broker and direct return.
    pub fn echo(&mut self, payload: &[u8]) -> Result<()> {
        let topic = self.topic();
        self.publish(&topic, payload)?;
        let m = self.next_message()?;
        if m.topic != topic || m.payload != payload {
            bail!("{}: sent {payload:?} to {topic}, received {m:?}", self.id);
        }
        Ok(())
    }
}

/// An I/O error with the session and what it was doing; resets, closes and
/// timeouts stay recognizable with [`is_reset`].
fn broken(id: &str, doing: &str, e: io::Error) -> anyhow::Error {
    let what = match e.kind() {
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::UnexpectedEof => "closed by the peer",
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out",
        io::ErrorKind::BrokenPipe => "broken pipe",
        _ => "failed",
    };
    anyhow::Error::new(e).context(format!("{id}: {doing}: {what}"))
}

/// Whether `e` is a TCP reset (or a write after one).
pub fn is_reset(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            )
        })
}

/// Which real holds each established connection to [`PORT`]: client port
/// -> index into `tb.reals`, from each real's socket table.
pub fn sessions_by_real(tb: &Testbed) -> Result<HashMap<u16, usize>> {
    let mut by_port = HashMap::new();
    for (i, real) in tb.reals.iter().enumerate() {
        let out = tb.run(
            &real.ns,
            &[
                "ss",
                "-Htn",
                "state",
                "established",
                "sport",
                "=",
                &format!(":{PORT}"),
            ],
        )?;
        for line in out.lines() {
            let peer = line.split_whitespace().last().context("an ss line")?;
            let (_, port) = peer.rsplit_once(':').context("a peer address")?;
            let port: u16 = port.parse().with_context(|| format!("ss line {line:?}"))?;
            if let Some(other) = by_port.insert(port, i) {
                bail!("client port {port} is established on real{other} and real{i}");
            }
        }
    }
    Ok(by_port)
}

/// TCP connections reset in `ns` so far: `EstabResets` of /proc/net/snmp
/// (ESTABLISHED or CLOSE-WAIT straight to CLOSED, i.e. a reset).
pub fn estab_resets(tb: &Testbed, ns: &str) -> Result<u64> {
    let snmp = tb.run(ns, &["cat", "/proc/net/snmp"])?;
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (
        tcp.next().context("Tcp: names")?,
        tcp.next().context("Tcp: values")?,
    );
    let col = names
        .split_whitespace()
        .position(|n| n == "EstabResets")
        .context("no EstabResets column")?;
    values
        .split_whitespace()
        .nth(col)
        .context("short Tcp: line")?
        .parse()
        .context("EstabResets")
}
