//! Reading a node's metrics endpoint the way Prometheus and a load balancer's health check do:
//! one HTTP request per connection, the reply read until the server closes it. Tests and load
//! scenarios share it; `promtool` (from Prometheus) validates an exposition when it is installed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What Prometheus sends in `Accept` when it scrapes (OpenMetrics preferred).
pub const PROMETHEUS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One HTTP reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` as is and reads the reply until the server closes the connection.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> io::Result<Reply> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(raw)?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    let text = String::from_utf8(out).map_err(|_| bad("the reply is not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("the reply has no end of headers"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("the reply has no status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// `method path` with an optional `Accept`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> io::Result<Reply> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if let Some(accept) = accept {
        raw.push_str(&format!("Accept: {accept}\r\n"));
    }
    raw.push_str("\r\n");
    exchange(addr, raw.as_bytes())
}

/// The value of the sample `series` (name and labels exactly as exposed) in an exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?
            .split(' ')
            .next()?
            .trim()
            .parse()
            .ok()
    })
}

/// Runs `promtool check metrics` on `text`: `None` when promtool is not installed, else whether it
/// passed and what it said.
pub fn promtool(text: &str) -> Option<(bool, String)> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().ok()?;
    if !matches!(written, Some(Ok(()))) {
        return Some((false, "could not write to promtool".into()));
    }
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}
