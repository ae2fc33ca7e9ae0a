//! The HTTP endpoint: `/metrics`, `/healthz` and `/readyz` on one thread of its own.
//!
//! Deliberately small and bounded rather than general: one connection is served at a time, start
//! to finish, then closed (`Connection: close`); a request head is at most 8 KiB and must arrive
//! within 5 s of the connection being accepted; the answer must be taken by the client within
//! 10 s; request bodies are never read into memory. A slow or silent client therefore holds the
//! thread for at most those deadlines, and the daemon's event loop is never involved.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::registry::{Format, Metrics};

/// Largest request head (request line and headers) accepted.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers accepted in one request.
const MAX_HEADERS: usize = 48;
/// Time a client has, from its connection being accepted, to send its request head.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Time a client has to take the whole answer.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// A request body is discarded, up to this much, before the connection closes (so the client
/// reads the answer instead of a reset).
const MAX_DISCARD_BYTES: u64 = 1024 * 1024;
/// Time spent discarding a request body.
const DISCARD_DEADLINE: Duration = Duration::from_secs(1);

/// The running endpoint. Dropping it stops the server: the thread finishes the request it is
/// serving (bounded by the deadlines above), closes the listening socket and exits before `drop`
/// returns.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address actually bound (with the real port when `0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the server and waits for its thread (the same as dropping the handle).
    pub fn stop(self) {}
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // Closing our end makes the server's end readable (end of file): that is the stop signal.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves [`Metrics::global`] on `listen`. Binds before returning, so a bad or busy address is
/// reported to the caller at once.
pub fn serve(listen: SocketAddr) -> io::Result<ServerHandle> {
    serve_metrics(listen, Metrics::global())
}

