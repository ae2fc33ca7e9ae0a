use std::fs;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use tempfile::TempDir;

use super::*;
use crate::store::embedded::test_support::{self, ok, q, NOW};
use crate::store::EmbeddedDb;

/// Replacement allowed at once, whatever the agent's state.
fn force_now() -> Value {
    json!({"enabled": true, "key_mismatch": false,
        "disconnected_time": {"enabled": false, "value": 0}, "after_registration_time": 0})
}

struct Fixture {
    home: TempDir,
    db: Arc<EmbeddedDb>,
    registrar: Registrar,
}

fn fixture_with(options: RegistrarOptions) -> Fixture {
    let home = tempfile::tempdir().expect("home");
    for group in ["default", "web", "db"] {
        fs::create_dir_all(home.path().join("etc/shared").join(group)).expect("group dir");
    }
    let db = Arc::new(test_support::db());
    let registrar = Registrar::open_with(
        home.path(),
        db.clone(),
        RegistrarOptions {
            manager_name: Some("manager".into()),
            ..options
        },
    )
    .expect("open")
    // Registered before the database's clock: wazuh-db lists agents registered before now.
    .with_clock(|| NOW - 10);
    Fixture {
        home,
        db,
        registrar,
    }
}

fn fixture() -> Fixture {
    fixture_with(RegistrarOptions::default())
}

fn add(arguments: Value) -> Value {
    json!({"function": "add", "arguments": arguments})
}

fn named(name: &str) -> Value {
    add(json!({"name": name, "ip": "any"}))
}

fn answer(text: &str) -> Value {
    serde_json::from_str(text).expect("answer is JSON")
}

impl Fixture {
    fn handle(&self, message: Value) -> Value {
        answer(&self.registrar.handle(&message))
    }

    fn keys(&self) -> String {
        fs::read_to_string(self.home.path().join("etc/client.keys")).unwrap_or_default()
    }

    fn agent(&self, id: u32) -> Value {
        test_support::json(&ok(&self.db, &format!("global get-agent-info {id}")))[0].clone()
    }

    fn groups(&self) -> Value {
        test_support::json(&ok(
            &self.db,
            r#"global sync-agent-groups-get {"condition":"all"}"#,
        ))[0]["data"]
            .clone()
    }
}

fn error(code: u32, message: &str) -> Value {
    json!({"error": code, "message": message})
}

#[test]
fn add_writes_the_key_and_records_the_agent() {
    let f = fixture();
    let first = f.handle(add(
        json!({"name": "web1", "ip": "10.0.0.1", "groups": "web,default"}),
    ));
    assert_eq!(first["error"], 0);
    assert_eq!(first["data"]["id"], "001");
    assert_eq!(first["data"]["name"], "web1");
    assert_eq!(first["data"]["ip"], "10.0.0.1");
    let key = first["data"]["key"].as_str().expect("key").to_owned();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(f.keys(), format!("001 web1 10.0.0.1 {key}\n"));

    let agent = f.agent(1);
    assert_eq!(agent["name"], "web1");
    assert_eq!(agent["register_ip"], "10.0.0.1");
    assert_eq!(agent["internal_key"], key.as_str());
    assert_eq!(agent["date_add"], NOW - 10);
    assert_eq!(agent["group"], "web,default");
    assert_eq!(agent["group_sync_status"], "syncreq");
    assert!(
        agent.get("ip").is_none(),
        "authd leaves the address to remoted"
    );

    let second = f.handle(named("db1"));
    assert_eq!(second["data"]["id"], "002");
    assert_eq!(
        f.groups(),
        json!([{"id": 1, "name": "web1", "groups": ["web", "default"]},
               {"id": 2, "name": "db1", "groups": ["default"]}])
    );
}

#[test]
fn duplicate_names_follow_the_force_rules() {
    let f = fixture();
    let old = f.handle(named("a1"));
    // Default rules: a fresh agent is not replaced.
    assert_eq!(f.handle(named("a1")), error(9008, "Duplicate name"));
    let disabled = json!({"enabled": false, "key_mismatch": false,
        "disconnected_time": {"enabled": false, "value": 0}, "after_registration_time": 0});
    assert_eq!(
        f.handle(add(json!({"name": "a1", "ip": "any", "force": disabled}))),
        error(9008, "Duplicate name")
    );
    assert_eq!(f.handle(named("manager")), error(9008, "Duplicate name"));

    let new = f.handle(add(
        json!({"name": "a1", "ip": "any", "force": force_now()}),
    ));
    assert_eq!(new["data"]["id"], "002");
    let keys = f.keys();
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(keys.starts_with("002 a1 any "));
    assert!(!keys.contains(old["data"]["key"].as_str().expect("key")));
    assert_eq!(ok(&f.db, "global get-agent-info 1"), "[]");
    assert_eq!(f.agent(2)["name"], "a1");
}

