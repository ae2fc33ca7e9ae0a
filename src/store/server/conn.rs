//! One client connection of a [`super::WdbServer`]: framed commands in, framed replies out, in turn.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Shared;
use crate::store::wire::{self, HEADER_LEN, MAX_MESSAGE};
use crate::store::{WdbReply, MAX_PAYLOAD};

/// How a read at a frame boundary ended.
enum Wait {
    /// The first byte of a frame arrived.
    Byte,
    /// The client closed, the server is stopping, or the socket failed: end the connection.
    End,
}

/// Serves commands from `stream` until the client leaves, breaks the framing or stalls mid-frame.
pub(super) fn serve(mut stream: UnixStream, shared: &Shared) {
    let limits = shared.limits;
    if let Err(e) = stream.set_write_timeout(Some(limits.write_timeout.max(MIN_TIMEOUT))) {
        tracing::debug!("wazuh-db socket: cannot set the write timeout: {e}");
        return;
    }
    loop {
        let mut header = [0u8; HEADER_LEN];
        if let Wait::End = wait_for_frame(&stream, &mut header[..1], shared) {
            return;
        }
        let deadline = Instant::now() + limits.read_timeout;
        if let Err(e) = read_by(&stream, &mut header[1..], deadline) {
            tracing::debug!("wazuh-db socket: dropping a client mid-header: {e}");
            return;
        }
        let len = match wire::frame_len(&header) {
            Ok(len) => len.unwrap_or_default(),
            Err(_) => {
                let len = u32::from_le_bytes(header);
                let text = format!(
                    "err Command of {len} bytes exceeds the maximum of {} bytes",
                    MAX_MESSAGE - 1
                );
                let _ = send(&mut stream, &text);
                return;
            }
        };
        let mut body = vec![0u8; len];
        if let Err(e) = read_by(&stream, &mut body, deadline) {
            tracing::debug!("wazuh-db socket: dropping a client mid-command: {e}");
            return;
        }
        let reply = answer(shared, &body);
        if let Err(e) = send(&mut stream, &reply) {
            tracing::debug!("wazuh-db socket: cannot send a reply: {e}");
            return;
        }
    }
}

/// Socket timeouts of zero are refused by the system; this is the smallest we set.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Waits for the first byte of the next frame, for as long as the client stays and the server runs.
fn wait_for_frame(mut stream: &UnixStream, first: &mut [u8], shared: &Shared) -> Wait {
    if stream
        .set_read_timeout(Some(shared.limits.read_timeout.max(MIN_TIMEOUT)))
        .is_err()
    {
        return Wait::End;
    }
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return Wait::End;
        }
        match stream.read(first) {
            Ok(0) => return Wait::End,
            Ok(_) => return Wait::Byte,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Wait::End,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Fills `buf` before `deadline`, however slowly the bytes trickle in.
fn read_by(mut stream: &UnixStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "frame incomplete at the deadline ({got} of {} bytes)",
                    buf.len()
                ),
            ));
        }
        stream.set_read_timeout(Some(left.max(MIN_TIMEOUT)))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("client closed after {got} of {} bytes", buf.len()),
                ))
            }
            Ok(n) => got += n,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The reply text to one command frame. Like wazuh-db, a command ending in a newline gets a reply
/// ending in one.
fn answer(shared: &Shared, body: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(body) else {
        return "err Command is not valid UTF-8 text".to_owned();
    };
    let (command, terminal) = match text.strip_suffix('\n') {
        Some(command) => (command, true),
        None => (text, false),
    };
    let mut reply = match shared.db.query(command) {
        Ok(reply) if reply.payload.len() > MAX_PAYLOAD => format!(
            "err Reply of {} bytes exceeds the maximum payload of {MAX_PAYLOAD} bytes",
            reply.payload.len()
        ),
        Ok(reply) => reply.to_text(),
        Err(e) => WdbReply::err(truncate(&e.to_string(), MAX_PAYLOAD)).to_text(),
    };
    if terminal {
        reply.push('\n');
    }
    reply
}

/// The longest prefix of `text` within `max` bytes, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Writes one framed reply; a reply that cannot be framed becomes a short `err` instead.
fn send(stream: &mut UnixStream, text: &str) -> io::Result<()> {
    let frame = wire::encode(text)
        .or_else(|_| wire::encode("err Reply too large to frame"))
        .map_err(|e| io::Error::other(e.to_string()))?;
    stream.write_all(&frame)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreError, WazuhDb};
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;

    /// A database whose replies are fixed, to reach the server's edge cases.
    struct Fixed(fn(&str) -> Result<WdbReply, StoreError>);

    impl WazuhDb for Fixed {
        fn query(&self, command: &str) -> Result<WdbReply, StoreError> {
            (self.0)(command)
        }
        fn http(&self, _: &str, _: &str, _: &[u8]) -> Result<(u16, Vec<u8>), StoreError> {
            Ok((404, Vec::new()))
        }
    }

    fn shared(answer: fn(&str) -> Result<WdbReply, StoreError>) -> Shared {
        Shared {
            path: "/test/wdb".into(),
            db: Arc::new(Fixed(answer)),
            limits: super::super::ServerLimits::default(),
            stopping: AtomicBool::new(false),
            active: AtomicUsize::new(0),
        }
    }

    #[test]
    fn replies_echo_the_newline_and_stay_framable() {
        let echo = shared(|c| Ok(WdbReply::new(crate::store::WdbStatus::Ok, c)));
        assert_eq!(answer(&echo, b"global x\n"), "ok global x\n");
        assert_eq!(answer(&echo, b"global x"), "ok global x");
        assert_eq!(
            answer(&echo, &[0xff]),
            "err Command is not valid UTF-8 text"
        );
        let huge = shared(|_| {
            Ok(WdbReply::new(
                crate::store::WdbStatus::Ok,
                "x".repeat(70_000),
            ))
        });
        assert_eq!(
            answer(&huge, b"q"),
            "err Reply of 70000 bytes exceeds the maximum payload of 65024 bytes"
        );
        let failing = shared(|_| Err(StoreError::Poisoned));
        assert_eq!(
            answer(&failing, b"q"),
            "err agent database is unusable after a failed operation"
        );
        let long_error = shared(|_| Err(StoreError::Database("é".repeat(40_000))));
        let reply = answer(&long_error, b"q");
        assert!(reply.len() <= MAX_PAYLOAD + 4 && wire::encode(&reply).is_ok());
    }
}
