//! The wazuh-db client and server on real Unix sockets.
//!
//! Where no wazuh-db runs, a stand-in written here listens on a socket and answers scripted replies
//! with the real framing, so the client is checked byte for byte. The server is checked with the
//! embedded database on a real SQLite file, reached through the same client the daemon uses.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clusterd::store::{
    backend, query_ok, query_pages, Backend, DbError, EmbeddedDb, ServerLimits, StoreError,
    WazuhDb, WdbServer, WdbSocket, WdbStatus,
};

const T: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The wazuh-db stand-in
// ---------------------------------------------------------------------------------------------

/// Reads one framed command; `None` when the client closed.
fn read_frame(stream: &mut UnixStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

fn write_frame(stream: &mut UnixStream, text: &str) {
    let mut frame = (text.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(text.as_bytes());
    stream.write_all(&frame).expect("stand-in writes a reply");
}

/// Serves `connections` connections in turn on `path`, each with `serve(connection index, stream)`.
fn stand_in(
    path: &Path,
    connections: usize,
    serve: impl Fn(usize, UnixStream) + Send + 'static,
) -> JoinHandle<()> {
    let listener = UnixListener::bind(path).expect("stand-in binds");
    thread::spawn(move || {
        for index in 0..connections {
            let (stream, _) = listener.accept().expect("stand-in accepts");
            stream.set_read_timeout(Some(T)).expect("timeout");
            serve(index, stream);
        }
    })
}

/// A stand-in answering the scripted replies in order, across as many connections as clients open,
/// until the script is used up; it reports each command seen.
fn scripted(
    path: &Path,
    replies: &'static [&'static str],
) -> (JoinHandle<()>, mpsc::Receiver<String>) {
    let (seen, commands) = mpsc::channel();
    let listener = UnixListener::bind(path).expect("stand-in binds");
    let handle = thread::spawn(move || {
        let mut script = replies.iter().peekable();
        while script.peek().is_some() {
            let (mut stream, _) = listener.accept().expect("stand-in accepts");
            stream.set_read_timeout(Some(T)).expect("timeout");
            while let Some(reply) = script.peek() {
                let Some(command) = read_frame(&mut stream) else {
                    break;
                };
                let _ = seen.send(String::from_utf8_lossy(&command).into_owned());
                write_frame(&mut stream, reply);
                script.next();
            }
        }
    });
    (handle, commands)
}

fn client(dir: &Path) -> WdbSocket {
    WdbSocket::new(dir.join("wdb"), dir.join("wdb-http.sock")).with_timeout(T)
}

// ---------------------------------------------------------------------------------------------
// WdbSocket against the stand-in
// ---------------------------------------------------------------------------------------------

#[test]
fn command_goes_out_as_little_endian_length_and_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (raw_tx, raw_rx) = mpsc::channel();
    let server = stand_in(&dir.path().join("wdb"), 1, move |_, mut stream| {
        let mut raw = vec![0u8; 4 + 23];
        stream.read_exact(&mut raw).expect("whole frame");
        raw_tx.send(raw).expect("report");
        write_frame(&mut stream, "ok [{\"id\":1}]");
    });
    let reply = client(dir.path())
        .query("global get-agent-info 1")
        .expect("reply");
    let mut expected = vec![23, 0, 0, 0];
    expected.extend_from_slice(b"global get-agent-info 1");
    assert_eq!(raw_rx.recv_timeout(T).expect("frame seen"), expected);
    assert_eq!(reply.status, WdbStatus::Ok);
    assert_eq!(reply.payload, "[{\"id\":1}]");
    server.join().expect("stand-in");
}

#[test]
fn due_replies_are_paged_on_one_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let command = r#"global sync-agent-groups-get {"condition": "sync_status", "set_synced": true, "get_global_hash": true}"#;
    let (server, seen) = scripted(
        &dir.path().join("wdb"),
        &[
            "due [{\"data\":[1]}]",
            "due [{\"data\":[2]}]",
            "ok [{\"data\":[3]}]",
        ],
    );
    let db = client(dir.path());
    let pages = query_pages(&db, command, 10).expect("pages");
    assert_eq!(
        pages,
        ["[{\"data\":[1]}]", "[{\"data\":[2]}]", "[{\"data\":[3]}]"]
    );
    let commands: Vec<String> = seen.try_iter().collect();
    assert_eq!(
        commands,
        vec![command.to_owned(); 3],
        "the same command each time"
    );
    server.join().expect("stand-in");
}

