//! One request/answer exchange with a daemon's Unix socket, failing with the texts the Wazuh
//! master gives: `Error 1013` when the socket is missing, `Error 1121` when nothing accepts on it,
//! `Error 1014` when the exchange itself fails.
//!
//! Framing: a 4-byte little-endian length, then the message; the answer comes back the same way.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::pyjson;

/// Largest answer accepted from a daemon.
pub const MAX_ANSWER: usize = 65_536;
/// How long one send or receive may block. The daemons answer local requests at once; a stuck
/// daemon must not hold a worker thread for ever.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The last component of a socket path, as the error texts name sockets.
fn socket_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// An OS error as Python prints it: `[Errno 32] Broken pipe`, or `timed out`.
pub fn os_error_text(error: &io::Error) -> String {
    if matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return "timed out".to_owned();
    }
    match error.raw_os_error() {
        Some(code) => format!(
            "[Errno {code}] {}",
            nix::errno::Errno::from_raw(code).desc()
        ),
        None => error.to_string(),
    }
}

/// `Error 1014 - Error communicating with socket: <detail>`.
pub fn communication_error(detail: impl std::fmt::Display) -> String {
    format!("Error 1014 - Error communicating with socket: {detail}")
}

/// Whether a failed connection means that nothing serves the socket (missing or refusing).
pub fn nobody_listens(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// The error text for a failed connection to `path`.
pub fn connect_error(path: &Path, error: &io::Error) -> String {
    let name = socket_name(path);
    match error.kind() {
        io::ErrorKind::NotFound => format!("Error 1013 - Unable to connect with socket: {name}"),
        io::ErrorKind::ConnectionRefused => format!(
            "Error 1121 - Error connecting with socket: Socket '{name}' cannot receive connections"
        ),
        _ => format!(
            "Error 1013 - Unable to connect with socket: {}",
            os_error_text(error)
        ),
    }
}

/// Connects to the daemon socket at `path`.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(path)
}

/// Reads until `buf` is full or the peer closes; the number of bytes read.
fn read_full(stream: &mut UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Sends `message` framed and returns the framed answer's text.
pub fn exchange(
    mut stream: UnixStream,
    message: &[u8],
    timeout: Duration,
) -> Result<String, String> {
    let io_error = |e: io::Error| communication_error(os_error_text(&e));
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(io_error)?;
    let length =
        u32::try_from(message.len()).map_err(|_| communication_error("message too large"))?;
    let mut frame = Vec::with_capacity(message.len() + 4);
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(message);
    stream.write_all(&frame).map_err(io_error)?;

    let mut header = [0u8; 4];
    if read_full(&mut stream, &mut header).map_err(io_error)? < header.len() {
        return Err(communication_error("unpack requires a buffer of 4 bytes"));
    }
    let size = u32::from_le_bytes(header) as usize;
    if size > MAX_ANSWER {
        return Err(communication_error(format!(
            "answer of {size} bytes is larger than {MAX_ANSWER} bytes"
        )));
    }
    let mut answer = vec![0u8; size];
    // A peer closing early gives a shorter answer, as the master's client takes it.
    let got = read_full(&mut stream, &mut answer).map_err(io_error)?;
    answer.truncate(got);
    String::from_utf8(answer)
        .map_err(|e| communication_error(pyjson::utf8_error(e.as_bytes(), &e.utf8_error())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// A one-shot daemon: reads one framed message, replies with `reply` (raw bytes), returns the message.
    fn daemon(dir: &Path, reply: Vec<u8>) -> (std::path::PathBuf, thread::JoinHandle<Vec<u8>>) {
        let path = dir.join("sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let handle = thread::spawn(move || {
            let (mut peer, _) = listener.accept().expect("accept");
            let mut header = [0u8; 4];
            peer.read_exact(&mut header).expect("header");
            let mut message = vec![0u8; u32::from_le_bytes(header) as usize];
            peer.read_exact(&mut message).expect("message");
            peer.write_all(&reply).expect("reply");
            message
        });
        (path, handle)
    }

    fn framed(text: &[u8]) -> Vec<u8> {
        let mut out = (text.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(text);
        out
    }

    #[test]
    fn exchanges_one_framed_message() {
        let dir = tempfile::tempdir().expect("dir");
        let (path, handle) = daemon(dir.path(), framed(b"ok done"));
        let stream = connect(&path).expect("connect");
        assert_eq!(
            exchange(stream, b"hello", IO_TIMEOUT),
            Ok("ok done".to_owned())
        );
        assert_eq!(handle.join().expect("daemon"), b"hello");
    }

    #[test]
    fn failures_read_like_the_master() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("auth");
        let error = connect(&missing).expect_err("missing");
        assert!(nobody_listens(&error));
        assert_eq!(
            connect_error(&missing, &error),
            "Error 1013 - Unable to connect with socket: auth"
        );

        let stale = dir.path().join("remote");
        drop(UnixListener::bind(&stale).expect("bind"));
        let error = connect(&stale).expect_err("refused");
        assert!(nobody_listens(&error));
        assert_eq!(
            connect_error(&stale, &error),
            "Error 1121 - Error connecting with socket: Socket 'remote' cannot receive connections"
        );
        let denied = io::Error::from_raw_os_error(13);
        assert_eq!(
            connect_error(&stale, &denied),
            "Error 1013 - Unable to connect with socket: [Errno 13] Permission denied"
        );

        let (path, handle) = daemon(dir.path(), Vec::new());
        let answer = exchange(connect(&path).expect("connect"), b"x", IO_TIMEOUT);
        assert_eq!(
            answer,
            Err(
                "Error 1014 - Error communicating with socket: unpack requires a buffer of 4 bytes"
                    .to_owned()
            )
        );
        handle.join().expect("daemon");
    }

    #[test]
    fn oversized_and_binary_answers_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (path, handle) = daemon(dir.path(), ((MAX_ANSWER + 1) as u32).to_le_bytes().to_vec());
        let answer = exchange(connect(&path).expect("connect"), b"x", IO_TIMEOUT);
        assert!(answer.expect_err("too large").contains("larger than 65536"));
        handle.join().expect("daemon");
        std::fs::remove_file(&path).expect("unlink");

        let (path, handle) = daemon(dir.path(), framed(b"\xff"));
        let answer = exchange(connect(&path).expect("connect"), b"x", IO_TIMEOUT);
        assert_eq!(
            answer,
            Err("Error 1014 - Error communicating with socket: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte".to_owned())
        );
        handle.join().expect("daemon");
    }

    #[test]
    fn a_silent_daemon_times_out() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let stream = connect(&path).expect("connect");
        let answer = exchange(stream, b"x", Duration::from_millis(50));
        assert_eq!(
            answer,
            Err("Error 1014 - Error communicating with socket: timed out".to_owned())
        );
        drop(listener);
    }
}
