//! [`Registrar`]: agent registration on the master when no authd runs there.
//!
//! It answers authd's local requests (`add`, `remove`, `get`) with authd's answers, keeps
//! `etc/client.keys` and records the agents in the agent database as authd's writer does.
//!
//! Requests come in batches so that a burst of registrations costs one file write. Within a batch,
//! requests are applied in order to the keys held in memory; then `client.keys` is written once and
//! only then is any answer given, so an answer means the key is on disk. If the file cannot be
//! written, every request that changed something is answered with an error and the keys are read
//! back from the file: nothing of the batch remains. The database is changed only after the file
//! is written, in request order (removals before the insertion of the agent replacing them), so a
//! failed batch leaves nothing behind there either. Database failures after that point are logged,
//! as authd does: the key is already durable and the agent can connect.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::authd::{self, AddRequest, AuthdError, ForceOptions, Request};
use super::ip::AgentIp;
use super::keys::{self, FileStamp, KeyEntry, KeyStore};
use super::records::{self, AgentState, DbOp, NewAgent};
use super::RegistrationError;
use crate::store::WazuhDb;

/// Most requests handled in one batch; the rest of a longer batch is answered with an error.
pub const MAX_BATCH: usize = 1024;
/// Group given to agents registered without one. authd leaves such agents without a group and
/// remoted gives them one when they first connect (when its group request reaches the master,
/// only agents still without groups are affected); assigning it at registration means the agent
/// has a group even where no remoted answers those requests.
const DEFAULT_GROUP: &str = "default";

/// How the registrar behaves where authd is configurable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarOptions {
    /// authd's `<purge>`: when false, a removed agent stays in `client.keys` as a `!` line (unless
    /// the request asks to purge it). Wazuh ships `yes`.
    pub purge: bool,
    /// Replacement rules for requests that do not carry their own `force` member.
    pub force: ForceOptions,
    /// The manager's name, which no agent may take; `None`: this host's name.
    pub manager_name: Option<String>,
}

impl Default for RegistrarOptions {
    fn default() -> RegistrarOptions {
        RegistrarOptions {
            purge: true,
            force: ForceOptions::default(),
            manager_name: None,
        }
    }
}

/// The keys in memory and the file version they came from.
struct State {
    store: KeyStore,
    /// Stamp of `client.keys` when last read or written (`None`: there was no file).
    stamp: Option<FileStamp>,
    /// The memory no longer matches any file version: read the file before the next batch.
    stale: bool,
}

/// Per-batch bookkeeping.
#[derive(Default)]
struct Batch {
    ops: Vec<DbOp>,
    /// Agents added in this batch (not yet in the database): their registration time.
    pending: HashMap<u32, i64>,
}

/// The embedded registration service. Thread-safe: batches run one at a time.
pub struct Registrar {
    keys_path: PathBuf,
    shared_dir: PathBuf,
    db: Arc<dyn WazuhDb>,
    force: ForceOptions,
    manager_name: String,
    clock: fn() -> i64,
    state: Mutex<State>,
}

fn system_clock() -> i64 {
    chrono::Utc::now().timestamp()
}

/// This host's name, as authd compares agent names with; `localhost` when unknown, as authd does.
fn host_name() -> String {
    crate::store::host::name().unwrap_or_else(|| "localhost".to_owned())
}

impl Registrar {
    /// Opens the registrar of the installation at `home`, reading `etc/client.keys` (a missing
    /// file is an empty one), behaving as authd configured as Wazuh ships it.
    pub fn open(home: &Path, db: Arc<dyn WazuhDb>) -> Result<Registrar, RegistrationError> {
        Registrar::open_with(home, db, RegistrarOptions::default())
    }

    /// [`Registrar::open`] with explicit options.
    pub fn open_with(
        home: &Path,
        db: Arc<dyn WazuhDb>,
        options: RegistrarOptions,
    ) -> Result<Registrar, RegistrationError> {
        let registrar = Registrar {
            keys_path: home.join("etc/client.keys"),
            shared_dir: home.join("etc/shared"),
            db,
            force: options.force,
            manager_name: options.manager_name.unwrap_or_else(host_name),
            clock: system_clock,
            state: Mutex::new(State {
                store: KeyStore::new(!options.purge),
                stamp: None,
                stale: true,
            }),
        };
        {
            let mut state = registrar.lock();
            registrar.reload(&mut state)?;
        }
        Ok(registrar)
    }