#[test]
fn paging_stops_at_the_page_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, seen) = scripted(&dir.path().join("wdb"), &["due [1]", "due [2]"]);
    let db = client(dir.path());
    let error = query_pages(&db, "global sync-agent-info-get", 2).expect_err("limit");
    assert!(matches!(error, DbError::TooManyPages(2)), "{error}");
    assert_eq!(
        error.to_string(),
        "wazuh-db still had data pending after 2 pages"
    );
    server.join().expect("stand-in");
    assert_eq!(seen.try_iter().count(), 2, "no query past the limit");
}

#[test]
fn err_reply_surfaces_its_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _seen) = scripted(
        &dir.path().join("wdb"),
        &["err Invalid JSON syntax, near '{\"mode\":'"],
    );
    let error =
        query_ok(&client(dir.path()), "global set-agent-groups {\"mode\":").expect_err("err");
    match &error {
        DbError::Wdb(text) => assert_eq!(text, "Invalid JSON syntax, near '{\"mode\":'"),
        other => panic!("expected a wazuh-db error, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "Error in wazuhdb request: Invalid JSON syntax, near '{\"mode\":'"
    );
    server.join().expect("stand-in");
}

#[test]
fn reply_of_64_kib_or_more_is_refused_and_the_next_query_reconnects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = stand_in(&dir.path().join("wdb"), 2, |index, mut stream| {
        read_frame(&mut stream).expect("command");
        if index == 0 {
            let mut frame = 65_536u32.to_le_bytes().to_vec();
            frame.extend_from_slice(b"ok ");
            frame.extend(std::iter::repeat_n(b'x', 65_533));
            let _ = stream.write_all(&frame);
        } else {
            write_frame(&mut stream, "ok []");
        }
    });
    let db = client(dir.path());
    let error = db
        .query("global get-all-agents last_id 0")
        .expect_err("too large");
    assert!(matches!(error, StoreError::TooLarge(65_536)), "{error}");
    let reply = db
        .query("global get-all-agents last_id 0")
        .expect("fresh connection");
    assert_eq!(reply.to_text(), "ok []");
    server.join().expect("stand-in");
}

#[test]
fn closed_connection_is_replaced_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = stand_in(&dir.path().join("wdb"), 2, |index, mut stream| {
        read_frame(&mut stream).expect("command");
        write_frame(&mut stream, &format!("ok [{index}]"));
        // Connection 0 closes here, as wazuh-db does with a peer it gives up on.
    });
    let db = client(dir.path());
    assert_eq!(
        db.query("global get-agent-info 1").expect("first").payload,
        "[0]"
    );
    assert_eq!(
        db.query("global get-agent-info 1").expect("second").payload,
        "[1]"
    );
    server.join().expect("stand-in saw two connections");
}

#[test]
fn unreachable_wazuh_db_is_named_in_the_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let error = client(dir.path())
        .query("global get-agent-info 1")
        .expect_err("nobody listens");
    let text = error.to_string();
    let path = dir.path().join("wdb").display().to_string();
    assert!(
        text.starts_with(&format!("wazuh-db socket {path}: cannot connect")),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// WdbSocket::http against an HTTP stand-in
// ---------------------------------------------------------------------------------------------

/// Reads a request head and its Content-Length body.
fn read_request(stream: &mut UnixStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("request head");
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).expect("text head");
    let len = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .map_or(0, |n| n.parse().expect("length"));
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).expect("request body");
    (head, body)
}

/// An HTTP stand-in answering one request per connection with each raw response in turn.
fn http_stand_in(
    path: &Path,
    responses: &'static [&'static [u8]],
) -> (JoinHandle<()>, mpsc::Receiver<(String, Vec<u8>)>) {
    let (seen, requests) = mpsc::channel();
    let handle = stand_in(path, responses.len(), move |index, mut stream| {
        let request = read_request(&mut stream);
        let _ = seen.send(request);
        stream.write_all(responses[index]).expect("response");
    });
    (handle, requests)
}

