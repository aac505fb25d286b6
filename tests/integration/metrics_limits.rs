//! The metrics endpoint against unfriendly clients: a client sending a byte
//! at a time must not keep another scraper waiting, and a huge request line
//! must be cut off at the head limit (an error answer, then close) instead
//! of being buffered. The endpoint is served over a pin directory that does
//! not exist, so it answers `katran_dataplane_pinned 0`; what is checked is
//! the HTTP side. No privileges needed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Generous: answers take milliseconds.
const WAIT: Duration = Duration::from_secs(30);

fn server() -> SocketAddr {
    let pins =
        std::env::temp_dir().join(format!("katran-test-{}-metrics-absent", std::process::id()));
    katran::views::metrics::serve("127.0.0.1:0".parse().expect("addr"), pins, None).expect("serve")
}

/// Everything the server sends until it closes.
fn read_all(conn: &mut TcpStream) -> String {
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the answer: {e} (got {got:?})"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn scrape(addr: SocketAddr) -> String {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    read_all(&mut conn)
}

#[test]
fn a_slow_client_does_not_block_other_scrapers() {
    let addr = server();
    // A client that sends its request a byte at a time, and never finishes
    // while the scrapers run.
    let mut slow = TcpStream::connect(addr).expect("connect");
    let stop = Arc::new(AtomicBool::new(false));
    let dribble = {
        let mut slow = slow.try_clone().expect("clone");
        let stop = stop.clone();
        std::thread::spawn(move || {
            for b in b"GET /metrics HTTP/1.1\r\nHost: slow".iter().cycle() {
                if stop.load(Ordering::SeqCst) || slow.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    for _ in 0..3 {
        // no dataplane behind this server: an answer that says so
        let got = scrape(addr);
        assert!(
            got.starts_with("HTTP/1.1 200 ") && got.contains("\nkatran_dataplane_pinned 0\n"),
            "{got}"
        );
    }
    // The slow client has had no answer yet: the scrapers did not wait for it.
    slow.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 16];
    match slow.read(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the slow client was answered before the scrapers: {other:?}"),
    }
    stop.store(true, Ordering::SeqCst);
    dribble.join().expect("dribble");
}

#[test]
fn a_huge_request_line_is_cut_off_at_the_limit() {
    let addr = server();
    // Just over the limit, then nothing more: the answer is 431.
    let mut conn = TcpStream::connect(addr).expect("connect");
    let mut line = b"GET /".to_vec();
    line.resize(katran::views::metrics_server::MAX_HEAD + 1024, b'a');
    conn.write_all(&line).expect("request");
    let got = read_all(&mut conn);
    assert!(got.starts_with("HTTP/1.1 431 "), "{got}");

    // 64 MiB without an end: the server stops reading after the limit, so
    // the client cannot send it all (the connection is closed under it).
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_write_timeout(Some(WAIT)).expect("timeout");
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    let total = 64 << 20;
    let cut = loop {
        if sent >= total {
            break None;
        }
        match conn.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => break Some(e),
        }
    };
    assert!(
        cut.is_some(),
        "the server took all {total} bytes of a request line"
    );
    println!("huge request line: cut off after {sent} bytes sent: {cut:?}");
}