    /// Replaces the clock (seconds since the epoch) used for registration times and force rules.
    pub fn with_clock(mut self, clock: fn() -> i64) -> Registrar {
        self.clock = clock;
        self
    }

    /// The `client.keys` this registrar keeps.
    pub fn keys_path(&self) -> &Path {
        &self.keys_path
    }

    /// Handles one request: a batch of one.
    pub fn handle(&self, message: &Value) -> String {
        self.handle_batch(std::slice::from_ref(message))
            .pop()
            .unwrap_or_else(|| AuthdError::Internal.answer())
    }

    /// Handles requests in order and answers each, in order. `client.keys` is written once, after
    /// all changes and before any answer is returned.
    pub fn handle_batch(&self, messages: &[Value]) -> Vec<String> {
        let mut state = self.lock();
        let (taken, overflow) = messages.split_at(messages.len().min(MAX_BATCH));
        if !overflow.is_empty() {
            tracing::warn!(
                "Registration batch of {} requests: the {} beyond {MAX_BATCH} are refused",
                messages.len(),
                overflow.len()
            );
        }
        let mut answers = Vec::with_capacity(messages.len());
        if let Err(error) = self.refresh(&mut state) {
            tracing::error!("Agent registration unavailable: {error}");
            answers.resize(messages.len(), AuthdError::Internal.answer());
            return answers;
        }
        let counter_before = state.store.id_counter();
        let now = (self.clock)();
        let mut batch = Batch::default();
        let mut changed = Vec::with_capacity(taken.len());
        for message in taken {
            let (answer, did_change) = self.apply(&mut state.store, message, now, &mut batch);
            answers.push(answer);
            changed.push(did_change);
        }
        if changed.contains(&true) {
            let text = state.store.render();
            match keys::write_atomic(&self.keys_path, text.as_bytes()) {
                Ok(stamp) => {
                    state.stamp = Some(stamp);
                    records::apply(self.db.as_ref(), batch.ops);
                }
                Err(error) => {
                    tracing::error!(
                        "Cannot write {}: {error}; {} registration changes undone",
                        self.keys_path.display(),
                        changed.iter().filter(|c| **c).count()
                    );
                    state.store.set_id_counter(counter_before);
                    if let Err(error) = self.reload(&mut state) {
                        tracing::error!("Agent keys not read back: {error}");
                    }
                    for (answer, did_change) in answers.iter_mut().zip(&changed) {
                        if *did_change {
                            *answer = AuthdError::Internal.answer();
                        }
                    }
                }
            }
        }
        answers.resize(messages.len(), AuthdError::Internal.answer());
        answers
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            self.state.clear_poison();
            let mut state = poisoned.into_inner();
            // A batch stopped half-way: only the file can be trusted.
            state.stale = true;
            state
        })
    }

    /// Reads the file again when it changed since it was last read or written.
    fn refresh(&self, state: &mut State) -> Result<(), RegistrationError> {
        if !state.stale {
            let current = FileStamp::current(&self.keys_path).map_err(|e| self.read_error(e))?;
            if current == state.stamp {
                return Ok(());
            }
            tracing::info!(
                "{} changed since it was last written: reading it again",
                self.keys_path.display()
            );
        }
        self.reload(state)
    }

    fn read_error(&self, source: impl Into<keys::ReadError>) -> RegistrationError {
        RegistrationError::Read {
            path: self.keys_path.display().to_string(),
            source: source.into(),
        }
    }

    /// Replaces the keys in memory by the file's. The highest id used never goes down, so an id
    /// given out before is not given out again.
    fn reload(&self, state: &mut State) -> Result<(), RegistrationError> {
        let counter = state.store.id_counter();
        let keep_removed = state.store.keeps_removed();
        match keys::read(&self.keys_path) {
            Ok(Some((text, stamp))) => {
                let (mut store, problems) = KeyStore::parse(&text, keep_removed);
                for problem in problems {
                    tracing::warn!("{}, {problem}: line skipped", self.keys_path.display());
                }
                store.note_id(counter);
                *state = State {
                    store,
                    stamp: Some(stamp),
                    stale: false,
                };
                Ok(())
            }
            Ok(None) => {
                let mut store = KeyStore::new(keep_removed);
                store.note_id(counter);
                *state = State {
                    store,
                    stamp: None,
                    stale: false,
                };
                Ok(())
            }
            Err(error) => {
                state.stale = true;
                Err(self.read_error(error))
            }
        }
    }

    /// Applies one request to the keys in memory: its answer, and whether it changed anything.
    fn apply(
        &self,
        store: &mut KeyStore,
        message: &Value,
        now: i64,
        batch: &mut Batch,
    ) -> (String, bool) {
        match authd::parse(message) {
            Err(error) => (error.answer(), false),
            Ok(Request::Command(text)) => (command_answer(&text), false),
            Ok(Request::Get { id }) => {
                let found = id
                    .as_deref()
                    .and_then(|text| keys::parse_id(text).map(|n| (text, n)))
                    .and_then(|(text, n)| store.by_id(n).map(|entry| (text, entry)));
                match found {
                    Some((text, entry)) => (
                        authd::agent_answer(text, &entry.name, entry.ip.addr(), &entry.key),
                        false,
                    ),
                    None => (AuthdError::NoAgent.answer(), false),
                }
            }
            Ok(Request::Remove { id, purge }) => {
                let removed = id
                    .as_deref()
                    .and_then(keys::parse_id)
                    .and_then(|n| store.remove(n, purge));
                match removed {
                    Some(entry) => {
                        tracing::info!("Agent {} ('{}') removed", entry.id, entry.name);
                        let number = entry.number();
                        batch.pending.remove(&number);
                        batch.ops.push(DbOp::Delete(number));
                        (authd::deleted_answer(), true)
                    }
                    None => (AuthdError::NoAgent.answer(), false),
                }
            }
            Ok(Request::Add(request)) => match self.add(store, request, now, batch) {
                Ok(answer) => (answer, true),
                Err(error) => (error.answer(), false),
            },
        }
    }

    /// authd's `add`: every check first, then the replacements and the new key, so a refused
    /// request changes nothing.
    fn add(
        &self,
        store: &mut KeyStore,
        request: AddRequest,
        now: i64,
        batch: &mut Batch,
    ) -> Result<String, AuthdError> {
        let name = request
            .name
            .filter(|name| authd::valid_name(name))
            .ok_or(AuthdError::NoName)?;
        let ip_text = request.ip.ok_or(AuthdError::NoIp)?;
        let given_id = match request.id.as_deref() {
            None => None,
            Some(text) => match keys::parse_id(text) {
                // Id 0 is the manager's own.
                Some(0) => return Err(AuthdError::DuplicateId),
                Some(number) => Some(number),
                None => return Err(AuthdError::NoId),
            },
        };
        if request
            .key
            .as_deref()
            .is_some_and(|key| !authd::valid_key(key))
        {
            return Err(AuthdError::Key);
        }
        let groups = match request.groups {
            Some(groups) if !authd::valid_groups(&groups, &self.shared_dir) => {
                return Err(AuthdError::InvalidGroup)
            }
            Some(groups) if !groups.is_empty() => groups,
            _ => vec![DEFAULT_GROUP.to_owned()],
        };
        let force = request.force.unwrap_or(self.force);
        let key_hash = request.key_hash.as_deref();

        // Clashes, in authd's order; each must be replaceable or the request is refused.
        let mut replaced: Vec<u32> = Vec::new();
        let mut check = |entry: Option<&KeyEntry>, what: &str, error: AuthdError| {
            let Some(entry) = entry else {
                return Ok(());
            };
            if replaced.contains(&entry.number()) {
                return Ok(());
            }
            match self.may_replace(entry, key_hash, &force, now, batch) {
                Ok(()) => {
                    tracing::info!("{what}: agent {} ('{}') is replaced", entry.id, entry.name);
                    replaced.push(entry.number());
                    Ok(())
                }
                Err(reason) => {
                    tracing::warn!("{what}: registration refused, {reason}");
                    Err(error)
                }
            }
        };
        if let Some(number) = given_id {
            check(store.by_id(number), "Id in use", AuthdError::DuplicateId)?;
        }
        let ip = AgentIp::parse(&ip_text).ok_or(AuthdError::NoIp)?;
        if !ip.is_any() {
            // authd looks the address up as requested, prefix included.
            let what = format!("Address {} in use", ip.text());
            check(store.by_addr(ip.text()), &what, AuthdError::DuplicateIp)?;
        }
        if name == self.manager_name {
            return Err(AuthdError::DuplicateName);
        }
        let what = format!("Name '{name}' in use");
        check(store.by_name(&name), &what, AuthdError::DuplicateName)?;

        let (number, id) = match given_id {
            Some(number) => (number, format!("{number:03}")),
            None => {
                let id = store.allocate_id().ok_or(AuthdError::AgentLimit)?;
                (keys::parse_id(&id).ok_or(AuthdError::Internal)?, id)
            }
        };
        for old in replaced {
            store.remove(old, false);
            batch.pending.remove(&old);
            batch.ops.push(DbOp::Delete(old));
        }
        let key = request.key.unwrap_or_else(new_key);
        store.insert(KeyEntry {
            id: id.clone(),
            name: name.clone(),
            ip: ip.clone(),
            key: key.clone(),
        });
        batch.pending.insert(number, now);
        batch.ops.push(DbOp::Insert(NewAgent {
            id: number,
            name: name.clone(),
            register_ip: ip.addr().to_owned(),
            key: key.clone(),
            groups,
            date_add: now,
        }));
        tracing::info!("Agent '{name}' registered with id {id}");
        Ok(authd::agent_answer(&id, &name, ip.text(), &key))
    }

    /// authd's replacement rules for an agent clashing with a new registration; `Err` says why not.
    fn may_replace(
        &self,
        entry: &KeyEntry,
        key_hash: Option<&str>,
        force: &ForceOptions,
        now: i64,
        batch: &Batch,
    ) -> Result<(), String> {
        if !force.enabled {
            return Err(format!("replacing agents is disabled (agent {})", entry.id));
        }
        let Some(state) = self.agent_state(entry.number(), batch) else {
            return Err(format!("agent {} has no database record", entry.id));
        };
        let (status, disconnected_at) =
            (state.connection_status.as_str(), state.disconnection_time);
        if force.disconnected_time_enabled && status != "never_connected" {
            if status == "disconnected"
                && disconnected_at > 0
                && now - disconnected_at < force.disconnected_time
            {
                return Err(format!(
                    "agent {} disconnected less than {} s ago",
                    entry.id, force.disconnected_time
                ));
            }
            if disconnected_at == 0 {
                return Err(format!("agent {} is {status}", entry.id));
            }
        }
        if force.after_registration_time > 0 && now - state.date_add < force.after_registration_time
        {
            return Err(format!(
                "agent {} registered less than {} s ago",
                entry.id, force.after_registration_time
            ));
        }
        if let Some(hash) = key_hash {
            if force.key_mismatch && authd::key_hash(&entry.id, &entry.name, &entry.key) == hash {
                return Err(format!(
                    "Agent '{}' key already exists on the manager.",
                    entry.id
                ));
            }
        }
        Ok(())
    }

    /// An agent's state for the replacement rules: from this batch when it was added in it (not in
    /// the database yet), else from the database.
    fn agent_state(&self, id: u32, batch: &Batch) -> Option<AgentState> {
        match batch.pending.get(&id) {
            Some(date_add) => Some(AgentState {
                connection_status: "never_connected".to_owned(),
                disconnection_time: 0,
                date_add: *date_add,
            }),
            None => records::agent_state(self.db.as_ref(), id),
        }
    }
}

/// A fresh key: 64 lowercase hexadecimal characters (256 random bits), the size of authd's keys.
fn new_key() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// authd's answers to configuration commands. The embedded service has no authd configuration
/// to show, so `getconfig` finds no section.
fn command_answer(text: &str) -> String {
    let (command, arguments) = match text.split_once(' ') {
        Some((command, arguments)) => (command, Some(arguments)),
        None => (text, None),
    };
    match (command, arguments) {
        ("getconfig", None) => "err AUTHCOM getconfig needs arguments".to_owned(),
        ("getconfig", Some(_)) => "err Could not get requested section".to_owned(),
        _ => "err Unrecognized command".to_owned(),
    }
}

#[cfg(test)]
#[path = "embedded_tests.rs"]
mod tests;