#[test]
fn http_requests_and_responses_of_every_framing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, requests) = http_stand_in(
        &dir.path().join("wdb-http.sock"),
        &[
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"syncreq\":[{}]}\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"sy\r\nb\r\nncreq\":[]}\n\r\n0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nNot Found",
        ],
    );
    let db = client(dir.path());

    let (status, body) = db.http("GET", "/v1/agents/sync", b"").expect("GET");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"{\"syncreq\":[{}]}\n"[..])
    );
    let (head, _) = requests.recv_timeout(T).expect("GET seen");
    assert_eq!(
        head,
        "GET /v1/agents/sync HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );

    let post = br#"{"syncreq_keepalive":[{"id":2}]}"#;
    let (status, body) = db
        .http("POST", "http://localhost/v1/agents/sync", post)
        .expect("POST");
    assert_eq!((status, body.as_slice()), (200, &b"{\"syncreq\":[]}\n"[..]));
    let (head, sent) = requests.recv_timeout(T).expect("POST seen");
    assert!(
        head.starts_with("POST /v1/agents/sync HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nContent-Type: application/json\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", post.len())),
        "{head}"
    );
    assert_eq!(sent, post);

    let (status, body) = db
        .http("GET", "/v1/nothing", b"")
        .expect("404 is an answer");
    assert_eq!((status, body.as_slice()), (404, &b"Not Found"[..]));
    server.join().expect("stand-in");
}

#[test]
fn http_body_past_the_limit_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _requests) = http_stand_in(
        &dir.path().join("wdb-http.sock"),
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 300000000\r\n\r\n{"],
    );
    let error = client(dir.path())
        .http("GET", "/v1/agents/sync", b"")
        .expect_err("too large");
    assert!(
        matches!(error, StoreError::BodyTooLarge { limit, .. } if limit == 256 * 1024 * 1024),
        "{error}"
    );
    server.join().expect("stand-in");
}

// ---------------------------------------------------------------------------------------------
// WdbServer with the embedded database
// ---------------------------------------------------------------------------------------------

fn serve_file(dir: &Path, limits: ServerLimits) -> WdbServer {
    let db: Arc<dyn WazuhDb> =
        Arc::new(EmbeddedDb::open(&dir.join("clusterd-global.db")).expect("database file"));
    WdbServer::start(&dir.join("wdb"), db, limits).expect("server starts")
}

#[test]
fn embedded_database_answers_through_the_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = serve_file(dir.path(), ServerLimits::default());
    let db = client(dir.path());
    let insert =
        r#"global insert-agent {"id":1,"name":"web-1","ip":"10.0.0.5","date_add":1700000000}"#;
    assert_eq!(db.query(insert).expect("insert").to_text(), "ok");
    let info = query_ok(&db, "global get-agent-info 1").expect("info");
    let agents: serde_json::Value = serde_json::from_str(&info.payload).expect("JSON");
    assert_eq!(agents[0]["name"], "web-1");
    assert_eq!(agents[0]["ip"], "10.0.0.5");
    let error = query_ok(&db, "global frobnicate 1").expect_err("unknown command");
    assert_eq!(
        error.to_string(),
        "Error in wazuhdb request: Invalid DB query syntax, near 'frobnicate'"
    );
    server.stop();
    assert!(
        !dir.path().join("wdb").exists(),
        "socket file removed on stop"
    );
}

fn raw_connect(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect");
    stream.set_read_timeout(Some(T)).expect("timeout");
    stream
}

#[test]
fn oversized_frame_gets_err_and_the_connection_closes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _server = serve_file(dir.path(), ServerLimits::default());
    let mut stream = raw_connect(&dir.path().join("wdb"));
    stream.write_all(&70_000u32.to_le_bytes()).expect("header");
    let reply = read_frame(&mut stream).expect("a reply");
    assert_eq!(
        String::from_utf8(reply).expect("text"),
        "err Command of 70000 bytes exceeds the maximum of 65535 bytes"
    );
    assert_eq!(stream.read(&mut [0u8; 1]).expect("end of stream"), 0);
}

#[test]
fn bad_text_and_trailing_newline_are_answered_like_wazuh_db() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _server = serve_file(dir.path(), ServerLimits::default());
    let mut stream = raw_connect(&dir.path().join("wdb"));
    stream
        .write_all(&[2, 0, 0, 0, 0xff, 0xfe])
        .expect("bad text");
    let reply = read_frame(&mut stream).expect("reply");
    assert_eq!(reply, b"err Command is not valid UTF-8 text");
    write_frame(&mut stream, "global get-agent-info 7\n");
    assert_eq!(read_frame(&mut stream).expect("reply"), b"ok []\n");
}

