//! The HTTP side of `/metrics`, made safe against the clients it serves:
//! each connection has its own thread (up to [`MAX_CONNECTIONS`] at once,
//! further ones are refused at once), must send its request head within
//! [`HEAD_DEADLINE`] and in at most [`MAX_HEAD`] bytes, and gets its answer
//! under a write timeout. So one slow or hostile client can neither block
//! other scrapers nor make the daemon buffer an unbounded request. A small
//! hand-written server (GET and HEAD, `Connection: close`) is enough for
//! this; it keeps an HTTP crate and its dependencies out of a root daemon.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections served at once; more are closed without an answer.
pub const MAX_CONNECTIONS: usize = 16;
/// The request line and headers together; beyond, 431 and close.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time for a client to send its whole request head; beyond, 408.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// Time for a client to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After an early answer, what is still read (and dropped) so the client
/// sees the answer rather than a reset: at most this much, this long.
const DRAIN: (usize, Duration) = (64 * 1024, Duration::from_secs(1));

/// An answer: status line text, content type and body.
pub struct Answer {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

/// Plain text, for errors and the index.
pub const TEXT: &str = "text/plain; charset=utf-8";

impl Answer {
    pub fn text(status: &'static str, body: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: TEXT,
            body: body.into(),
        }
    }
}

/// What a client asked: method, path, and its `Accept` header.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub accept: String,
}

impl Request {
    /// The request line and headers of a head (header names are matched
    /// without regard to case).
    pub fn parse(head: &str) -> Request {
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or_default().split_whitespace();
        let method = first.next().unwrap_or_default().to_string();
        let path = first.next().unwrap_or_default().to_string();
        let accept = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        Request {
            method,
            path,
            accept,
        }
    }
}

/// Serves `listener` forever, calling `handle` with each request.
pub fn run<H>(listener: TcpListener, handle: H)
where
    H: Fn(&Request) -> Answer + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming().flatten() {
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            log::debug!("metrics: {MAX_CONNECTIONS} connections open, one more refused");
            continue;
        }
        let slot = Slot(active.clone());
        let handle = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = serve_one(stream, &*handle) {
                    log::debug!("metrics request: {e}");
                }
            });
        if let Err(e) = spawned {
            log::warn!("metrics: cannot start a thread: {e}");
        }
    }
}

/// Frees a connection slot when the connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What reading a request head came to.
enum Head {
    Request(Request),
    Early(Answer),
}

fn serve_one(mut stream: TcpStream, handle: &dyn Fn(&Request) -> Answer) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let (answer, early, head_only) = match read_head(&mut stream)? {
        Head::Request(r) => (handle(&r), false, r.method == "HEAD"),
        Head::Early(a) => (a, true, false),
    };
    write!(
        stream,
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        answer.status,
        answer.content_type,
        answer.body.len(),
        if head_only { "" } else { &answer.body }
    )?;
    stream.flush()?;
    if early {
        drain(&mut stream);
    }
    Ok(())
}

/// Reads until the blank line ending the head, within the limits.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&head) {
            let text = String::from_utf8_lossy(head.get(..end).unwrap_or_default());
            return Ok(Head::Request(Request::parse(&text)));
        }
        if head.len() > MAX_HEAD {
            return Ok(Head::Early(Answer::text(
                "431 Request Header Fields Too Large",
                format!("the request head is limited to {MAX_HEAD} bytes\n"),
            )));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(timed_out());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => {
                return Ok(Head::Early(Answer::text(
                    "400 Bad Request",
                    "the request ended before its head did\n",
                )))
            }
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(timed_out())
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn timed_out() -> Head {
    Head::Early(Answer::text(
        "408 Request Timeout",
        format!(
            "the request head must arrive within {} s\n",
            HEAD_DEADLINE.as_secs()
        ),
    ))
}

/// Where the head ends (the blank line), if it has.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// After an early answer: stop sending, read a bounded amount more so the
/// client is not reset before it reads the answer, then close.
fn drain(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(DRAIN.1));
    let deadline = Instant::now() + DRAIN.1;
    let mut buf = [0u8; 4096];
    let mut read = 0;
    while read < DRAIN.0 && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{head_end, Request};

    #[test]
    fn requests_keep_method_path_and_accept() {
        let r = Request::parse(
            "HEAD /metrics HTTP/1.1\r\nHost: x\r\nACCEPT: application/openmetrics-text; version=1.0.0\r\n",
        );
        assert_eq!(r.method, "HEAD");
        assert_eq!(r.path, "/metrics");
        assert_eq!(r.accept, "application/openmetrics-text; version=1.0.0");
        assert_eq!(Request::parse("").path, "");
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(23));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
