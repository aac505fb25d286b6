//! Two namespaces joined by a veth: `a` (the balancer host, interface `va`,
//! 10.50.0.1/24, fd00:50::1/64) routes 10.60.0.0/24 and fd00:60::/64 via
//! `b` (interface `vb`, .2 / ::2). Dropping the [`Pair`] (also while
//! panicking) removes the health-check program and its pins, and deletes
//! both namespaces. Frames are captured in `b` with an AF_PACKET socket and
//! sent from `a` by UDP sockets carrying a socket mark.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{netns, Filter};

pub struct Pair {
    pub a: String,
    pub b: String,
    /// A bpffs directory of this test's own (the `pin_dir`).
    pub pin_dir: PathBuf,
}

const SYSCTLS: &[&str] = &[
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
];

impl Pair {
    pub fn new() -> Result<Pair> {
        netns::delete_stale();
        let tag = netns::unique_tag();
        let pair = Pair {
            a: format!("{tag}-hca"),
            b: format!("{tag}-hcb"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/{tag}-hc")),
        };
        for ns in [&pair.a, &pair.b] {
            netns::add(ns)?;
            let mut args = vec!["sysctl", "-q", "-w"];
            args.extend_from_slice(SYSCTLS);
            netns::exec(ns, &args)?;
        }
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        netns::ip_batch(
            &pair.a,
            &lines(&[
                &format!("link add va type veth peer name vb netns {}", pair.b),
                "link add va2 type veth peer name vb2",
                "link set lo up",
                "link set va up",
                "link set va2 up",
                "link set vb2 up",
                "addr add 10.50.0.1/24 dev va",
                "addr add fd00:50::1/64 dev va nodad",
                "route add 10.60.0.0/24 via 10.50.0.2",
                "route add fd00:60::/64 via fd00:50::2",
            ]),
        )?;
        netns::ip_batch(
            &pair.b,
            &lines(&[
                "link set lo up",
                "link set vb up",
                "addr add 10.50.0.2/24 dev vb",
                "addr add fd00:50::2/64 dev vb nodad",
            ]),
        )?;
        // Checksums are finished in software before the frame leaves, so
        // the capture sees what a wire would carry.
        netns::exec(&pair.a, &["ethtool", "-K", "va", "tx", "off"])?;
        Ok(pair)
    }

    /// The MAC address of `iface` in `ns`.
    pub fn mac(&self, ns: &str, iface: &str) -> Result<[u8; 6]> {
        let s = netns::exec(ns, &["cat", &format!("/sys/class/net/{iface}/address")])?;
        let mut mac = [0u8; 6];
        let parts: Vec<&str> = s.trim().split(':').collect();
        if parts.len() != 6 {
            bail!("bad MAC {s:?}");
        }
        for (m, p) in mac.iter_mut().zip(parts) {
            *m = u8::from_str_radix(p, 16).context("MAC byte")?;
        }
        Ok(mac)
    }

    /// Runs `f` on a thread inside namespace `a`.
    pub fn in_a<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        netns::within(&self.a, f)
    }

    /// An AF_PACKET socket receiving every frame arriving on `vb` in `b`.
    pub fn capture(&self) -> Result<Capture> {
        netns::within(&self.b, || {
            let idx = katran::kernel::bpf::attach::ifindex("vb")?;
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket creation.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
            }
            // SAFETY: a fresh descriptor we now own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: zeroed sockaddr_ll is valid; fields set below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = idx as i32;
            // SAFETY: a valid address of the given length.
            let ret = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if ret != 0 {
                return Err(std::io::Error::last_os_error()).context("binding to vb");
            }
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            // SAFETY: a valid option value of the given length.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    size_of::<libc::timeval>() as u32,
                )
            };
            Ok(Capture { fd })
        })
    }

    /// Sends `payload` from namespace `a` to `dst` by UDP, marked with
    /// `mark` (0: no mark set).
    pub fn send(&self, dst: SocketAddr, mark: u32, payload: &[u8]) -> Result<()> {
        netns::within(&self.a, || {
            let bind = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let sock = UdpSocket::bind(bind)?;
            if mark != 0 {
                // SAFETY: a valid option value of the given length.
                let ret = unsafe {
                    libc::setsockopt(
                        sock.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_MARK,
                        (&mark as *const u32).cast(),
                        4,
                    )
                };
                if ret != 0 {
                    return Err(std::io::Error::last_os_error()).context("SO_MARK");
                }
            }
            sock.send_to(payload, dst).context("sending")?;
            Ok(())
        })
    }
}

impl Pair {
    /// Starts a TCP connection from namespace `a` to `dst` with socket
    /// mark `mark`; the socket (returned) keeps sending SYNs while open.
    pub fn connect(&self, dst: SocketAddr, mark: u32) -> Result<OwnedFd> {
        netns::within(&self.a, || {
            let family = if dst.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            // SAFETY: plain socket creation.
            let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("TCP socket");
            }
            // SAFETY: a fresh descriptor we now own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: a valid option value of the given length.
            let ret = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_MARK,
                    (&mark as *const u32).cast(),
                    4,
                )
            };
            if ret != 0 {
                return Err(std::io::Error::last_os_error()).context("SO_MARK");
            }
            let (addr, len) = sockaddr(dst);
            // SAFETY: a valid address of the given length.
            let ret = unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_storage).cast(),
                    len,
                )
            };
            let err = std::io::Error::last_os_error();
            if ret != 0 && err.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(err).context("connect");
            }
            Ok(fd)
        })
    }
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, u32) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            (ss, size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            (ss, size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let pin_dir = self.pin_dir.clone();
        let _ = netns::within(&self.a, move || katran::kernel::markfwd::down(&pin_dir));
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        netns::delete(&self.a);
        netns::delete(&self.b);
    }
}

pub struct Capture {
    fd: OwnedFd,
}

impl Capture {
    /// The first frame each of `wanted` accepts, waiting until every one
    /// has one or `deadline` passes.
    pub fn collect(&self, wanted: &[Filter<'_>], deadline: Duration) -> Vec<Option<Vec<u8>>> {
        let mut found: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
        let end = Instant::now() + deadline;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < end && found.iter().any(Option::is_none) {
            // SAFETY: a buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let frame = &buf[..n as usize];
            for (slot, accepts) in found.iter_mut().zip(wanted) {
                if slot.is_none() && accepts(frame) {
                    *slot = Some(frame.to_vec());
                }
            }
        }
        found
    }
}

/// `addr:port` as a socket address.
pub fn sa(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr.parse::<IpAddr>().expect("literal"), port)
}
