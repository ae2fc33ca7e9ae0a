//! Registration requests as authd's local socket receives them, handled by the embedded
//! registration service (`clusterd::store::registration::Registrar::handle_batch`, which parses
//! them with `store::registration::authd::parse`): a JSON object or text per line, up to 8 per
//! input, against `etc/client.keys` in a temporary directory and an in-memory agent database.
//!
//! Building a registrar (schema, files) costs far more than one request, so one is reused for
//! 256 inputs, then rebuilt from nothing; each input is also a batch of its own, so a crash found
//! here reproduces from the input alone in nearly every case.
#![no_main]

use std::sync::{Arc, Mutex};

use clusterd::store::registration::ip::AgentIp;
use clusterd::store::registration::{Registrar, RegistrarOptions};
use clusterd::store::EmbeddedDb;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Fixture {
    _home: tempfile::TempDir,
    registrar: Registrar,
    uses: u32,
}

fn fixture() -> Fixture {
    let base = std::env::var_os("FUZZ_TMPDIR").map_or_else(std::env::temp_dir, Into::into);
    let home = tempfile::Builder::new()
        .prefix("clusterd-fuzz-")
        .tempdir_in(base)
        .expect("home");
    for group in ["default", "web", "db"] {
        std::fs::create_dir_all(home.path().join("etc/shared").join(group)).expect("group dir");
    }
    let db = Arc::new(EmbeddedDb::in_memory().expect("database"));
    let registrar = Registrar::open_with(
        home.path(),
        db,
        RegistrarOptions {
            manager_name: Some("manager".into()),
            ..RegistrarOptions::default()
        },
    )
    .expect("registrar")
    .with_clock(|| 1_700_000_000);
    Fixture {
        _home: home,
        registrar,
        uses: 0,
    }
}

static FIXTURE: Mutex<Option<Fixture>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    // One socket message is at most 64 KiB.
    if data.len() > 64 << 10 {
        return;
    }
    let messages: Vec<Value> = data
        .split(|b| *b == b'\n')
        .take(8)
        .map(|line| {
            serde_json::from_slice::<Value>(line)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(line).into_owned()))
        })
        .collect();
    let mut guard = FIXTURE.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_none_or(|f| f.uses >= 256) {
        *guard = None;
        *guard = Some(fixture());
    }
    let f = guard.as_mut().expect("fixture");
    f.uses += 1;
    let answers = f.registrar.handle_batch(&messages);
    assert_eq!(answers.len(), messages.len());
    for answer in &answers {
        // authd answers a JSON object to a request, `err <text>` to a configuration command.
        let object = serde_json::from_str::<Value>(answer).is_ok_and(|v| v.is_object());
        assert!(object || answer.starts_with("err "), "malformed answer: {answer}");
    }
    for m in &messages {
        if let Some(ip) = m.pointer("/arguments/ip").and_then(Value::as_str) {
            if let Some(ip) = AgentIp::parse(ip) {
                let _ = ip.file_form();
            }
        }
    }
});
