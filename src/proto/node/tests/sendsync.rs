//! Simulation of sendsync (daemon requests through any node) and of the agent listing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::pool::{AgentEnv, DaemonForwarder};
use crate::proto::command::Command;
use crate::store::{EmbeddedDb, WdbStatus};

/// Registers agents like authd: `{"error":0,"data":{"id":...}}`, or fails names starting with `bad`.
#[derive(Default)]
struct FakeAuthd {
    batches: Mutex<Vec<usize>>,
    next_id: AtomicU32,
}

impl DaemonForwarder for FakeAuthd {
    fn forward_batch(&self, requests: &[Vec<u8>]) -> Vec<Result<String, String>> {
        self.batches.lock().unwrap().push(requests.len());
        requests
            .iter()
            .map(|r| {
                let request: Value = serde_json::from_slice(r).unwrap();
                let name = request["message"]["arguments"]["name"]
                    .as_str()
                    .unwrap_or("");
                if name.starts_with("bad") {
                    return Err("Error 1013 - Unable to connect with socket: auth".into());
                }
                let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(json!({"error": 0, "data": {"id": format!("{id:03}"), "name": name, "ip": "any",
                                               "key": "d4a7bf9c"}})
                .to_string())
            })
            .collect()
    }
}

/// A master with a registration service and `workers` 4.14 workers, links up.
fn cluster(workers: usize) -> (Sim, Arc<FakeAuthd>) {
    let names: Vec<NodeSettings> = (1..=workers).map(|i| good14(&format!("w{i}"))).collect();
    let mut sim = Sim::new(settings("master", true, "wazuh", "4.14.7", KEY), names);
    let authd = Arc::new(FakeAuthd::default());
    let db = EmbeddedDb::in_memory().unwrap();
    sim.agent_envs.insert(
        None,
        Arc::new(AgentEnv {
            db: Arc::new(db),
            daemons: Some(authd.clone()),
            dialect: Dialect::V4_14,
            node_name: "master".into(),
            home: std::path::PathBuf::from("/nonexistent"),
        }),
    );
    sim.run_for(Duration::from_secs(1));
    (sim, authd)
}

fn registration(name: &str) -> Vec<u8> {
    json!({"daemon_name": "authd",
           "message": {"arguments": {"name": name, "ip": "any", "groups": "default"}, "function": "add"}})
    .to_string()
    .into_bytes()
}

/// What a local client received: replies to its requests and new requests from the node.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Reply(Command, Vec<u8>),
    Request(Command, Vec<u8>),
}

impl Got {
    fn text(&self) -> String {
        let (Got::Reply(_, p) | Got::Request(_, p)) = self;
        String::from_utf8_lossy(p).into_owned()
    }
}

/// A local client that, like Wazuh's C daemons, never answers the node's requests.
struct Client {
    node: Option<usize>,
    conn: ConnId,
    peer: Connection<()>,
    got: Vec<Got>,
}

impl Client {
    fn open(sim: &mut Sim, node: Option<usize>) -> Client {
        let now = sim.now();
        let conn = sim.node(node).accept_local(now);
        Client {
            node,
            conn,
            peer: Connection::new(Cipher::Plain, ConnLimits::default(), conn),
            got: Vec::new(),
        }
    }

    fn send(&mut self, sim: &mut Sim, command: &str, payload: &[u8]) {
        let now = sim.now();
        self.peer
            .request(command, payload, (), now.mono, Duration::from_secs(60))
            .unwrap();
        for frame in self.peer.take_outbox() {
            sim.node(self.node).receive(self.conn, &frame, now);
        }
    }
}

/// Lets the cluster settle and hands every client what was sent to it.
fn deliver(sim: &mut Sim, clients: &mut [Client]) {
    sim.settle();
    let now = sim.now();
    let frames = std::mem::take(&mut sim.unrouted);
    for (node, conn, frame) in frames {
        let Some(client) = clients
            .iter_mut()
            .find(|c| c.node == node && c.conn == conn)
        else {
            sim.unrouted.push((node, conn, frame));
            continue;
        };
        let mut events = Vec::new();
        client.peer.receive(&frame, now.mono, &mut events).unwrap();
        for event in events {
            match event {
                Event::Reply {
                    command, payload, ..
                } => client.got.push(Got::Reply(command, payload)),
                Event::Request {
                    command, payload, ..
                } => client.got.push(Got::Request(command, payload)),
                Event::Cancelled { .. } => {}
            }
        }
    }
}