/// Serves `metrics` on `listen` (a private metric set, as tests use).
pub fn serve_metrics(listen: SocketAddr, metrics: &'static Metrics) -> io::Result<ServerHandle> {
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let (stop, stop_rx) = UnixStream::pair()?;
    let thread = thread::Builder::new()
        .name("clusterd-metrics".to_owned())
        .spawn(move || run(listener, stop_rx, metrics))?;
    Ok(ServerHandle {
        local_addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Waits for a connection or the stop signal, and serves connections one by one.
fn run(listener: TcpListener, stop: UnixStream, metrics: &'static Metrics) {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two initialised pollfd structures that lives for the
        // whole call, and both descriptors stay open for as long as this function runs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                thread::sleep(Duration::from_millis(50));
            }
            continue;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents == 0 {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => serve_connection(stream, metrics),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            // Out of descriptors and the like: back off instead of spinning on a ready listener.
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// What the server keeps of a request head.
#[derive(Debug)]
struct Head {
    method: String,
    path: String,
    accept: Option<String>,
    /// The body announced (`Content-Length`, or chunked), which is discarded.
    has_body: bool,
}

/// Parses a complete head from `buf`; `Ok(None)` while more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Status> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let content_length = header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let chunked = header("transfer-encoding").is_some();
            Ok(Some(Head {
                method: request.method.unwrap_or("").to_owned(),
                path: request.path.unwrap_or("").to_owned(),
                accept: header("accept"),
                has_body: content_length > 0 || chunked,
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(Status::HeaderTooLarge),
        Err(_) => Err(Status::BadRequest),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeaderTooLarge,
    Unavailable,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::RequestTimeout => "408 Request Timeout",
            Status::HeaderTooLarge => "431 Request Header Fields Too Large",
            Status::Unavailable => "503 Service Unavailable",
        }
    }
}

#[derive(Debug)]
struct Response {
    status: Status,
    content_type: &'static str,
    body: String,
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    fn text(status: Status, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: TEXT,
            body: body.into(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status.line(),
            self.content_type,
            self.body.len()
        );
        if self.status == Status::MethodNotAllowed {
            head.push_str("Allow: GET\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// The answer to a parsed request.
fn route(head: &Head, metrics: &Metrics) -> Response {
    let path = head.path.split(['?', '#']).next().unwrap_or("");
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return Response::text(Status::NotFound, "not found\n");
    }
    if head.method != "GET" {
        return Response::text(Status::MethodNotAllowed, "method not allowed\n");
    }
    match path {
        "/metrics" => {
            let format = Format::from_accept(head.accept.as_deref());
            Response {
                status: Status::Ok,
                content_type: format.content_type(),
                body: metrics.encode(format),
            }
        }
        "/healthz" => Response::text(Status::Ok, "ok"),
        _ => match metrics.readiness() {
            Ok(()) => Response::text(Status::Ok, "ready"),
            Err(reason) => Response::text(Status::Unavailable, format!("not ready: {reason}")),
        },
    }
}

/// Reads one request head, answers it and closes the connection, all within the deadlines.
fn serve_connection(mut stream: TcpStream, metrics: &Metrics) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + READ_DEADLINE;
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut len = 0;
    let head = loop {
        if len > 0 {
            match parse_head(&buf[..len]) {
                Ok(Some(head)) => break Ok(head),
                Ok(None) => {}
                Err(status) => break Err(status),
            }
        }
        if len == buf.len() {
            break Err(Status::HeaderTooLarge);
        }
        let Some(left) = remaining(deadline) else {
            break Err(Status::RequestTimeout);
        };
        if stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) => return,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break Err(Status::RequestTimeout);
            }
            Err(_) => return,
        }
    };
    // After a request with a body, or a head refused unread, the client may still be sending:
    // closing with unread bytes would reset the connection before it reads the answer.
    let (response, discard) = match head {
        Ok(head) => (route(&head, metrics), head.has_body),
        Err(status) => (
            Response::text(status, format!("{}\n", status.line())),
            status != Status::RequestTimeout,
        ),
    };
    if write_all_by(
        &mut stream,
        &response.bytes(),
        Instant::now() + WRITE_DEADLINE,
    )
    .is_err()
    {
        return;
    }
    if discard {
        discard_input(&mut stream);
    }
}

/// Time left until `deadline`, or `None` once it has passed.
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// Writes `data` entirely, or fails once `deadline` passes.
fn write_all_by(stream: &mut TcpStream, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
        stream.set_write_timeout(Some(left))?;
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Ends our side and reads (and drops) what the client still sends, bounded in size and time.
fn discard_input(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + DISCARD_DEADLINE;
    let mut sink = [0u8; 8192];
    let mut total = 0u64;
    while total < MAX_DISCARD_BYTES {
        let Some(left) = remaining(deadline) else {
            return;
        };
        if stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, path: &str) -> Head {
        Head {
            method: method.to_owned(),
            path: path.to_owned(),
            accept: None,
            has_body: false,
        }
    }

    #[test]
    fn routes() {
        let m = Metrics::new();
        assert_eq!(route(&head("GET", "/healthz"), &m).body, "ok");
        let r = route(&head("GET", "/readyz"), &m);
        assert_eq!(
            (r.status, r.body.as_str()),
            (Status::Unavailable, "not ready: starting")
        );
        m.set_ready(true, "");
        let r = route(&head("GET", "/readyz?verbose"), &m);
        assert_eq!((r.status, r.body.as_str()), (Status::Ok, "ready"));
        assert_eq!(route(&head("GET", "/"), &m).status, Status::NotFound);
        assert_eq!(
            route(&head("GET", "/metricsx"), &m).status,
            Status::NotFound
        );
        assert_eq!(route(&head("POST", "/nope"), &m).status, Status::NotFound);
        let r = route(&head("POST", "/metrics"), &m);
        assert_eq!(r.status, Status::MethodNotAllowed);
        assert!(String::from_utf8(r.bytes())
            .unwrap()
            .contains("\r\nAllow: GET\r\n"));
        assert_eq!(
            route(&head("HEAD", "/healthz"), &m).status,
            Status::MethodNotAllowed
        );
        let r = route(&head("GET", "/metrics"), &m);
        assert_eq!(r.content_type, Format::PrometheusText.content_type());
        let mut h = head("GET", "/metrics");
        h.accept = Some("application/openmetrics-text; version=1.0.0".to_owned());
        let r = route(&h, &m);
        assert_eq!(
            r.content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert!(r.body.ends_with("# EOF\n"));
    }

    #[test]
    fn parses_heads() {
        assert!(parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        let h = parse_head(b"GET /metrics HTTP/1.1\r\nAccept: text/plain\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.method.as_str(), h.path.as_str()), ("GET", "/metrics"));
        assert_eq!(h.accept.as_deref(), Some("text/plain"));
        assert!(!h.has_body);
        let h = parse_head(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert!(h.has_body);
        assert_eq!(
            parse_head(b"\x00\x01 garbage\r\n\r\n").unwrap_err(),
            Status::BadRequest
        );
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_head(req.as_bytes()).unwrap_err(),
            Status::HeaderTooLarge
        );
    }
}
