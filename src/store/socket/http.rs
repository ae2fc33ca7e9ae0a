//! HTTP/1.1 over wazuh-db's Unix socket `queue/sockets/wdb-http.sock`, one connection per request.
//!
//! The server is local but not trusted to be well-behaved: every read is bounded in time (socket
//! timeouts) and in size (head, chunk lines, trailers, body), so a broken or hostile peer costs at
//! most a bounded amount of memory and an error naming what went wrong.

use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::store::unix;
use crate::store::StoreError;

/// Largest response head (status line and headers) accepted.
pub const HTTP_HEAD_MAX: usize = 64 * 1024;

/// Largest response body accepted.
pub const HTTP_BODY_MAX: usize = 256 * 1024 * 1024;

/// Largest chunk-size line (size, extensions, CRLF) accepted.
const CHUNK_LINE_MAX: usize = 4096;

/// Headers parsed per response; more is refused rather than silently ignored.
const HEADERS_MAX: usize = 64;

/// How a response body is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Errors of one request, each naming the socket.
struct Exchange<'a> {
    socket: &'a Path,
    timeout: Duration,
}

impl Exchange<'_> {
    fn path(&self) -> String {
        self.socket.display().to_string()
    }

    fn io(&self, step: &str, e: &io::Error) -> StoreError {
        let reason = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("{step}: no progress within {} ms", self.timeout.as_millis())
            }
            _ => format!("{step}: {e}"),
        };
        StoreError::Socket {
            path: self.path(),
            reason,
        }
    }

    fn protocol(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Http {
            path: self.path(),
            reason: reason.into(),
        }
    }

    fn too_large(&self, limit: usize) -> StoreError {
        StoreError::BodyTooLarge {
            path: self.path(),
            limit,
        }
    }
}

/// The origin-form target of `target`: `http://localhost/v1/x` and `/v1/x` both give `/v1/x`.
fn origin_form(target: &str) -> Option<&str> {
    let path = match target.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
            rest.find('/').map_or("/", |at| &rest[at..])
        }
        Some(_) => return None,
        None => target,
    };
    let clean = path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic());
    clean.then_some(path)
}

/// A method must be an HTTP token, or it would corrupt the request line.
fn valid_method(method: &str) -> bool {
    !method.is_empty()
        && method.len() <= 32
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn request_head(method: &str, path: &str, body: &[u8]) -> String {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n");
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    head
}

/// Sends one request on a fresh connection to `socket` and returns the status code and body.
pub fn request(
    socket: &Path,
    timeout: Duration,
    method: &str,
    target: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), StoreError> {
    let x = Exchange { socket, timeout };
    if !valid_method(method) {
        return Err(x.protocol(format!(
            "invalid request method '{}'",
            method.escape_debug()
        )));
    }
    let path = origin_form(target).ok_or_else(|| {
        x.protocol(format!(
            "invalid request target '{}'",
            target.escape_debug()
        ))
    })?;
    let stream = unix::connect_within(socket, timeout).map_err(|e| x.io("cannot connect", &e))?;
    let timeout = Some(timeout.max(Duration::from_millis(1)));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| x.io("cannot set timeouts", &e))?;
    let mut writer = &stream;
    writer
        .write_all(request_head(method, path, body).as_bytes())
        .and_then(|()| writer.write_all(body))
        .and_then(|()| writer.flush())
        .map_err(|e| x.io("sending the request failed", &e))?;
    read_response(&x, &stream, method == "HEAD", HTTP_BODY_MAX)
}

/// Reads a whole response from `stream`, the body bounded by `body_max`.
fn read_response(
    x: &Exchange,
    stream: &UnixStream,
    head_request: bool,
    body_max: usize,
) -> Result<(u16, Vec<u8>), StoreError> {
    let (status, framing, rest) = read_head(x, stream, head_request)?;
    let mut reader = BufReader::new(Cursor::new(rest).chain(stream));
    let body = match framing {
        Framing::None => Vec::new(),
        Framing::Length(len) => read_length(x, &mut reader, len, body_max)?,
        Framing::Chunked => read_chunked(x, &mut reader, body_max)?,
        Framing::UntilClose => read_until_close(x, &mut reader, body_max)?,
    };
    Ok((status, body))
}

