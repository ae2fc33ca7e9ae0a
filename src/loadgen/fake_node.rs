//! A scripted stand-in for a node's local socket, for the simulator's tests: it takes `sendsync`
//! requests, never replies to them, and answers each with the next scripted request (`ok` + an
//! authd answer, or `err` + an error text), as a worker does once the master answered. Any other
//! request is answered `err`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::control::client::socket_path;
use crate::proto::command::Command;
use crate::proto::connection::{ConnLimits, Connection, Event};
use crate::proto::crypto::Cipher;

/// What the fake node saw: the `sendsync` payloads and the clients' acknowledgements.
#[derive(Debug, Default)]
pub struct Seen {
    pub requests: Vec<String>,
    pub acknowledgements: Vec<String>,
}

/// Serves one client on `home`'s local socket; each `sendsync` gets the next `(command, payload)`
/// of `script` as a new request. Ends when the client leaves or the script is used up and answered.
pub fn serve(home: &Path, script: Vec<(&'static str, String)>) -> JoinHandle<Seen> {
    let path = socket_path(home);
    std::fs::create_dir_all(path.parent().expect("socket directory")).expect("mkdir");
    let listener = UnixListener::bind(&path).expect("bind the local socket");
    thread::spawn(move || {
        let mut seen = Seen::default();
        let Ok((mut stream, _)) = listener.accept() else {
            return seen;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut conn: Connection<()> = Connection::new(Cipher::Plain, ConnLimits::default(), 7);
        let mut script = script.into_iter();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut events = Vec::new();
            if conn
                .receive(&buf[..n], Instant::now(), &mut events)
                .is_err()
            {
                break;
            }
            for event in events {
                match event {
                    Event::Request {
                        command: Command::SendSync,
                        payload,
                        ..
                    } => {
                        seen.requests
                            .push(String::from_utf8_lossy(&payload).into_owned());
                        if let Some((command, answer)) = script.next() {
                            conn.request(
                                command,
                                answer.as_bytes(),
                                (),
                                Instant::now(),
                                Duration::from_secs(10),
                            )
                            .expect("request");
                        }
                    }
                    // Like a node of another kind: whatever else is asked is unknown here.
                    Event::Request { counter, .. } => conn
                        .reply(counter, "err", b"unknown command")
                        .expect("reply"),
                    Event::Reply {
                        command, payload, ..
                    } => seen.acknowledgements.push(format!(
                        "{} {}",
                        command.as_str(),
                        String::from_utf8_lossy(&payload)
                    )),
                    _ => {}
                }
            }
            if flush(&mut stream, &mut conn).is_err() {
                break;
            }
        }
        seen
    })
}

fn flush(stream: &mut UnixStream, conn: &mut Connection<()>) -> std::io::Result<()> {
    for frame in conn.take_outbox() {
        stream.write_all(&frame)?;
    }
    Ok(())
}