#[test]
fn key_hash_of_the_current_key_prevents_replacement() {
    let f = fixture();
    let old = f.handle(named("a1"));
    let hash = authd::key_hash("001", "a1", old["data"]["key"].as_str().expect("key"));
    let mut force = force_now();
    force["key_mismatch"] = json!(true);
    let again = add(json!({"name": "a1", "ip": "any", "key_hash": hash, "force": force}));
    assert_eq!(f.handle(again), error(9008, "Duplicate name"));
    let other = add(json!({"name": "a1", "ip": "any", "key_hash": "0", "force": force}));
    assert_eq!(f.handle(other)["data"]["id"], "002");
}

#[test]
fn disconnection_time_rules() {
    let f = fixture();
    f.handle(named("a1"));
    ok(
        &f.db,
        r#"global update-connection-status {"id":1,"connection_status":"active","sync_status":"synced","status_code":0}"#,
    );
    let mut force = force_now();
    force["disconnected_time"] = json!({"enabled": true, "value": "1h"});
    let request = add(json!({"name": "a1", "ip": "any", "force": force}));
    assert_eq!(f.handle(request.clone()), error(9008, "Duplicate name"));
    // Disconnected two hours before the registrar's clock.
    q(
        &f.db,
        r#"global update-connection-status {"id":1,"connection_status":"disconnected","sync_status":"synced","status_code":0}"#,
    );
    let f = Fixture {
        registrar: f.registrar.with_clock(|| NOW + 7200),
        ..f
    };
    assert_eq!(f.handle(request)["data"]["id"], "002");
}

#[test]
fn given_ids_and_keys() {
    let f = fixture();
    let key = "k".repeat(20);
    let given = f.handle(add(
        json!({"name": "a1", "ip": "any", "id": "42", "key": key}),
    ));
    assert_eq!(given["data"]["id"], "042");
    assert_eq!(given["data"]["key"], key.as_str());
    assert_eq!(f.handle(named("a2"))["data"]["id"], "043");
    let taken = add(json!({"name": "a3", "ip": "any", "id": "042"}));
    assert_eq!(f.handle(taken), error(9012, "Duplicate ID"));
    let manager = add(json!({"name": "a3", "ip": "any", "id": "000"}));
    assert_eq!(f.handle(manager), error(9012, "Duplicate ID"));
    for bad in ["abc", "123456789", "", "-1"] {
        let request = add(json!({"name": "a3", "ip": "any", "id": bad}));
        assert_eq!(f.handle(request), error(9010, "No such agent ID"), "{bad}");
    }
    for bad in ["", "has space", &"k".repeat(128)] {
        let request = add(json!({"name": "a3", "ip": "any", "key": bad}));
        assert_eq!(
            f.handle(request),
            error(9009, "Issue generating key"),
            "{bad:?}"
        );
    }
    let replaced = add(json!({"name": "a3", "ip": "any", "id": "42", "force": force_now()}));
    assert_eq!(f.handle(replaced)["data"]["id"], "042");
    assert_eq!(f.agent(42)["name"], "a3");
    assert_eq!(f.keys().lines().count(), 2);
}

#[test]
fn names_addresses_and_groups_are_validated() {
    let f = fixture();
    for name in ["a", ".a1", "a b", "a/b"] {
        assert_eq!(f.handle(named(name)), error(9005, "No such name"), "{name}");
    }
    assert_eq!(
        f.handle(add(json!({"name": "a1", "ip": 5}))),
        error(9006, "No such IP")
    );
    assert_eq!(
        f.handle(add(json!({"name": "a1", "ip": "1.2.3.256"}))),
        error(9006, "No such IP")
    );
    for groups in ["nope", "web,nope", "..", "a b"] {
        let request = add(json!({"name": "a1", "ip": "any", "groups": groups}));
        assert_eq!(
            f.handle(request),
            error(9014, "Invalid Group(s) Name(s)"),
            "{groups}"
        );
    }
    assert_eq!(
        f.handle(add(json!({"name": "a1", "ip": "10.1.1.1"})))["error"],
        0
    );
    assert_eq!(
        f.handle(add(json!({"name": "a2", "ip": "10.1.1.1"}))),
        error(9007, "Duplicate IP")
    );
    let cidr = f.handle(add(json!({"name": "a3", "ip": "10.1.1.1/24"})));
    assert_eq!(cidr["data"]["ip"], "10.1.1.1/24");
    assert!(f.keys().contains("002 a3 10.1.1.1/24 "));
    assert!(f.handle(json!({"function": "add"}))["error"] == 9004);
    assert_eq!(
        f.keys().lines().count(),
        2,
        "refused requests change nothing"
    );
}

#[test]
fn remove_and_get() {
    let f = fixture();
    let added = f.handle(named("a1"));
    f.handle(named("a2"));
    let get = f.handle(json!({"function": "get", "arguments": {"id": "001"}}));
    assert_eq!(get, added);
    let remove = |id: Value| json!({"function": "remove", "arguments": {"id": id}});
    assert_eq!(
        f.handle(remove(json!("009"))),
        error(9011, "Agent ID not found")
    );
    assert_eq!(
        f.handle(remove(json!(1))),
        error(9011, "Agent ID not found")
    );
    assert_eq!(
        f.handle(json!({"function": "remove", "arguments": {}})),
        error(9010, "No such agent ID")
    );
    assert_eq!(
        f.handle(remove(json!("001"))),
        json!({"error": 0, "data": "Agent deleted successfully."})
    );
    assert!(!f.keys().contains(" a1 "));
    assert_eq!(ok(&f.db, "global get-agent-info 1"), "[]");
    assert_eq!(
        f.handle(remove(json!("001"))),
        error(9011, "Agent ID not found")
    );
    // The id of a removed agent is not given out again.
    assert_eq!(f.handle(named("a3"))["data"]["id"], "003");
}

