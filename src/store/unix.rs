//! Connecting to a Unix stream socket without ever blocking past a deadline.
//!
//! A blocking `connect` on a Unix socket waits for as long as the listener's backlog is full, which
//! a stuck wazuh-db would make forever. Connecting non-blocking turns that wait into `EAGAIN`, which
//! we retry until the deadline; a listener that exists but is busy is still a listener.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

/// Pause between attempts while the listener's backlog is full.
const BUSY_RETRY: Duration = Duration::from_millis(5);

/// One non-blocking connection attempt: the stream (still non-blocking) or the attempt's error.
fn try_connect(path: &Path) -> io::Result<UnixStream> {
    let addr = UnixAddr::new(path).map_err(io::Error::from)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    connect(fd.as_raw_fd(), &addr).map_err(io::Error::from)?;
    Ok(UnixStream::from(fd))
}

/// Connects to the stream socket at `path`, giving up after `timeout`; the stream is blocking.
pub fn connect_within(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let deadline = Instant::now() + timeout;
    loop {
        match try_connect(path) {
            Ok(stream) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.raw_os_error() == Some(Errno::EAGAIN as i32) => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the listener's queue stayed full for {} ms",
                            timeout.as_millis()
                        ),
                    ));
                }
                thread::sleep(BUSY_RETRY);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a listener exists on `path`: it accepted the connection or its queue is full.
pub fn listening(path: &Path) -> bool {
    match try_connect(path) {
        Ok(_) => true,
        Err(e) => e.raw_os_error() == Some(Errno::EAGAIN as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn connects_to_a_listener_and_refuses_without_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sock");
        assert!(!listening(&path));
        assert!(connect_within(&path, Duration::from_millis(50)).is_err());
        let listener = UnixListener::bind(&path).expect("bind");
        assert!(listening(&path));
        let stream = connect_within(&path, Duration::from_millis(50)).expect("connect");
        assert!(!stream_is_nonblocking(&stream));
        drop(listener);
        assert!(!listening(&path), "a socket file without a listener");
    }

    fn stream_is_nonblocking(stream: &UnixStream) -> bool {
        let flags = nix::fcntl::fcntl(stream, nix::fcntl::FcntlArg::F_GETFL).expect("flags");
        nix::fcntl::OFlag::from_bits_truncate(flags).contains(nix::fcntl::OFlag::O_NONBLOCK)
    }
}
