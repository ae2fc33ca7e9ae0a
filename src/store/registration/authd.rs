//! authd's local request language: the JSON requests, their answers and error codes, and the
//! checks authd applies to names, groups and force options.
//!
//! Requests are read the way authd's JSON library reads them: member names match without regard to
//! case (the first match wins), a member that is not a string counts as absent where a string is
//! expected, and `true` reads as 1 where a number is expected.

use std::path::Path;

use serde_json::{json, Map, Value};

/// authd's local-server error codes and texts (9015, refused on workers, never applies here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthdError {
    Internal,
    Json,
    NoFunction,
    NoArgument,
    NoName,
    NoIp,
    DuplicateIp,
    DuplicateName,
    Key,
    NoId,
    NoAgent,
    DuplicateId,
    AgentLimit,
    InvalidGroup,
}

impl AuthdError {
    pub fn code(self) -> u32 {
        match self {
            AuthdError::Internal => 9001,
            AuthdError::Json => 9002,
            AuthdError::NoFunction => 9003,
            AuthdError::NoArgument => 9004,
            AuthdError::NoName => 9005,
            AuthdError::NoIp => 9006,
            AuthdError::DuplicateIp => 9007,
            AuthdError::DuplicateName => 9008,
            AuthdError::Key => 9009,
            AuthdError::NoId => 9010,
            AuthdError::NoAgent => 9011,
            AuthdError::DuplicateId => 9012,
            AuthdError::AgentLimit => 9013,
            AuthdError::InvalidGroup => 9014,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            AuthdError::Internal => "Internal error",
            AuthdError::Json => "Parsing JSON input",
            AuthdError::NoFunction => "No such function",
            AuthdError::NoArgument => "No such argument",
            AuthdError::NoName => "No such name",
            AuthdError::NoIp => "No such IP",
            AuthdError::DuplicateIp => "Duplicate IP",
            AuthdError::DuplicateName => "Duplicate name",
            AuthdError::Key => "Issue generating key",
            AuthdError::NoId => "No such agent ID",
            AuthdError::NoAgent => "Agent ID not found",
            AuthdError::DuplicateId => "Duplicate ID",
            AuthdError::AgentLimit => "Maximum number of agents reached",
            AuthdError::InvalidGroup => "Invalid Group(s) Name(s)",
        }
    }

    /// `{"error":<code>,"message":"<text>"}`.
    pub fn answer(self) -> String {
        json!({"error": self.code(), "message": self.message()}).to_string()
    }
}

/// `{"error":0,"data":{"id":..,"name":..,"ip":..,"key":..}}`: a registered (or looked-up) agent.
pub fn agent_answer(id: &str, name: &str, ip: &str, key: &str) -> String {
    json!({"error": 0, "data": {"id": id, "name": name, "ip": ip, "key": key}}).to_string()
}

/// `{"error":0,"data":"Agent deleted successfully."}`.
pub fn deleted_answer() -> String {
    json!({"error": 0, "data": "Agent deleted successfully."}).to_string()
}

/// When an existing agent that clashes with a new registration may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForceOptions {
    /// Replacing is allowed at all.
    pub enabled: bool,
    /// Refuse when the requester proves it already holds the agent's current key.
    pub key_mismatch: bool,
    /// Only replace agents disconnected for at least `disconnected_time` seconds.
    pub disconnected_time_enabled: bool,
    pub disconnected_time: i64,
    /// Only replace agents registered at least this many seconds ago (0: no condition).
    pub after_registration_time: i64,
}

impl Default for ForceOptions {
    /// authd's defaults: enabled, key check on, one hour disconnected, one hour since registration.
    fn default() -> ForceOptions {
        ForceOptions {
            enabled: true,
            key_mismatch: true,
            disconnected_time_enabled: true,
            disconnected_time: 3600,
            after_registration_time: 3600,
        }
    }
}

/// Longest group list text accepted.
const MAX_GROUPS_TEXT: usize = 65_536;
/// Most groups one agent may belong to.
pub const MAX_GROUPS: usize = 128;
/// Longest group name (a directory name).
const MAX_GROUP_NAME: usize = 255;
/// Agent names: 2 to 128 characters.
const MIN_NAME: usize = 2;
const MAX_NAME: usize = 128;
/// Longest key authd's reader takes back from `client.keys` whole.
pub const MAX_KEY: usize = 127;

