//! Writes the seed corpora under `seeds/<target>/`: real frames, packages, merged files and
//! payloads built with the crate's own encoders and writers, and the JSON payloads of the stock
//! test vectors in `tests/data/`. Run by `seeds/make.sh`; the output is deterministic except for
//! Fernet tokens (random IVs), which do not change what the seeds reach.

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor as IoCursor;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clusterd::config::{ClusterJson, Dialect};
use clusterd::proto::connection::Connection;
use clusterd::proto::crypto::Cipher;
use clusterd::proto::decoder::{DecodeLimits, Decoder};
use clusterd::proto::encoder::encode_message;
use clusterd::proto::wazuh_error::WazuhError;
use clusterd::store::wire;
use clusterd::sync::metadata::{to_json, FileMeta, HashKind, Metadata};
use clusterd::sync::package::{zip::ZipPackageWriter, zlib::ZlibPackageWriter};
use clusterd::sync::MergedWriter;
use fuzz_common::{small_limits, Driver, Ops, Role, COMMANDS, KEY};
use serde_json::{json, Value};

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("seed dir");
        fs::write(dir.join(name), bytes).expect("seed file");
    }
}

/// Every string of a JSON document, with the key it was found under.
fn strings(v: &Value, key: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((key.to_string(), s.clone())),
        Value::Array(a) => a.iter().for_each(|x| strings(x, key, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| strings(x, k, out)),
        _ => {}
    }
}

/// Every `{"command": ..., "payload": ...}` object of a JSON document, with its parent key.
fn messages(v: &Value, key: &str, out: &mut Vec<(String, String, String)>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| messages(x, key, out)),
        Value::Object(m) => {
            if let (Some(Value::String(c)), Some(p)) = (m.get("command"), m.get("payload")) {
                let p = match p {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push((key.to_string(), c.clone(), p));
            }
            m.iter().for_each(|(k, x)| messages(x, k, out));
        }
        _ => {}
    }
}

fn metadata_sample(kind: HashKind) -> Metadata {
    let digest = match kind {
        HashKind::Md5 => "5d41402abc4b2a76b9719d911017c592".to_string(),
        HashKind::Blake2b512 => "e4cfa39a3d37be31c59609e807970799caa68a19bfaa15135f165085e01d41a65ba1e1b146aeb6bd0092b49eac214c103ccfa3a365954bbbe52f74a2b3620c94".to_string(),
    };
    let mut m = BTreeMap::new();
    m.insert(
        "etc/client.keys".to_string(),
        FileMeta {
            mod_time: 1_700_000_000.25,
            cluster_item_key: "etc/".into(),
            merged: false,
            merge_type: None,
            merge_name: None,
            digest: digest.clone(),
        },
    );
    m.insert(
        "etc/shared/default/agent.conf".to_string(),
        FileMeta {
            mod_time: 1_700_000_100.5,
            cluster_item_key: "etc/shared/".into(),
            merged: false,
            merge_type: None,
            merge_name: None,
            digest: digest.clone(),
        },
    );
    m.insert(
        "queue/cluster/worker1/agent-groups.merged".to_string(),
        FileMeta {
            mod_time: 1_700_000_200.0,
            cluster_item_key: "queue/agent-groups/".into(),
            merged: true,
            merge_type: Some("agent-groups".into()),
            merge_name: Some("queue/cluster/worker1/agent-groups.merged".into()),
            digest,
        },
    );
    m
}

fn frames(counter: u32, command: &str, payload: &[u8], cipher: &Cipher, chunk: usize) -> Vec<u8> {
    encode_message(counter, command, payload, cipher, chunk)
        .expect("frame")
        .concat()
}

/// The decoder target reads 5 bytes of limits, then pieces of `1 + len byte` bytes.
fn decoder_input(wire: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff, 0xff, 0xff, 0xff, 3];
    for piece in wire.chunks(256) {
        out.push((piece.len() - 1) as u8);
        out.extend_from_slice(piece);
    }
    out
}