fn error_code(payload: &str) -> u64 {
    let value: Value = serde_json::from_str(payload).unwrap();
    value["__wazuh_exception__"]["__object__"]["code"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_workers_local_sendsync_reaches_the_masters_daemon_and_the_answer_comes_back() {
    let (mut sim, authd) = cluster(1);
    let mut clients = [Client::open(&mut sim, Some(0))];
    clients[0].send(&mut sim, "sendsync", &registration("agent-a"));
    deliver(&mut sim, &mut clients);
    // No reply of its own: the daemon's answer arrives as a request `ok`, alone.
    let got = &clients[0].got;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(&got[0], Got::Request(Command::Ok, _)), "{got:?}");
    let answer: Value = serde_json::from_str(&got[0].text()).unwrap();
    assert_eq!(answer["error"], 0);
    assert_eq!(answer["data"]["name"], "agent-a");
    assert_eq!(*authd.batches.lock().unwrap(), vec![1]);
}

#[test]
fn a_daemon_error_reaches_the_client_as_an_err_request() {
    let (mut sim, _) = cluster(1);
    let mut clients = [
        Client::open(&mut sim, Some(0)),
        Client::open(&mut sim, Some(0)),
    ];
    clients[0].send(&mut sim, "sendsync", &registration("bad-agent"));
    clients[1].send(&mut sim, "sendsync", b"{not json");
    deliver(&mut sim, &mut clients);
    assert_eq!(
        clients[0].got,
        [Got::Request(
            Command::Err,
            b"Error 1013 - Unable to connect with socket: auth".to_vec()
        )]
    );
    let [Got::Request(Command::Err, text)] = &clients[1].got[..] else {
        panic!("{:?}", clients[1].got);
    };
    assert!(String::from_utf8_lossy(text)
        .starts_with("Error 3036 - JSON couldn't be loaded: the request is not JSON"));
}

#[test]
fn sendasync_is_acknowledged_at_once_and_answered_later() {
    let (mut sim, _) = cluster(1);
    let mut clients = [Client::open(&mut sim, Some(0))];
    clients[0].send(&mut sim, "sendasync", &registration("agent-b"));
    deliver(&mut sim, &mut clients);
    let got = &clients[0].got;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0],
        Got::Reply(
            Command::Ok,
            b"Added request to sendsync requests queue".to_vec()
        )
    );
    assert!(
        matches!(&got[1], Got::Request(Command::Ok, p) if String::from_utf8_lossy(p).contains("agent-b"))
    );
}

#[test]
fn six_hundred_requests_share_a_few_batches_and_each_client_gets_its_own_answer() {
    let (mut sim, authd) = cluster(2);
    let mut clients: Vec<Client> = (0..600)
        .map(|i| Client::open(&mut sim, Some(i % 2)))
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(&mut sim, "sendsync", &registration(&format!("agent-{i}")));
    }
    deliver(&mut sim, &mut clients);
    let batches = authd.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 600, "{batches:?}");
    // The first request starts a batch alone; the rest arrive meanwhile and share the next ones.
    assert!(batches.len() <= 3, "{batches:?}");
    assert!(batches.iter().all(|b| *b <= 512), "{batches:?}");
    let mut ids = std::collections::HashSet::new();
    for (i, client) in clients.iter().enumerate() {
        let [Got::Request(Command::Ok, payload)] = &client.got[..] else {
            panic!("client {i}: {:?}", client.got);
        };
        let answer: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(answer["data"]["name"], format!("agent-{i}"));
        assert!(ids.insert(answer["data"]["id"].as_str().unwrap().to_string()));
    }
}

/// Cuts every link between the master and the workers.
fn cut_links(sim: &mut Sim) {
    sim.cut(None);
}

#[test]
fn without_a_link_the_client_gets_3023_and_waiting_requests_fail_with_it() {
    let (mut sim, _) = cluster(1);
    // The master never hears of this one; then the link breaks.
    sim.muted.push(0);
    let mut clients = [
        Client::open(&mut sim, Some(0)),
        Client::open(&mut sim, Some(0)),
        Client::open(&mut sim, Some(0)),
    ];
    clients[0].send(&mut sim, "sendsync", &registration("lost"));
    deliver(&mut sim, &mut clients);
    assert!(clients[0].got.is_empty());
    cut_links(&mut sim);
    sim.muted.clear();
    clients[1].send(&mut sim, "sendsync", &registration("early"));
    clients[2].send(&mut sim, "sendasync", &registration("early"));
    deliver(&mut sim, &mut clients);
    for (i, client) in clients.iter().enumerate() {
        let [got] = &client.got[..] else {
            panic!("client {i}: {:?}", client.got);
        };
        if i == 2 {
            assert!(matches!(got, Got::Reply(Command::Err, _)), "{got:?}");
        } else {
            assert!(matches!(got, Got::Request(Command::Err, _)), "{got:?}");
        }
        assert_eq!(error_code(&got.text()), 3023, "client {i}");
    }
}

#[test]
fn a_request_the_master_never_acknowledges_fails_once() {
    let (mut sim, _) = cluster(1);
    sim.muted.push(0);
    let mut clients = [Client::open(&mut sim, Some(0))];
    clients[0].send(&mut sim, "sendsync", &registration("unheard"));
    sim.run_for(Duration::from_secs(12));
    deliver(&mut sim, &mut clients);
    let [Got::Request(Command::Err, payload)] = &clients[0].got[..] else {
        panic!("{:?}", clients[0].got);
    };
    // The relayed request timed out (before the failed keepalives end the link).
    let text = String::from_utf8_lossy(payload);
    assert_eq!(error_code(&text), 3000);
    assert!(text.contains("the master did not answer in time"), "{text}");
}