/// One parsed request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Add(AddRequest),
    Remove {
        id: Option<String>,
        purge: bool,
    },
    Get {
        id: Option<String>,
    },
    /// A text that is not JSON: a configuration query.
    Command(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AddRequest {
    pub id: Option<String>,
    pub name: Option<String>,
    pub ip: Option<String>,
    /// The group list with repeated groups dropped; `None` when absent.
    pub groups: Option<Vec<String>>,
    pub key_hash: Option<String>,
    pub key: Option<String>,
    pub force: Option<ForceOptions>,
}

/// The member `key` of `object`, matched without regard to case.
fn item<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    let map: &Map<String, Value> = object.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A member's string, `None` when absent or not a string.
fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_owned)
}

/// The integer authd reads from a member: numbers truncated and clamped, `true` as 1, else 0.
fn valueint(value: &Value) -> i64 {
    match value {
        Value::Bool(true) => 1,
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0)
            .clamp(i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => 0,
    }
}

/// Reads a message as authd's local server does: an object (or a text starting with `{`) is a JSON
/// request, any other text a configuration command.
pub fn parse(message: &Value) -> Result<Request, AuthdError> {
    let owned;
    let request = match message {
        Value::Object(_) => message,
        Value::String(text) if text.starts_with('{') => {
            // Like authd, the first JSON value counts and anything after it is ignored.
            let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
            owned = match values.next() {
                Some(Ok(value)) => value,
                _ => return Err(AuthdError::Json),
            };
            &owned
        }
        Value::String(text) => return Ok(Request::Command(text.clone())),
        other => return Ok(Request::Command(other.to_string())),
    };
    let Some(function) = item(request, "function") else {
        return Err(AuthdError::NoFunction);
    };
    let function = function.as_str().unwrap_or_default();
    if !matches!(function, "add" | "remove" | "get") {
        return Err(AuthdError::Internal);
    }
    let Some(arguments) = item(request, "arguments") else {
        return Err(AuthdError::NoArgument);
    };
    match function {
        "add" => parse_add(arguments).map(Request::Add),
        "remove" => {
            let id = item(arguments, "id").ok_or(AuthdError::NoId)?;
            let purge = matches!(item(arguments, "purge"), Some(Value::Bool(true)));
            Ok(Request::Remove {
                id: id.as_str().map(str::to_owned),
                purge,
            })
        }
        _ => {
            let id = item(arguments, "id").ok_or(AuthdError::NoId)?;
            Ok(Request::Get {
                id: id.as_str().map(str::to_owned),
            })
        }
    }
}

fn parse_add(arguments: &Value) -> Result<AddRequest, AuthdError> {
    let id = text(item(arguments, "id"));
    let name = item(arguments, "name").ok_or(AuthdError::NoName)?;
    let ip = item(arguments, "ip").ok_or(AuthdError::NoIp)?;
    let groups = match item(arguments, "groups") {
        None => None,
        Some(Value::String(list)) => Some(dedup_groups(list)?),
        Some(_) => return Err(AuthdError::InvalidGroup),
    };
    let force = match item(arguments, "force") {
        None => None,
        Some(force) => Some(parse_force(force)?),
    };
    Ok(AddRequest {
        id,
        name: name.as_str().map(str::to_owned),
        ip: ip.as_str().map(str::to_owned),
        groups,
        key_hash: text(item(arguments, "key_hash")),
        key: text(item(arguments, "key")),
        force,
    })
}

/// The group list split on commas, empty entries and repetitions dropped, order kept.
fn dedup_groups(list: &str) -> Result<Vec<String>, AuthdError> {
    if list.len() > MAX_GROUPS_TEXT {
        return Err(AuthdError::InvalidGroup);
    }
    let mut groups: Vec<String> = Vec::new();
    for group in list.split(',').filter(|g| !g.is_empty()) {
        if !groups.iter().any(|g| g == group) {
            groups.push(group.to_owned());
        }
    }
    Ok(groups)
}

