//! Agent registration on the master, end to end: requests forwarded by workers reach authd when
//! it listens, else the embedded registration service, which keeps a real `client.keys` and a
//! real agent database.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;

use clusterd::store::registration::keys::KeyStore;
use clusterd::store::{DaemonRouter, EmbeddedDb, Registrar, WazuhDb, WdbStatus};

/// A master installation with an embedded agent database and registration service.
struct Master {
    home: TempDir,
    db: Arc<EmbeddedDb>,
    router: DaemonRouter,
}

fn master() -> Master {
    let home = tempfile::tempdir().expect("home");
    for dir in [
        "etc/shared/default",
        "etc/shared/web",
        "queue/sockets",
        "queue/db",
    ] {
        fs::create_dir_all(home.path().join(dir)).expect("layout");
    }
    let db = Arc::new(EmbeddedDb::open(&home.path().join("queue/db/global.db")).expect("db"));
    let registrar = Registrar::open(home.path(), db.clone()).expect("registrar");
    let router = DaemonRouter::new(home.path(), db.clone(), Some(registrar));
    Master { home, db, router }
}

fn add(arguments: Value) -> Vec<u8> {
    json!({"daemon_name": "authd", "message": {"function": "add", "arguments": arguments}})
        .to_string()
        .into_bytes()
}

fn named(name: &str) -> Vec<u8> {
    add(json!({"name": name, "ip": "any"}))
}

fn remove(id: &str) -> Vec<u8> {
    json!({"daemon_name": "authd", "message": {"function": "remove", "arguments": {"id": id}}})
        .to_string()
        .into_bytes()
}

fn answer(result: &Result<String, String>) -> Value {
    serde_json::from_str(result.as_deref().expect("an answer")).expect("answer is JSON")
}

fn force_now() -> Value {
    json!({"enabled": true, "key_mismatch": true,
        "disconnected_time": {"enabled": false, "value": 0}, "after_registration_time": 0})
}

impl Master {
    fn keys_path(&self) -> PathBuf {
        self.home.path().join("etc/client.keys")
    }

    fn keys(&self) -> String {
        fs::read_to_string(self.keys_path()).unwrap_or_default()
    }

    fn one(&self, request: Vec<u8>) -> Value {
        answer(&self.router.forward(&request))
    }

    fn query(&self, command: &str) -> (WdbStatus, String) {
        let reply = self.db.query(command).expect("query");
        (reply.status, reply.payload)
    }

    fn agent_ids(&self) -> Vec<i64> {
        let (status, payload) = self.query("global get-all-agents last_id 0");
        assert_eq!(status, WdbStatus::Ok);
        let rows: Value = serde_json::from_str(&payload).expect("json");
        rows.as_array()
            .expect("array")
            .iter()
            .filter_map(|row| row["id"].as_i64())
            .collect()
    }

    fn agent(&self, id: u32) -> Value {
        let (_, payload) = self.query(&format!("global get-agent-info {id}"));
        serde_json::from_str::<Value>(&payload).expect("json")[0].clone()
    }

    /// Every agent's groups, paging as the master's full send does.
    fn all_groups(&self) -> Vec<Value> {
        let mut agents = Vec::new();
        let mut last_id = 0;
        loop {
            let (status, payload) = self.query(&format!(
                r#"global sync-agent-groups-get {{"condition":"all","last_id":{last_id}}}"#
            ));
            let page: Value = serde_json::from_str(&payload).expect("json");
            let data = page[0]["data"].as_array().cloned().unwrap_or_default();
            if let Some(last) = data.last() {
                last_id = last["id"].as_i64().expect("id");
            }
            agents.extend(data);
            if status != WdbStatus::Due {
                return agents;
            }
        }
    }
}

