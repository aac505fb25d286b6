//! One probe of one real: a connection to the VIP from a socket carrying
//! the real's mark, so the tc forwarding plane sends it to that real
//! exactly the way the balancer would — it tests what clients use.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::spec::{HealthCheck, Probe};

/// Runs the check once; `Err` says what failed.
pub fn run(check: &HealthCheck, vip: IpAddr, mark: u32) -> Result<(), String> {
    let deadline = Instant::now() + check.timeout;
    let addr = SocketAddr::new(vip, check.port);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("socket: {e}"))?;
    socket
        .set_mark(mark)
        .map_err(|e| format!("SO_MARK {mark}: {e}"))?;
    socket
        .connect_timeout(&SockAddr::from(addr), check.timeout)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let mut stream: TcpStream = socket.into();
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream
        .set_read_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    match &check.probe {
        Probe::Tcp => Ok(()),
        Probe::Http { path, expect } => http(&mut stream, vip, check.port, path, *expect),
        Probe::Mqtt => mqtt(&mut stream),
    }
}

fn http(s: &mut TcpStream, vip: IpAddr, port: u16, path: &str, expect: u16) -> Result<(), String> {
    let host = match vip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: katran-healthcheck\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("reading the status line: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let code: Option<u16> = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok());
    match code {
        Some(c) if c == expect => Ok(()),
        Some(c) => Err(format!("HTTP status {c}, expected {expect}")),
        None => Err(format!(
            "not an HTTP response: {:?}",
            line.lines().next().unwrap_or("")
        )),
    }
}

/// MQTT 3.1.1 CONNECT (clean session, client id "katran-hc"), then
/// DISCONNECT: what a broker must accept to be healthy.
fn mqtt(s: &mut TcpStream) -> Result<(), String> {
    const CLIENT_ID: &[u8] = b"katran-hc";
    let mut connect = vec![0x10, (10 + 2 + CLIENT_ID.len()) as u8];
    connect.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10]);
    connect.extend_from_slice(&(CLIENT_ID.len() as u16).to_be_bytes());
    connect.extend_from_slice(CLIENT_ID);
    s.write_all(&connect)
        .map_err(|e| format!("sending CONNECT: {e}"))?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack)
        .map_err(|e| format!("reading CONNACK: {e}"))?;
    if ack[0] != 0x20 || ack[1] != 2 {
        return Err(format!("not a CONNACK: {ack:02x?}"));
    }
    if ack[3] != 0 {
        return Err(format!(
            "CONNACK refused the connection (return code {})",
            ack[3]
        ));
    }
    let _ = s.write_all(&[0xe0, 0x00]);
    Ok(())
}