/// Reads until a final (non-1xx) response head is complete: status, body framing, and the bytes
/// already received past the head.
fn read_head(
    x: &Exchange,
    mut stream: &UnixStream,
    head_request: bool,
) -> Result<(u16, Framing, Vec<u8>), StoreError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(used)) => {
                let status = response.code.unwrap_or_default();
                if (100..200).contains(&status) && status != 101 {
                    // An interim response: the final one follows.
                    buf.drain(..used);
                    continue;
                }
                let framing = framing(x, status, response.headers, head_request)?;
                return Ok((status, framing, buf.split_off(used)));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(x.protocol(format!("malformed response head: {e}"))),
        }
        let room = HTTP_HEAD_MAX.saturating_sub(buf.len()).min(chunk.len());
        if room == 0 {
            return Err(x.protocol(format!("response head larger than {HTTP_HEAD_MAX} bytes")));
        }
        match stream.read(&mut chunk[..room]) {
            Ok(0) => {
                return Err(x.protocol(format!(
                    "connection closed after {} bytes, before the response head was complete",
                    buf.len()
                )))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(x.io("reading the response head failed", &e)),
        }
    }
}

/// Chooses how the body is delimited, as RFC 9112 §6.3 orders it.
fn framing(
    x: &Exchange,
    status: u16,
    headers: &[httparse::Header],
    head_request: bool,
) -> Result<Framing, StoreError> {
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::None);
    }
    if let Some(last) = header_values(headers, "transfer-encoding").last() {
        let chunked = last.rsplit(',').next().map(str::trim) == Some("chunked");
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in header_values(headers, "content-length") {
        for item in value.split(',').map(str::trim) {
            let parsed = (!item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()))
                .then(|| item.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| x.protocol(format!("invalid Content-Length '{item}'")))?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(x.protocol("conflicting Content-Length headers"));
            }
            length = Some(parsed);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// The values of every `name` header, trimmed and lowercased.
fn header_values(headers: &[httparse::Header], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
        .collect()
}

fn read_length(
    x: &Exchange,
    reader: &mut impl Read,
    len: u64,
    body_max: usize,
) -> Result<Vec<u8>, StoreError> {
    if len > body_max as u64 {
        return Err(x.too_large(body_max));
    }
    let mut body = Vec::new();
    reader
        .take(len)
        .read_to_end(&mut body)
        .map_err(|e| x.io("reading the response body failed", &e))?;
    if (body.len() as u64) < len {
        return Err(x.protocol(format!(
            "connection closed after {} of {len} body bytes",
            body.len()
        )));
    }
    Ok(body)
}

fn read_until_close(
    x: &Exchange,
    reader: &mut impl Read,
    body_max: usize,
) -> Result<Vec<u8>, StoreError> {
    let mut body = Vec::new();
    reader
        .take(body_max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| x.io("reading the response body failed", &e))?;
    if body.len() > body_max {
        return Err(x.too_large(body_max));
    }
    Ok(body)
}

/// Reads one CRLF- (or LF-) terminated line of at most `max` bytes.
fn read_line(
    x: &Exchange,
    reader: &mut impl BufRead,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, StoreError> {
    let mut line = Vec::new();
    reader
        .take(max as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| x.io(&format!("reading the {what} failed"), &e))?;
    if line.ends_with(b"\n") {
        Ok(line)
    } else if line.len() >= max {
        Err(x.protocol(format!("{what} longer than {max} bytes")))
    } else {
        Err(x.protocol(format!("connection closed in the middle of the {what}")))
    }
}

fn read_chunked(
    x: &Exchange,
    reader: &mut impl BufRead,
    body_max: usize,
) -> Result<Vec<u8>, StoreError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(x, reader, CHUNK_LINE_MAX, "chunk size line")?;
        let size = match httparse::parse_chunk_size(&line) {
            Ok(httparse::Status::Complete((_, size))) => size,
            _ => {
                let shown = String::from_utf8_lossy(&line[..line.len().min(32)]).into_owned();
                return Err(x.protocol(format!("invalid chunk size line '{}'", shown.trim_end())));
            }
        };
        if size == 0 {
            skip_trailers(x, reader)?;
            return Ok(body);
        }
        if size > (body_max - body.len()) as u64 {
            return Err(x.too_large(body_max));
        }
        let before = body.len();
        reader
            .take(size)
            .read_to_end(&mut body)
            .map_err(|e| x.io("reading a chunk failed", &e))?;
        if ((body.len() - before) as u64) < size {
            return Err(x.protocol("connection closed in the middle of a chunk"));
        }
        let end = read_line(x, reader, 2, "chunk terminator")?;
        if end != b"\r\n" && end != b"\n" {
            return Err(x.protocol("chunk not followed by CRLF"));
        }
    }
}