#[test]
fn a_thousand_registrations_in_batches() {
    let m = master();
    let mut ids = HashSet::new();
    for batch in 0..10 {
        let requests: Vec<Vec<u8>> = (0..100)
            .map(|i| {
                let n = batch * 100 + i;
                let groups = if n % 2 == 0 { "default" } else { "web,default" };
                add(json!({"name": format!("agent{n:04}"), "ip": "any", "groups": groups}))
            })
            .collect();
        for (i, result) in m.router.forward_batch(&requests).iter().enumerate() {
            let answer = answer(result);
            assert_eq!(answer["error"], 0, "{answer}");
            assert_eq!(
                answer["data"]["name"],
                format!("agent{:04}", batch * 100 + i)
            );
            assert!(ids.insert(answer["data"]["id"].as_str().expect("id").to_owned()));
        }
    }
    assert_eq!(ids.len(), 1000);
    assert!(ids.contains("001") && ids.contains("1000"));

    let (store, problems) = KeyStore::parse(&m.keys(), false);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(store.len(), 1000);
    let names: HashSet<&str> = store.entries().map(|e| e.name.as_str()).collect();
    assert_eq!(names.len(), 1000);
    for entry in store.entries() {
        assert_eq!(entry.key.len(), 64);
        assert!(entry.key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(ids.contains(&entry.id));
    }

    let agents = m.agent_ids();
    assert_eq!(agents.len(), 1000);
    let info = m.agent(1000);
    assert_eq!(info["name"], "agent0999");
    assert_eq!(
        info["internal_key"].as_str(),
        store.by_id(1000).map(|e| e.key.as_str())
    );

    // wazuh-db lists agents registered before the current second.
    thread::sleep(Duration::from_millis(1100));
    let groups = m.all_groups();
    assert_eq!(groups.len(), 1000);
    assert_eq!(
        groups[0],
        json!({"id": 1, "name": "agent0000", "groups": ["default"]})
    );
    assert_eq!(
        groups[1],
        json!({"id": 2, "name": "agent0001", "groups": ["web", "default"]})
    );
}

#[test]
fn duplicate_names_given_ids_and_keys() {
    let m = master();
    let first = m.one(named("agent1"));
    assert_eq!(first["data"]["id"], "001");
    assert_eq!(
        m.one(named("agent1")),
        json!({"error": 9008, "message": "Duplicate name"})
    );
    let forced = m.one(add(
        json!({"name": "agent1", "ip": "any", "force": force_now()}),
    ));
    assert_eq!(forced["data"]["id"], "002");
    assert_eq!(m.keys().lines().count(), 1);
    assert_eq!(m.agent_ids(), vec![2]);

    let key = "0123456789abcdef".repeat(4);
    let given = m.one(add(
        json!({"name": "agent7", "ip": "10.0.0.7", "id": "70", "key": key}),
    ));
    assert_eq!(
        given,
        json!({"error": 0, "data": {"id": "070", "name": "agent7", "ip": "10.0.0.7", "key": key}})
    );
    assert!(m.keys().contains(&format!("070 agent7 10.0.0.7 {key}\n")));
    assert_eq!(m.agent(70)["internal_key"], key.as_str());
    assert_eq!(
        m.one(add(json!({"name": "agent8", "ip": "any", "id": "070"}))),
        json!({"error": 9012, "message": "Duplicate ID"})
    );
    assert_eq!(
        m.one(add(json!({"name": "agent8", "ip": "any", "id": "x1"}))),
        json!({"error": 9010, "message": "No such agent ID"})
    );
    assert_eq!(
        m.one(add(
            json!({"name": "agent8", "ip": "any", "key": "bad key"})
        )),
        json!({"error": 9009, "message": "Issue generating key"})
    );
    assert_eq!(
        m.one(add(json!({"name": "agent8", "ip": "10.0.0.7"}))),
        json!({"error": 9007, "message": "Duplicate IP"})
    );
    assert_eq!(m.one(named("agent8"))["data"]["id"], "071");
}

#[test]
fn remove_drops_the_key_line_and_the_record() {
    let m = master();
    m.one(named("agent1"));
    m.one(named("agent2"));
    assert_eq!(
        m.one(remove("001")),
        json!({"error": 0, "data": "Agent deleted successfully."})
    );
    assert!(!m.keys().contains("agent1"));
    assert!(m.keys().starts_with("002 agent2 any "));
    assert_eq!(m.agent_ids(), vec![2]);
    assert_eq!(
        m.one(remove("001")),
        json!({"error": 9011, "message": "Agent ID not found"})
    );
}

/// Makes `dir` unwritable for this thread until dropped. Root ignores permissions, so as root the
/// thread's filesystem identity becomes an ordinary user's meanwhile.
struct Unwritable {
    dir: PathBuf,
    previous_fsuid: Option<nix::unistd::Uid>,
}

impl Unwritable {
    fn new(home: &Path, dir: &Path) -> Unwritable {
        // An ordinary user must still reach and read the keys.
        fs::set_permissions(home, fs::Permissions::from_mode(0o755)).expect("chmod home");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).expect("chmod dir");
        let keys = dir.join("client.keys");
        if keys.exists() {
            fs::set_permissions(&keys, fs::Permissions::from_mode(0o644)).expect("chmod keys");
        }
        let previous_fsuid = nix::unistd::geteuid()
            .is_root()
            .then(|| nix::unistd::setfsuid(nix::unistd::Uid::from_raw(65_534)));
        Unwritable {
            dir: dir.to_owned(),
            previous_fsuid,
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if let Some(uid) = self.previous_fsuid {
            nix::unistd::setfsuid(uid);
        }
        let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn an_unwritable_keys_directory_changes_nothing() {
    let m = master();
    m.one(named("agent1"));
    let keys_before = m.keys();
    let agents_before = m.agent_ids();
    let results = {
        let _guard = Unwritable::new(m.home.path(), &m.home.path().join("etc"));
        m.router
            .forward_batch(&[named("agent2"), remove("001"), named("agent2")])
    };
    let internal = json!({"error": 9001, "message": "Internal error"});
    assert_eq!(answer(&results[0]), internal);
    assert_eq!(answer(&results[1]), internal);
    assert_eq!(
        answer(&results[2]),
        json!({"error": 9008, "message": "Duplicate name"}),
        "a refused request keeps its own answer"
    );
    assert_eq!(m.keys(), keys_before);
    assert_eq!(m.agent_ids(), agents_before);
    let leftovers: Vec<_> = fs::read_dir(m.home.path().join("etc"))
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "etc/shared and client.keys only: {leftovers:?}"
    );
    // Writable again: the next registration takes the id the failed one would have had.
    assert_eq!(m.one(named("agent2"))["data"]["id"], "002");
}

#[test]
fn a_file_replaced_between_batches_is_respected() {
    let m = master();
    m.router.forward_batch(&[named("agent1"), named("agent2")]);
    let key = "ab".repeat(32);
    fs::write(
        m.keys_path(),
        format!("001 agent1 any {key}\n050 other any {key}\n051 !gone any {key}\n"),
    )
    .expect("replace");
    let results = m.router.forward_batch(&[named("other"), named("agent3")]);
    assert_eq!(
        answer(&results[0]),
        json!({"error": 9008, "message": "Duplicate name"})
    );
    assert_eq!(answer(&results[1])["data"]["id"], "052");
    let (store, problems) = KeyStore::parse(&m.keys(), false);
    assert!(problems.is_empty());
    let ids: Vec<&str> = store.entries().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["001", "050", "052"]);
}

/// A stand-in authd: answers `count` requests with `reply`, returning the raw bytes received.
fn authd_stand_in(
    path: &Path,
    count: usize,
    reply: &'static str,
) -> thread::JoinHandle<Vec<Vec<u8>>> {
    let listener = UnixListener::bind(path).expect("bind auth socket");
    thread::spawn(move || {
        (0..count)
            .map(|_| {
                let (mut peer, _) = listener.accept().expect("accept");
                let mut header = [0u8; 4];
                peer.read_exact(&mut header).expect("header");
                let mut message = vec![0u8; u32::from_le_bytes(header) as usize];
                peer.read_exact(&mut message).expect("message");
                let mut frame = (reply.len() as u32).to_le_bytes().to_vec();
                frame.extend_from_slice(reply.as_bytes());
                peer.write_all(&frame).expect("reply");
                [header.to_vec(), message].concat()
            })
            .collect()
    })
}

#[test]
fn authd_requests_go_to_authd_when_it_listens() {
    let m = master();
    let socket = m.home.path().join("queue/sockets/auth");
    let reply = r#"{"error":0,"data":{"id":"900","name":"agent1","ip":"any","key":"k"}}"#;
    let stand_in = authd_stand_in(&socket, 2, reply);
    let requests = [
        add(json!({"name": "agent1", "ip": "any", "groups": "default"})),
        br#"{"daemon_name":"authd","message":"getconfig auth"}"#.to_vec(),
    ];
    let results = m.router.forward_batch(&requests);
    assert_eq!(results, vec![Ok(reply.to_owned()), Ok(reply.to_owned())]);
    let received = stand_in.join().expect("stand-in");
    let json_text =
        r#"{"function": "add", "arguments": {"name": "agent1", "ip": "any", "groups": "default"}}"#;
    let mut expected = (json_text.len() as u32).to_le_bytes().to_vec();
    expected.extend_from_slice(json_text.as_bytes());
    assert_eq!(received[0], expected);
    assert_eq!(received[1], b"\x0e\x00\x00\x00getconfig auth");
    assert!(!m.keys_path().exists(), "the embedded service was not used");

    // authd gone, its socket file left behind: the embedded service answers.
    let embedded = m.one(named("agent1"));
    assert_eq!(embedded["data"]["id"], "001");
    assert!(m.keys().starts_with("001 agent1 any "));
}

#[test]
fn malformed_requests_get_precise_errors() {
    let m = master();
    let cases: [(&[u8], &str); 5] = [
        (
            b"{\"daemon_name\": \"authd\",}",
            "Expecting property name enclosed in double quotes: line 1 column 25 (char 24)",
        ),
        (b"not json", "Expecting value: line 1 column 1 (char 0)"),
        (b"{\"message\": {}}", "'daemon_name'"),
        (
            b"{\"daemon_name\": \"syscheckd\", \"message\": \"x\"}",
            "Error 1014 - Error communicating with socket: 'syscheckd'",
        ),
        (
            b"{\"daemon_name\": \"remoted\", \"message\": \"x\"}",
            "Error 1013 - Unable to connect with socket: remote",
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(
            m.router.forward(request),
            Err(expected.to_owned()),
            "{}",
            String::from_utf8_lossy(request)
        );
    }
}