#[test]
fn kept_removed_agents_become_marked_lines() {
    let f = fixture_with(RegistrarOptions {
        purge: false,
        ..RegistrarOptions::default()
    });
    let added = f.handle(named("a1"));
    f.handle(named("a2"));
    let key = added["data"]["key"].as_str().expect("key");
    f.handle(json!({"function": "remove", "arguments": {"id": "001"}}));
    assert!(f.keys().ends_with(&format!("001 !a1 any {key}\n")));
    f.handle(json!({"function": "remove", "arguments": {"id": "002", "purge": true}}));
    assert_eq!(f.keys(), format!("001 !a1 any {key}\n"));
    // A new registrar reads the marked line back: that id stays used, the purged one is free.
    let reopened = Registrar::open_with(
        f.home.path(),
        f.db.clone(),
        RegistrarOptions {
            purge: false,
            ..RegistrarOptions::default()
        },
    )
    .expect("reopen");
    assert_eq!(answer(&reopened.handle(&named("a1")))["data"]["id"], "002");
}

#[test]
fn a_batch_writes_once_and_answers_in_order() {
    let f = fixture();
    let messages: Vec<Value> = (0..10)
        .map(|i| named(&format!("agent{i}")))
        .chain([named("agent3"), json!("getconfig"), json!("frobnicate")])
        .collect();
    let answers = f.registrar.handle_batch(&messages);
    assert_eq!(answers.len(), 13);
    for (i, text) in answers.iter().take(10).enumerate() {
        assert_eq!(answer(text)["data"]["id"], format!("{:03}", i + 1));
    }
    assert_eq!(answer(&answers[10]), error(9008, "Duplicate name"));
    assert_eq!(answers[11], "err AUTHCOM getconfig needs arguments");
    assert_eq!(answers[12], "err Unrecognized command");
    assert_eq!(f.keys().lines().count(), 10);

    let too_many: Vec<Value> = (0..MAX_BATCH + 2)
        .map(|i| named(&format!("bulk{i}")))
        .collect();
    let answers = f.registrar.handle_batch(&too_many);
    assert_eq!(answers.len(), MAX_BATCH + 2);
    assert_eq!(answer(&answers[MAX_BATCH - 1])["error"], 0);
    assert_eq!(answer(&answers[MAX_BATCH]), error(9001, "Internal error"));
    assert_eq!(f.keys().lines().count(), 10 + MAX_BATCH);
}

#[test]
fn a_replaced_file_is_read_again() {
    let f = fixture();
    f.handle(named("a1"));
    let path = f.home.path().join("etc/client.keys");
    let key = "f".repeat(64);
    fs::write(
        &path,
        format!("001 a1 any {key}\n010 ext any {key}\nbroken line\n"),
    )
    .expect("replace");
    assert_eq!(f.handle(named("ext")), error(9008, "Duplicate name"));
    let next = f.handle(named("a2"));
    assert_eq!(next["data"]["id"], "011");
    assert!(f
        .keys()
        .starts_with(&format!("001 a1 any {key}\n010 ext any {key}\n011 a2 any ")));
}

#[test]
fn a_leftover_database_row_is_replaced() {
    let f = fixture();
    ok(
        &f.db,
        r#"global insert-agent {"id":1,"name":"ghost","date_add":5}"#,
    );
    assert_eq!(f.handle(named("a1"))["data"]["id"], "001");
    assert_eq!(f.agent(1)["name"], "a1");
}

#[test]
fn an_unreadable_file_refuses_the_batch() {
    let f = fixture();
    let path = f.home.path().join("etc/client.keys");
    fs::create_dir_all(&path).expect("a directory where the file should be");
    assert_eq!(f.handle(named("a1")), error(9001, "Internal error"));
    fs::remove_dir(&path).expect("rmdir");
    assert_eq!(f.handle(named("a1"))["data"]["id"], "001");
}

#[test]
fn open_reports_problems_but_not_missing_files() {
    let home = tempfile::tempdir().expect("home");
    let db: Arc<dyn WazuhDb> = Arc::new(test_support::db());
    assert!(Registrar::open(home.path(), db.clone()).is_ok());
    fs::create_dir_all(home.path().join("etc/client.keys")).expect("dir");
    let error = Registrar::open(home.path(), db).err().expect("unreadable");
    assert!(error.to_string().contains("client.keys"), "{error}");
    assert!(Path::new(home.path()).exists());
}

#[test]
fn registrar_and_router_are_shareable_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Registrar>();
    shareable::<crate::store::DaemonRouter>();
}