/// `force`: `{"enabled","key_mismatch","disconnected_time":{"enabled","value"},"after_registration_time"}`,
/// every member required; times are seconds or texts such as `1h`.
fn parse_force(force: &Value) -> Result<ForceOptions, AuthdError> {
    let enabled = item(force, "enabled").ok_or(AuthdError::Json)?;
    let key_mismatch = item(force, "key_mismatch").ok_or(AuthdError::Json)?;
    let disconnected = item(force, "disconnected_time").ok_or(AuthdError::Json)?;
    let disconnected_enabled = item(disconnected, "enabled").ok_or(AuthdError::Json)?;
    let seconds = |value: Option<&Value>| match value {
        Some(value @ Value::Number(_)) => Ok(valueint(value)),
        Some(Value::String(text)) => time_interval(text).ok_or(AuthdError::Json),
        _ => Err(AuthdError::Json),
    };
    Ok(ForceOptions {
        enabled: valueint(enabled) != 0,
        key_mismatch: valueint(key_mismatch) != 0,
        disconnected_time_enabled: valueint(disconnected_enabled) != 0,
        disconnected_time: seconds(item(disconnected, "value"))?,
        after_registration_time: seconds(item(force, "after_registration_time"))?,
    })
}

/// A time such as `90`, `15m`, `2h` or `1d` in seconds (C `strtoul` base rules for the number).
pub fn time_interval(text: &str) -> Option<i64> {
    let trimmed = text.trim_start();
    let (radix, digits) = if let Some(hex) = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
    {
        (16, hex)
    } else if trimmed.len() > 1 && trimmed.starts_with('0') {
        (8, &trimmed[1..])
    } else {
        (10, trimmed)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let (number, unit) = digits.split_at(end);
    let value = if number.is_empty() {
        // "0" alone was taken as an octal prefix with no digits: still zero.
        if radix == 8 {
            0
        } else {
            return None;
        }
    } else {
        i64::from_str_radix(number, radix).ok()?
    };
    let factor = match unit.chars().next() {
        None | Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        Some(_) => return None,
    };
    value.checked_mul(factor)
}

/// authd's agent name rule: 2 to 128 of `A-Z a-z 0-9 - _ .`, not starting with `.`.
pub fn valid_name(name: &str) -> bool {
    (MIN_NAME..=MAX_NAME).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The group every install has.
const DEFAULT_GROUP: &str = "default";

/// A key authd can store and read back: 1 to 127 printable ASCII characters without spaces.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// authd's group rule: at most 128 groups, each of `A-Z a-z 0-9 _ . -`, not `.` or `..`, and a
/// directory of that name under `etc/shared/`. The `default` group is always accepted: every
/// Wazuh install has it, and a standalone node without `etc/shared/` must still register agents.
pub fn valid_groups(groups: &[String], shared_dir: &Path) -> bool {
    groups.len() <= MAX_GROUPS
        && groups.iter().all(|group| {
            group.len() <= MAX_GROUP_NAME
                && group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                && group != "."
                && group != ".."
                && (group == DEFAULT_GROUP || shared_dir.join(group).is_dir())
        })
}

/// The SHA-1 hex of id, name and key concatenated: what an agent sends to prove it holds a key.
pub fn key_hash(id: &str, name: &str, key: &str) -> String {
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(id.as_bytes());
    sha.update(name.as_bytes());
    sha.update(key.as_bytes());
    sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_match_authd() {
        assert_eq!(
            AuthdError::DuplicateName.answer(),
            r#"{"error":9008,"message":"Duplicate name"}"#
        );
        assert_eq!(
            AuthdError::NoAgent.answer(),
            r#"{"error":9011,"message":"Agent ID not found"}"#
        );
        assert_eq!(
            agent_answer("001", "a1", "any", "k"),
            r#"{"error":0,"data":{"id":"001","name":"a1","ip":"any","key":"k"}}"#
        );
        assert_eq!(
            deleted_answer(),
            r#"{"error":0,"data":"Agent deleted successfully."}"#
        );
    }

    #[test]
    fn parse_follows_authd_member_rules() {
        let add = parse(
            &json!({"Function": "add", "ARGUMENTS": {"name": "a1", "ip": "any",
            "groups": "web,,default,web", "id": 7, "key": "k"}}),
        )
        .expect("add");
        let Request::Add(add) = add else {
            panic!("not an add: {add:?}")
        };
        assert_eq!(add.name.as_deref(), Some("a1"));
        assert_eq!(add.id, None, "a number id counts as absent");
        assert_eq!(add.key.as_deref(), Some("k"));
        assert_eq!(
            add.groups,
            Some(vec!["web".to_owned(), "default".to_owned()])
        );

        let cases = [
            (json!({}), AuthdError::NoFunction),
            (json!({"function": "nope"}), AuthdError::Internal),
            (json!({"function": 3}), AuthdError::Internal),
            (json!({"function": "add"}), AuthdError::NoArgument),
            (
                json!({"function": "add", "arguments": {}}),
                AuthdError::NoName,
            ),
            (
                json!({"function": "add", "arguments": {"name": "a"}}),
                AuthdError::NoIp,
            ),
            (
                json!({"function": "add", "arguments": {"name": "a", "ip": "any", "groups": 1}}),
                AuthdError::InvalidGroup,
            ),
            (
                json!({"function": "add", "arguments": {"name": "a", "ip": "any", "force": {"enabled": true}}}),
                AuthdError::Json,
            ),
            (
                json!({"function": "remove", "arguments": {}}),
                AuthdError::NoId,
            ),
            (json!("{not json"), AuthdError::Json),
        ];
        for (message, error) in cases {
            assert_eq!(parse(&message), Err(error), "{message}");
        }
        assert_eq!(
            parse(&json!("getconfig auth")),
            Ok(Request::Command("getconfig auth".into()))
        );
        assert_eq!(
            parse(&json!(
                r#"{"function":"get","arguments":{"id":"001"}} trailing"#
            )),
            Ok(Request::Get {
                id: Some("001".into())
            })
        );
        assert_eq!(
            parse(&json!({"function": "remove", "arguments": {"id": "001", "purge": 1}})),
            Ok(Request::Remove {
                id: Some("001".into()),
                purge: false
            }),
            "only JSON true purges"
        );
    }

    #[test]
    fn force_options_parse() {
        let force = parse_force(&json!({"enabled": true, "key_mismatch": false,
            "disconnected_time": {"enabled": 1, "value": "2h"}, "after_registration_time": 30}))
        .expect("force");
        assert_eq!(
            force,
            ForceOptions {
                enabled: true,
                key_mismatch: false,
                disconnected_time_enabled: true,
                disconnected_time: 7200,
                after_registration_time: 30,
            }
        );
        let missing_after = json!({"enabled": true, "key_mismatch": false,
            "disconnected_time": {"enabled": false, "value": 0}});
        assert_eq!(parse_force(&missing_after), Err(AuthdError::Json));
    }

    #[test]
    fn time_intervals() {
        assert_eq!(time_interval("90"), Some(90));
        assert_eq!(time_interval("15m"), Some(900));
        assert_eq!(time_interval("1d"), Some(86_400));
        assert_eq!(time_interval("0"), Some(0));
        assert_eq!(time_interval("0x10"), Some(16));
        assert_eq!(time_interval("010"), Some(8));
        assert_eq!(time_interval("h"), None);
        assert_eq!(time_interval("5w"), None);
    }

    #[test]
    fn names_keys_and_groups() {
        assert!(valid_name("web-01.example_a"));
        for bad in ["a", ".hidden", "has space", "ñame", &"a".repeat(129)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_key(&"f".repeat(64)));
        for bad in ["", "has space", "tab\t", &"k".repeat(128)] {
            assert!(!valid_key(bad), "{bad:?}");
        }
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("web")).expect("mkdir");
        assert!(valid_groups(&["web".into()], dir.path()));
        assert!(!valid_groups(&["db".into()], dir.path()));
        assert!(!valid_groups(&["..".into()], dir.path()));
        assert!(!valid_groups(&["a/b".into()], dir.path()));
        assert_eq!(
            key_hash("001", "a", "k"),
            "b97863d52a8217b18a04ff5aafd21d4b5c7bb11a"
        );
    }
}