#[test]
fn client_stalling_mid_frame_is_disconnected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = ServerLimits {
        read_timeout: Duration::from_millis(200),
        ..ServerLimits::default()
    };
    let server = serve_file(dir.path(), limits);
    let mut stream = raw_connect(&dir.path().join("wdb"));
    stream
        .write_all(&[30, 0, 0, 0, b'g'])
        .expect("partial frame");
    let started = Instant::now();
    assert_eq!(stream.read(&mut [0u8; 1]).expect("closed"), 0);
    assert!(started.elapsed() < Duration::from_secs(3));
    wait_for(|| server.connections() == 0);
}

fn wait_for(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + T;
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met within {T:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn connections_past_the_limit_are_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = ServerLimits {
        connections_max: 2,
        ..ServerLimits::default()
    };
    let server = serve_file(dir.path(), limits);
    let first = client(dir.path());
    let second = client(dir.path());
    first
        .query("global get-agent-info 1")
        .expect("first admitted");
    second
        .query("global get-agent-info 1")
        .expect("second admitted");
    assert_eq!(server.connections(), 2);

    let third = client(dir.path());
    let error = third
        .query("global get-agent-info 1")
        .expect_err("third refused");
    assert!(matches!(error, StoreError::Socket { .. }), "{error}");

    drop(first);
    wait_for(|| server.connections() < 2);
    third
        .query("global get-agent-info 1")
        .expect("a slot is free again");
}

#[test]
fn stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(UnixListener::bind(dir.path().join("wdb")).expect("a dead daemon's socket"));
    assert!(dir.path().join("wdb").exists());
    let _server = serve_file(dir.path(), ServerLimits::default());
    assert_eq!(
        client(dir.path())
            .query("global get-agent-info 1")
            .expect("served")
            .to_text(),
        "ok []"
    );
}

// ---------------------------------------------------------------------------------------------
// Choosing the backend
// ---------------------------------------------------------------------------------------------

fn queue_db(home: &Path) -> PathBuf {
    home.join("queue/db")
}

#[test]
fn empty_home_gets_the_embedded_database_served_on_the_wdb_socket() {
    let home = tempfile::tempdir().expect("temp dir");
    let agent_db = backend::open(home.path(), true).expect("open");
    let socket = queue_db(home.path()).join("wdb");
    let file = queue_db(home.path()).join("clusterd-global.db");
    assert_eq!(
        agent_db.backend,
        Backend::Embedded {
            db_path: file.clone(),
            socket: socket.clone()
        }
    );
    assert!(file.exists());
    let insert = r#"global insert-agent {"id":3,"name":"db-3","date_add":1700000000}"#;
    agent_db.db.query(insert).expect("direct insert");
    let through_socket = WdbSocket::new(socket.clone(), home.path().join("unused")).with_timeout(T);
    let info = query_ok(&through_socket, "global get-agent-info 3").expect("served");
    assert!(
        info.payload.contains("\"name\":\"db-3\""),
        "{}",
        info.payload
    );
    agent_db.stop();
    assert!(!socket.exists(), "socket removed on stop");
}

#[test]
fn listening_wdb_socket_selects_wazuh_db() {
    let home = tempfile::tempdir().expect("temp dir");
    fs::create_dir_all(queue_db(home.path())).expect("queue/db");
    let socket = queue_db(home.path()).join("wdb");
    let (server, seen) = scripted(&socket, &["ok [\"synced\"]"]);
    let agent_db = backend::open(home.path(), false).expect("open");
    assert_eq!(
        agent_db.backend.to_string(),
        format!("wazuh-db at {}", socket.display())
    );
    let command = format!("global get-groups-integrity {}", "0".repeat(40));
    let reply = agent_db.db.query(&command).expect("stand-in answers");
    assert_eq!(reply.payload, "[\"synced\"]");
    // The probe's own connection came first and was closed; the stand-in saw our command.
    assert_eq!(seen.recv_timeout(T).expect("command"), command);
    assert!(!queue_db(home.path()).join("clusterd-global.db").exists());
    agent_db.stop();
    server.join().expect("stand-in");
}
