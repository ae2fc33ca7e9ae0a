use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::thread;

use serde_json::json;

use super::*;
use crate::store::embedded::test_support;

fn router(registrar: bool) -> (tempfile::TempDir, DaemonRouter) {
    let home = tempfile::tempdir().expect("home");
    let db: Arc<dyn WazuhDb> = Arc::new(test_support::db());
    let registrar = registrar.then(|| Registrar::open(home.path(), db.clone()).expect("open"));
    let router = DaemonRouter::new(home.path(), db, registrar);
    (home, router)
}

fn forward(router: &DaemonRouter, request: &str) -> Result<String, String> {
    router.forward(request.as_bytes())
}

fn err(text: &str) -> Result<String, String> {
    Err(text.to_owned())
}

#[test]
fn request_errors_read_like_the_master() {
    let (_home, router) = router(true);
    let cases = [
        ("", "Expecting value: line 1 column 1 (char 0)"),
        (r#"{"daemon_name": "authd""#, "Expecting ',' delimiter: line 1 column 24 (char 23)"),
        ("[1]", "list indices must be integers or slices, not str"),
        (r#""authd""#, "string indices must be integers"),
        ("5", "'int' object is not subscriptable"),
        ("null", "'NoneType' object is not subscriptable"),
        (r#"{"message": "x"}"#, "'daemon_name'"),
        (
            r#"{"daemon_name": "authd", "message": {}, "extra": 1}"#,
            "wazuh_sendsync() got an unexpected keyword argument 'extra'",
        ),
        (
            r#"{"daemon_name": "ossec-analysisd", "message": "x"}"#,
            "Error 1014 - Error communicating with socket: 'ossec-analysisd'",
        ),
        (
            r#"{"daemon_name": 7, "message": "x"}"#,
            "Error 1014 - Error communicating with socket: 7",
        ),
        (
            r#"{"daemon_name": ["authd"], "message": "x"}"#,
            "Error 1014 - Error communicating with socket: unhashable type: 'list'",
        ),
        (
            r#"{"daemon_name": "wazuh-db"}"#,
            "Error 1014 - Error communicating with socket: 'NoneType' object has no attribute 'encode'",
        ),
        (
            r#"{"daemon_name": "authd", "message": 3}"#,
            "Error 1014 - Error communicating with socket: 'int' object has no attribute 'encode'",
        ),
        (
            r#"{"daemon_name": "authd", "message": ""}"#,
            "Error 1014 - Error communicating with socket: unpack requires a buffer of 4 bytes",
        ),
        (
            r#"{"daemon_name": "remoted", "message": "assigngroup"}"#,
            "Error 1013 - Unable to connect with socket: remote",
        ),
        (
            r#"{"daemon_name": "task-manager", "message": {}}"#,
            "Error 1013 - Unable to connect with socket: task",
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(forward(&router, request), err(expected), "{request}");
    }
    assert_eq!(
        router.forward(b"{\"daemon_name\": \"a\xff\"}"),
        err("'utf-8' codec can't decode byte 0xff in position 18: invalid start byte")
    );
}

#[test]
fn wazuh_db_requests_go_to_the_database() {
    let (_home, router) = router(false);
    let answer = forward(
        &router,
        r#"{"daemon_name": "wazuh-db", "message": "global get-agent-info 0"}"#,
    )
    .expect("answer");
    assert!(answer.starts_with("ok [{"), "{answer}");
    assert_eq!(
        forward(
            &router,
            r#"{"daemon_name": "wazuh-db", "message": "global nope 1"}"#
        ),
        Ok("err Invalid DB query syntax, near 'nope'".to_owned())
    );
}

#[test]
fn authd_without_socket_or_registrar_is_unreachable() {
    let (_home, router) = router(false);
    let request = json!({"daemon_name": "authd", "message": {"function": "add"}}).to_string();
    assert_eq!(
        forward(&router, &request),
        err("Error 1013 - Unable to connect with socket: auth")
    );
}

#[test]
fn authd_requests_go_to_the_registrar_in_order() {
    let (home, router) = router(true);
    std::fs::create_dir_all(home.path().join("queue/sockets")).expect("queue");
    std::fs::create_dir_all(home.path().join("etc")).expect("etc");
    // A stale socket (nothing accepts) counts as no authd.
    drop(UnixListener::bind(home.path().join("queue/sockets/auth")).expect("bind"));
    let add = |name: &str| {
        json!({"daemon_name": "authd", "message": {"function": "add", "arguments": {"name": name, "ip": "any"}}})
            .to_string()
            .into_bytes()
    };
    let requests = vec![
        add("a1"),
        br#"{"daemon_name": "wazuh-db", "message": "global get-agent-info 1"}"#.to_vec(),
        add("a2"),
        add("a1"),
    ];
    let results = router.forward_batch(&requests);
    let id = |result: &Result<String, String>| {
        let answer: serde_json::Value =
            serde_json::from_str(result.as_deref().expect("answer")).expect("json");
        answer["data"]["id"].clone()
    };
    assert_eq!(id(&results[0]), "001");
    assert_eq!(id(&results[2]), "002");
    assert_eq!(
        results[3],
        Ok(r#"{"error":9008,"message":"Duplicate name"}"#.to_owned())
    );
    // The database request ran before the batch was written: the agent was not there yet.
    assert_eq!(results[1], Ok("ok []".to_owned()));
}

#[test]
fn other_daemons_get_the_message_over_their_socket() {
    let (home, router) = router(false);
    std::fs::create_dir_all(home.path().join("queue/sockets")).expect("queue");
    let listener = UnixListener::bind(home.path().join("queue/sockets/remote")).expect("bind");
    let daemon = thread::spawn(move || {
        let (mut peer, _) = listener.accept().expect("accept");
        let mut header = [0u8; 4];
        peer.read_exact(&mut header).expect("header");
        let mut message = vec![0u8; u32::from_le_bytes(header) as usize];
        peer.read_exact(&mut message).expect("message");
        peer.write_all(&2u32.to_le_bytes()).expect("header");
        peer.write_all(b"ok").expect("answer");
        message
    });
    let answer = forward(
        &router,
        r#"{"daemon_name": "remoted", "message": {"command": "assigngroup", "parameters": {"agent": "001"}}}"#,
    );
    assert_eq!(answer, Ok("ok".to_owned()));
    assert_eq!(
        String::from_utf8(daemon.join().expect("daemon")).expect("text"),
        r#"{"command": "assigngroup", "parameters": {"agent": "001"}}"#
    );
}