/// Skips the trailer section after the last chunk, up to its empty line.
fn skip_trailers(x: &Exchange, reader: &mut impl BufRead) -> Result<(), StoreError> {
    let mut total = 0;
    loop {
        let line = read_line(x, reader, HTTP_HEAD_MAX, "trailer section")?;
        if line == b"\r\n" || line == b"\n" {
            return Ok(());
        }
        total += line.len();
        if total > HTTP_HEAD_MAX {
            return Err(x.protocol(format!("trailer section larger than {HTTP_HEAD_MAX} bytes")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// A response served by a peer that writes `raw` and closes, read with a small body limit.
    fn respond(raw: &'static [u8], body_max: usize) -> Result<(u16, Vec<u8>), StoreError> {
        let (client, mut server) = UnixStream::pair().expect("pair");
        let writer = thread::spawn(move || {
            let _ = server.write_all(raw);
        });
        let x = Exchange {
            socket: Path::new("/test/wdb-http.sock"),
            timeout: Duration::from_secs(2),
        };
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let result = read_response(&x, &client, false, body_max);
        writer.join().expect("writer");
        result
    }

    #[test]
    fn targets_keep_only_the_path() {
        assert_eq!(origin_form("/v1/agents/sync"), Some("/v1/agents/sync"));
        assert_eq!(
            origin_form("http://localhost/v1/agents/sync"),
            Some("/v1/agents/sync")
        );
        assert_eq!(origin_form("http://localhost"), Some("/"));
        assert_eq!(origin_form("ftp://localhost/x"), None);
        assert_eq!(origin_form("/v1 x"), None);
        assert_eq!(origin_form("/v1\r\nX: y"), None);
        assert!(valid_method("POST") && !valid_method("GET /") && !valid_method(""));
    }

    #[test]
    fn request_head_has_the_headers_wazuh_db_expects() {
        assert_eq!(
            request_head("POST", "/v1/agents/sync", b"{}"),
            "POST /v1/agents/sync HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
        assert!(!request_head("GET", "/", b"").contains("Content-Type"));
    }

    #[test]
    fn bodies_by_length_chunks_and_close() {
        let (status, body) =
            respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra", 100).expect("length");
        assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                        3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(respond(chunked, 100).expect("chunked").1, b"abcde");
        let close = b"HTTP/1.1 404 Not Found\r\n\r\nno such route";
        assert_eq!(
            respond(close, 100).expect("close"),
            (404, b"no such route".to_vec())
        );
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(respond(interim, 100).expect("interim"), (204, Vec::new()));
    }

    #[test]
    fn oversized_and_malformed_responses_are_refused() {
        let long = b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n";
        assert!(matches!(
            respond(long, 100),
            Err(StoreError::BodyTooLarge { limit: 100, .. })
        ));
        let chunks = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n";
        assert!(matches!(
            respond(chunks, 63),
            Err(StoreError::BodyTooLarge { .. })
        ));
        let eof = b"HTTP/1.1 200 OK\r\n\r\n0123456789";
        assert!(matches!(
            respond(eof, 9),
            Err(StoreError::BodyTooLarge { .. })
        ));
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let error = respond(short, 100).expect_err("short").to_string();
        assert!(error.contains("after 3 of 10 body bytes"), "{error}");
        let bad_size = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let error = respond(bad_size, 100).expect_err("bad chunk").to_string();
        assert!(error.contains("invalid chunk size line 'zz'"), "{error}");
        let conflict = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        assert!(respond(conflict, 100).is_err());
        let garbage = b"SMTP ready\r\n\r\n";
        let error = respond(garbage, 100).expect_err("garbage").to_string();
        assert!(
            error.contains("/test/wdb-http.sock: malformed response head"),
            "{error}"
        );
    }

    #[test]
    fn endless_head_is_cut_at_the_limit() {
        let (client, mut server) = UnixStream::pair().expect("pair");
        let writer = thread::spawn(move || {
            let _ = server.write_all(b"HTTP/1.1 200 OK\r\nX-Filler: ");
            for _ in 0..100 {
                if server.write_all(&[b'a'; 1024]).is_err() {
                    break;
                }
            }
        });
        let x = Exchange {
            socket: Path::new("/test/wdb-http.sock"),
            timeout: Duration::from_secs(2),
        };
        let error = read_response(&x, &client, false, 100).expect_err("head too large");
        drop(client);
        writer.join().expect("writer");
        let text = error.to_string();
        assert!(
            text.contains("response head larger than 65536 bytes"),
            "{text}"
        );
    }
}