/// The connection target: a table command index, then a u16-prefixed payload.
fn conn_op(out: &mut Vec<u8>, op: u8, command: &str, payload: &[u8]) {
    out.push(op);
    let i = COMMANDS.iter().position(|c| *c == command).expect("known command");
    out.push(i as u8);
    out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The id the connection target's `Connection` (seed 1) answers to its first `new_str`.
fn first_string_id(cipher: &Cipher) -> String {
    let mut conn: Connection<u32> = Connection::new(cipher.clone(), small_limits(), 1);
    let mut events = Vec::new();
    for f in encode_message(1, "new_str", b"11", cipher, usize::MAX).expect("frame") {
        conn.receive(&f, Instant::now(), &mut events).expect("receive");
    }
    let mut d = Decoder::new(DecodeLimits::default());
    let mut out = Vec::new();
    for f in conn.take_outbox() {
        d.feed(&f, Instant::now(), &mut out).expect("decode");
    }
    String::from_utf8(cipher.decrypt(&out[0].payload).expect("decrypt")).expect("id")
}

fn main() {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seeds = Seeds {
        root: std::env::args()
            .nth(1)
            .map_or_else(|| here.join("seeds"), PathBuf::from),
    };
    let stock = here.join("../tests/data/stock");
    let cipher = Cipher::from_cluster_key(KEY).expect("key");

    // Stock payloads, by where they were found.
    let mut all_strings = Vec::new();
    let mut all_messages = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(&stock).expect("tests/data/stock").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_slice(&fs::read(&p).expect("read")).expect("json");
            strings(&v, "", &mut all_strings);
            messages(&v, "", &mut all_messages);
        }
    }
    let json_strings: Vec<&(String, String)> = all_strings
        .iter()
        .filter(|(_, s)| {
            let t = s.trim_start();
            (t.starts_with('{') || t.starts_with('[')) && serde_json::from_str::<Value>(s).is_ok()
        })
        .collect();

    // fernet: the reference vectors, and tokens of this key.
    let vectors: Value = serde_json::from_slice(
        &fs::read(here.join("../tests/data/fernet_vectors.json")).expect("vectors"),
    )
    .expect("json");
    for (i, v) in vectors["vectors"].as_array().expect("vectors").iter().enumerate() {
        if v["key"] == KEY {
            seeds.put("fernet", &format!("vector-{i}"), v["token"].as_str().expect("token").as_bytes());
        }
    }
    seeds.put("fernet", "hello", &cipher.encrypt(b"worker1 wazuh worker 4.14.0"));
    seeds.put("fernet", "empty", &cipher.encrypt(b""));

    // decoder: encrypted cluster frames (one, several, divided) and a plaintext local frame.
    let hello = frames(1, "hello", b"worker1 wazuh worker 4.14.0", &cipher, usize::MAX);
    seeds.put("decoder", "hello", &decoder_input(&hello));
    let mut two = frames(7, "echo-c", b"keepalive", &cipher, usize::MAX);
    two.extend(frames(8, "ok", b"Client worker1 added", &cipher, usize::MAX));
    seeds.put("decoder", "two-frames", &decoder_input(&two));
    let big: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    seeds.put("decoder", "divided", &decoder_input(&frames(9, "str_upd", &big, &cipher, 1024)));
    seeds.put(
        "decoder",
        "local-get-config",
        &decoder_input(&frames(3, "get_config", b"", &Cipher::Plain, usize::MAX)),
    );

    // connection: string, file and cancel protocols.
    let sid = first_string_id(&cipher);
    let mut s = vec![1];
    conn_op(&mut s, 0, "new_str", b"11");
    conn_op(&mut s, 0, "str_upd", format!("{sid} hello ").as_bytes());
    conn_op(&mut s, 0, "str_upd", format!("{sid} world").as_bytes());
    conn_op(&mut s, 0, "err_str", b"11");
    seeds.put("connection", "long-string", &s);
    let mut s = vec![0];
    conn_op(&mut s, 0, "new_file", b"/queue/cluster/worker1/worker1-1.zip");
    conn_op(&mut s, 0, "file_upd", b"/queue/cluster/worker1/worker1-1.zip hello world");
    let mut end = b"/queue/cluster/worker1/worker1-1.zip ".to_vec();
    end.extend_from_slice(&[0u8; 32]);
    conn_op(&mut s, 0, "file_end", &end);
    seeds.put("connection", "file", &s);
    let mut s = vec![1];
    conn_op(&mut s, 0, "cancel_task", b"abc {\"error\": 3039}");
    conn_op(&mut s, 0, "echo", b"ping");
    conn_op(&mut s, 3, "echo", &big[..600]);
    s.push(4);
    s.extend_from_slice(&[0, 0]);
    conn_op(&mut s, 5, "ok", b"ping");
    seeds.put("connection", "echo-cancel", &s);

    // metadata, zip and zlib packages, merged files.
    for (kind, name) in [(HashKind::Md5, "md5"), (HashKind::Blake2b512, "blake2b")] {
        let json = serde_json::to_vec(&to_json(&metadata_sample(kind), kind)).expect("json");
        seeds.put("metadata", name, &json);
    }
    let md5_meta = serde_json::to_vec(&to_json(&metadata_sample(HashKind::Md5), HashKind::Md5)).expect("json");
    let blake_meta = serde_json::to_vec(&to_json(&metadata_sample(HashKind::Blake2b512), HashKind::Blake2b512))
        .expect("json");
    let files: [(&str, &[u8]); 3] = [
        ("etc/client.keys", b"001 agent1 any 0123456789abcdef0123456789abcdef\n"),
        ("etc/shared/default/agent.conf", b"<agent_config>\n</agent_config>\n"),
        ("queue/cluster/worker1/agent-groups.merged", b"7 001 2023-11-14 22:13:20.000000\ndefault"),
    ];
    let mut zip = ZipPackageWriter::new(IoCursor::new(Vec::new()));
    for (rel, content) in files {
        zip.add_file(rel, content.len() as u64, &mut &content[..]).expect("add");
    }
    seeds.put("package_zip", "three-files", &zip.finish(&md5_meta).expect("zip").into_inner());
    let zip = ZipPackageWriter::new(IoCursor::new(Vec::new()));
    seeds.put("package_zip", "metadata-only", &zip.finish(&md5_meta).expect("zip").into_inner());
    let mut zl = ZlibPackageWriter::new(IoCursor::new(Vec::new()), 1, 1 << 20);
    for (rel, content) in files {
        zl.add_file(rel, content.len() as u64, &mut &content[..]).expect("add");
    }
    seeds.put("package_zlib", "three-files", &zl.finish(&blake_meta).expect("zlib").into_inner());
    let zl = ZlibPackageWriter::new(IoCursor::new(Vec::new()), 1, 1 << 20);
    seeds.put("package_zlib", "metadata-only", &zl.finish(&blake_meta).expect("zlib").into_inner());
    for (dialect, name) in [(Dialect::V4_3, "4.3"), (Dialect::V4_14, "4.14")] {
        let mut w = MergedWriter::new(Vec::new(), dialect);
        w.write_record("001", 1_700_000_000.5, b"default").expect("record");
        w.write_record("002", 1_700_000_001.0, b"default,web").expect("record");
        w.write_record("003", 1_700_000_002.0, b"").expect("record");
        seeds.put("merged", name, &w.into_inner().expect("merged"));
    }

    // JSON payloads of the stock vectors.
    for (i, (key, s)) in json_strings.iter().enumerate() {
        let b = s.as_bytes();
        if s.contains("\"f\"") {
            seeds.put("dapi_request", &format!("stock-{i}"), b);
        }
        if key == "bytes" || s.contains("\"function\"") {
            seeds.put("authd", &format!("stock-{i}"), b);
        }
        if s.contains("__wazuh_exception__") || key.contains("error") {
            seeds.put("wazuh_error", &format!("stock-{i}"), b);
        }
    }
    // DAPI requests inside sendsync or dapi messages.
    for (i, (_, command, payload)) in all_messages.iter().enumerate() {
        if command == "dapi" || command == "dapi_fwd" {
            let body = payload.split_once(' ').map_or(payload.as_str(), |(_, b)| b);
            if body.starts_with('{') {
                seeds.put("dapi_request", &format!("msg-{i}"), body.as_bytes());
            }
        }
        if command == "sendsync" {
            let body = payload.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
            if let Ok(v) = serde_json::from_str::<Value>(body) {
                if let Some(m) = v.get("message") {
                    seeds.put("authd", &format!("msg-{i}"), m.to_string().as_bytes());
                }
            }
        }
    }
    seeds.put(
        "dapi_request",
        "distributed",
        json!({"f": {"__callable__": {"__name__": "get_agents_overview", "__module__": "wazuh.agent", "__qualname__": "get_agents_overview"}},
               "f_kwargs": {"agent_list": ["001", "002"], "node_id": "worker1"}, "request_type": "distributed_master",
               "wait_for_complete": false, "from_cluster": false, "broadcasting": false})
        .to_string()
        .as_bytes(),
    );
    seeds.put("authd", "getconfig", b"getconfig auth");
    seeds.put(
        "authd",
        "batch",
        b"{\"function\":\"add\",\"arguments\":{\"name\":\"agent1\",\"ip\":\"10.0.0.1\",\"groups\":\"default,web\"}}\n{\"function\":\"get\",\"arguments\":{\"id\":\"001\"}}\n{\"function\":\"remove\",\"arguments\":{\"id\":\"001\",\"purge\":true}}",
    );
    seeds.put("wazuh_error", "plain", b"Error 1013 - Unable to connect with socket: auth");
    seeds.put("wazuh_error", "own", &WazuhError::with_extra(3020, "timeout").to_payload());

    // ossec.conf, cluster.json, client.keys, wazuh-db frames.
    seeds.put(
        "ossec_conf",
        "master",
        b"<ossec_config>\n  <global>\n    <jsonout_output>yes</jsonout_output>\n  </global>\n  <cluster>\n    <name>wazuh</name>\n    <node_name>master-node</node_name>\n    <node_type>master</node_type>\n    <key>c98b62a9b6169ac5f67dae55ae4a9088</key>\n    <port>1516</port>\n    <bind_addr>0.0.0.0</bind_addr>\n    <nodes>\n        <node>wazuh-master</node>\n    </nodes>\n    <hidden>no</hidden>\n    <disabled>no</disabled>\n  </cluster>\n</ossec_config>\n",
    );
    seeds.put(
        "ossec_conf",
        "worker-two-blocks",
        b"<!-- comment -->\n<ossec_config>\n  <cluster>\n    <name>wazuh</name>\n    <node_name>worker1</node_name>\n    <node_type>worker</node_type>\n    <key>c98b62a9b6169ac5f67dae55ae4a9088</key>\n    <nodes><node>10.0.0.1</node><node>10.0.0.2</node></nodes>\n    <hidden>yes</hidden>\n    <disabled>no</disabled>\n  </cluster>\n</ossec_config>\n<ossec_config>\n  <cluster><port>1517</port></cluster>\n</ossec_config>\n",
    );
    for (dialect, name) in [(Dialect::V4_3, "defaults-4.3"), (Dialect::V4_14, "defaults-4.14")] {
        let json = serde_json::to_vec_pretty(&ClusterJson::defaults(dialect).to_json()).expect("json");
        seeds.put("cluster_json", name, &json);
    }
    seeds.put(
        "cluster_json",
        "intervals",
        br#"{"intervals": {"worker": {"sync_integrity": 5, "sync_agent_info": 10}, "master": {"recalculate_integrity": 4, "max_locked_integrity_time": 100}, "communication": {"timeout_cluster_request": 10, "max_zip_size": 1073741824}}, "distributed_api": {"enabled": false}}"#,
    );
    seeds.put(
        "client_keys",
        "agents",
        b"001 agent1 any 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n002 web-01 10.0.1.22 fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210\n003 !db-01 10.0.1.23 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n# comment\n004 lab 10.0.0.0/24 aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899\n",
    );
    for (name, text) in [
        ("ok-json", "ok [{\"id\":1,\"name\":\"agent1\"}]"),
        ("due", "due [{\"data\":[]}]"),
        ("err", "err Invalid DB query syntax"),
        ("ok", "ok"),
    ] {
        seeds.put("wdb_wire", name, &wire::encode(text).expect("frame"));
    }

    // Node targets: op sequences in the driver's format. Replies and string ids the node gives
    // are deterministic (fixed seeds), so `send_with_sid` finds the right id when fuzzing.
    let stock_msgs = |dir: &str| -> Vec<(String, String)> {
        all_messages
            .iter()
            .filter(|(k, _, _)| k.contains(dir))
            .map(|(_, c, p)| (c.clone(), p.clone()))
            .collect()
    };
    for (first, dialect_name) in [(0u8, "4.14"), (1u8, "4.3")] {
        // node_master: the worker's requests.
        let mut ops = Ops::default();
        ops.send("echo-c", b"keepalive").send("syn_i_w_m_p", b"").send("syn_a_w_m_p", b"");
        ops.send("get_nodes", b"{\"filter_node\": null, \"offset\": 0, \"limit\": 500}")
            .send("get_health", b"{\"filter_node\": null}");
        seeds.put("node_master", &format!("basic-{dialect_name}"), &[&[first][..], &ops.bytes].concat());
        for (key, s) in &all_strings {
            if key == "string" && s.contains("sync-agent-info-set") {
                let mut ops = Ops::default();
                ops.long_string("syn_a_w_m", s.as_bytes()).fail_job("database is locked").tick(2);
                let tag = if s.contains("\"payload\"") { "4.14" } else { "4.3" };
                seeds.put("node_master", &format!("agent-info-string-{tag}"), &[&[first][..], &ops.bytes].concat());
            }
        }
        let mut ops = Ops::default();
        for (c, p) in stock_msgs("worker_to_master") {
            ops.send(&c, p.as_bytes());
        }
        ops.tick(1);
        seeds.put("node_master", &format!("sendsync-{dialect_name}"), &[&[first][..], &ops.bytes].concat());
        let mut ops = Ops::default();
        ops.send("syn_i_w_m", b"")
            .send("new_file", b"/queue/cluster/worker1/worker1-1.zip")
            .send("file_upd", b"/queue/cluster/worker1/worker1-1.zip PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0")
            .send("file_end", &end)
            .send_with_sid("syn_i_w_m_e", b" /queue/cluster/worker1/worker1-1.zip")
            .fail_job("bad package");
        seeds.put("node_master", &format!("integrity-{dialect_name}"), &[&[first][..], &ops.bytes].concat());
        let mut ops = Ops::default();
        ops.send("syn_w_g_c", b"").tick(5).fail_job("locked");
        for (key, s) in &all_strings {
            if key == "payload_example" {
                ops.reply(0, "syn_w_g_e", s.as_bytes());
                ops.send("syn_wgc_e", s.as_bytes());
                ops.send("syn_m_a_e", s.as_bytes());
            }
        }
        seeds.put("node_master", &format!("groups-{dialect_name}"), &[&[first][..], &ops.bytes].concat());

        // node_worker: the master's requests and replies.
        let mut ops = Ops::default();
        ops.tick(3).reply(0, "ok", b"True").reply(0, "ok", b"ok").tick(3);
        for (key, s) in &all_strings {
            if key == "long_string" {
                ops.long_string("syn_g_m_w", s.as_bytes());
            }
        }
        ops.fail_job("locked").tick(130);
        seeds.put("node_worker", &format!("groups-{dialect_name}"), &[&[first][..], &ops.bytes].concat());
        let mut ops = Ops::default();
        for (c, p) in stock_msgs("master_to_worker") {
            ops.send(&c, p.as_bytes());
        }
        ops.long_string("sendsyn_res", b"{\"error\":0,\"data\":\"Agent deleted successfully.\"}");
        ops.send("sendsyn_res", b"734211 1").send("sendsyn_err", b"734211 Error 1013");
        ops.send("dapi", b"worker1*1 {\"f\": {\"__callable__\": {\"__name__\": \"get_agents_overview\", \"__module__\": \"wazuh.agent\", \"__qualname__\": \"get_agents_overview\"}}, \"f_kwargs\": {}, \"request_type\": \"local_any\"}");
        ops.send("syn_m_c_ok", b"").send("syn_m_c", b"").send("syn_m_c_r", b"error").tick(1);
        seeds.put("node_worker", &format!("master-requests-{dialect_name}"), &[&[first][..], &ops.bytes].concat());

        // node_local: the local client's requests, on a master (first & 2 == 0) and a worker.
        for (role_bit, role) in [(0u8, "master"), (2u8, "worker")] {
            let mut ops = Ops::default();
            ops.send("get_config", b"").send("get_runtime", b"").send("echo-c", b"keepalive");
            for (c, p) in stock_msgs("local_request") {
                ops.send(&c, p.as_bytes());
            }
            seeds.put("node_local", &format!("stock-{role}-{dialect_name}"), &[&[first | role_bit][..], &ops.bytes].concat());
            let mut ops = Ops::default();
            for (key, s) in &all_strings {
                if key == "payload" && (s.contains("filter_node") || s.contains("__callable__")) {
                    ops.send(if s.contains("__callable__") { "dapi" } else { "get_nodes" }, s.as_bytes());
                }
            }
            ops.send("get_hash", b"").send("sendrreload", b"");
            ops.send("send_file", b"/var/ossec/queue/cluster/file.txt worker1").read(b"data").tick(1);
            ops.fail_job("failed").tick(10);
            seeds.put("node_local", &format!("control-{role}-{dialect_name}"), &[&[first | role_bit][..], &ops.bytes].concat());
        }
    }

    // Sanity: the node seeds run without tripping the driver's own checks.
    for target in ["node_master", "node_worker", "node_local"] {
        let dir = seeds.root.join(target);
        let mut names: Vec<_> = fs::read_dir(&dir).expect("dir").flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let data = fs::read(&p).expect("seed");
            let first = data[0];
            let dialect = if first & 1 == 0 { Dialect::V4_14 } else { Dialect::V4_3 };
            let role = match target {
                "node_master" => Role::Worker,
                "node_worker" => Role::Master,
                _ => Role::Local { master: first & 2 == 0 },
            };
            let mut d = Driver::new(role, dialect);
            d.record = Some(Vec::new());
            d.run(&data[1..]);
            let sent = d.record.take().unwrap_or_default();
            eprintln!("{}: {} messages from the node", rel(&p, &seeds.root), sent.len());
            for (counter, command, payload) in sent.iter().take(24) {
                let text = String::from_utf8_lossy(&payload[..payload.len().min(90)]).into_owned();
                eprintln!("    {counter} {command} {text}");
            }
        }
    }
}

fn rel(p: &Path, root: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}