#[test]
fn the_masters_own_local_socket_takes_sendsync_too() {
    let (mut sim, _) = cluster(0);
    let mut clients = [Client::open(&mut sim, None), Client::open(&mut sim, None)];
    clients[0].send(&mut sim, "sendsync", &registration("on-master"));
    clients[1].send(&mut sim, "sendasync", &registration("bad-on-master"));
    deliver(&mut sim, &mut clients);
    assert!(
        matches!(&clients[0].got[..], [Got::Request(Command::Ok, p)] if String::from_utf8_lossy(p).contains("on-master")),
        "{:?}",
        clients[0].got
    );
    assert_eq!(
        clients[1].got,
        [
            Got::Reply(
                Command::Ok,
                b"Added request to sendsync requests queue".to_vec()
            ),
            Got::Request(
                Command::Err,
                b"Error 1013 - Unable to connect with socket: auth".to_vec()
            )
        ]
    );
}

#[test]
fn oversized_requests_are_refused_at_once() {
    let (mut sim, authd) = cluster(1);
    let mut clients = [Client::open(&mut sim, Some(0))];
    let huge = vec![b' '; 1_000_001];
    clients[0].send(&mut sim, "sendsync", &huge);
    deliver(&mut sim, &mut clients);
    let [got @ Got::Request(Command::Err, _)] = &clients[0].got[..] else {
        panic!("{:?}", clients[0].got);
    };
    assert_eq!(error_code(&got.text()), 3050);
    assert!(authd.batches.lock().unwrap().is_empty());
}

/// Agents 1..=n in the master's database; odd ids active on `w1`, even ones disconnected on `w2`.
fn add_agents(sim: &mut Sim, n: u32) {
    let db = sim.agent_env(None).db.clone();
    for id in 1..=n {
        let insert = format!(
            r#"global insert-agent {{"id":{id},"name":"agent-{id}","ip":"10.1.0.{}","date_add":1000}}"#,
            id % 250
        );
        assert_eq!(db.query(&insert).unwrap().status, WdbStatus::Ok);
        let (node, status) = if id % 2 == 1 {
            ("w1", "active")
        } else {
            ("w2", "disconnected")
        };
        let info = format!(
            r#"global sync-agent-info-set [{{"id":{id},"name":"agent-{id}","ip":"10.1.0.{}","version":"Wazuh v4.14.7","node_name":"{node}","connection_status":"{status}","group_config_status":"synced"}}]"#,
            id % 250
        );
        assert_eq!(db.query(&info).unwrap().status, WdbStatus::Ok);
    }
}

#[test]
fn agents_are_listed_on_the_master_and_through_a_worker() {
    let (mut sim, _) = cluster(1);
    add_agents(&mut sim, 25);
    let args = br#"{"offset": 0, "limit": 10, "filter_node": ["w1"], "filter_status": null}"#;
    let on_master = sim.local_call(None, "get_agents", args);
    assert_eq!(on_master["totalItems"], 13);
    let items = on_master["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    assert_eq!(
        items[0],
        json!({"id": "001", "name": "agent-1", "ip": "10.1.0.1", "status": "active",
               "version": "Wazuh v4.14.7", "node_name": "w1"})
    );
    let through_worker = sim.local_call(Some(0), "get_agents", args);
    assert_eq!(through_worker, on_master);
    let all = sim.local_call(Some(0), "get_agents", br#"{"offset": 20, "limit": 1000}"#);
    assert_eq!(all["totalItems"], 26, "the manager's own row is listed too");
    assert_eq!(all["items"].as_array().unwrap().len(), 6);
}

#[test]
fn invalid_listing_arguments_are_wazuh_errors_on_both_roles() {
    let (mut sim, _) = cluster(1);
    for node in [None, Some(0)] {
        let mut clients = [Client::open(&mut sim, node)];
        clients[0].send(&mut sim, "get_agents", br#"{"limit": 5000}"#);
        deliver(&mut sim, &mut clients);
        let err = clients[0]
            .got
            .iter()
            .find(|g| {
                matches!(
                    g,
                    Got::Reply(Command::Err, _) | Got::Request(Command::Err, _)
                )
            })
            .unwrap_or_else(|| panic!("{:?}", clients[0].got));
        assert_eq!(error_code(&err.text()), 1405);
    }
}

#[test]
fn health_reports_active_agents_per_node() {
    let (mut sim, _) = cluster(1);
    add_agents(&mut sim, 9);
    sim.run_for(Duration::from_secs(6));
    let health = sim.local_call(None, "get_health", b"null");
    assert_eq!(health["nodes"]["w1"]["info"]["n_active_agents"], 5);
    assert_eq!(health["nodes"]["master"]["info"]["n_active_agents"], 0);
}
