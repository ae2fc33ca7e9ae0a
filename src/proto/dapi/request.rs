//! A distributed-API request as the Wazuh API encodes it (PROTOCOL.md §4.5): a JSON object whose
//! `f` names the function to run (`{"__callable__": {...}}`), with its arguments and routing fields.
//!
//! Stock nodes decode requests with an object hook that imports whatever module a `__callable__`
//! names and turns `__unhandled_exc__` into Python objects through `ast.literal_eval`
//! (CVE-2025-24016). Here a request is plain JSON that is walked once: the only callable allowed is
//! the one in `f`, and every marker that stock decoding would turn into code or an exception object
//! is refused before anything runs.

use serde_json::{Map, Value};

use crate::proto::quote::quote;

/// Largest request accepted (the API sends a few KiB; agent lists of 100,000 ids stay below).
pub const REQUEST_BYTES_MAX: usize = 16 << 20;

/// Where a request runs (the API's `request_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// On the node that received it.
    LocalAny,
    /// On the master.
    LocalMaster,
    /// On the nodes that hold the data (the master splits it).
    DistributedMaster,
}

/// The function a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callable {
    pub module: String,
    pub qualname: String,
    pub name: String,
    /// Encoded as a bound method of a `Wazuh` instance (`__wazuh__`).
    pub bound: bool,
}

impl Callable {
    /// `module.qualname`, the name logs and refusals give.
    pub fn path(&self) -> String {
        format!("{}.{}", self.module, self.qualname)
    }
}

/// A request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct DapiRequest {
    pub f: Callable,
    pub request_type: RequestType,
    pub wait_for_complete: bool,
    pub from_cluster: bool,
    pub broadcasting: bool,
    /// The whole object, re-encoded when the request is forwarded.
    body: Map<String, Value>,
}

/// Why a request is refused before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request has {0} bytes, at most {REQUEST_BYTES_MAX} are accepted")]
    TooLarge(usize),
    #[error("the request is not JSON: {0}")]
    NotJson(String),
    #[error("the request is not a JSON object")]
    NotObject,
    #[error("the request names no function ('f' must be {{\"__callable__\": {{...}}}})")]
    NoCallable,
    #[error("the function of the request is malformed: {0}")]
    BadCallable(String),
    #[error("'{field}' {why}")]
    BadField { field: String, why: &'static str },
    #[error("the request carries '{marker}' at {at}: payloads that decode into code or exception objects are refused")]
    Marker { marker: String, at: String },
    #[error("function {0} is not on this node's allow-list")]
    NotAllowed(String),
    #[error(
        "function {function} needs the Wazuh framework, which this node does not have ({why})"
    )]
    NeedsFramework { function: String, why: String },
}

/// Markers of stock's object hook that a request must never carry: each becomes code to import,
/// an exception object or a result object on a stock node. Only `__wazuh_datetime__` (a date) is
/// harmless; `__callable__` is allowed in `f` alone.
const REFUSED_MARKERS: [&str; 4] = [
    "__callable__",
    "__unhandled_exc__",
    "__wazuh_exception__",
    "__wazuh_result__",
];

impl DapiRequest {
    /// Parses and checks a request. Nothing here runs or imports anything.
    pub fn parse(bytes: &[u8]) -> Result<DapiRequest, Refusal> {
        if bytes.len() > REQUEST_BYTES_MAX {
            return Err(Refusal::TooLarge(bytes.len()));
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| Refusal::NotJson(e.to_string()))?;
        let Value::Object(body) = value else {
            return Err(Refusal::NotObject);
        };
        for (key, value) in &body {
            if key == "f" {
                continue;
            }
            check_markers(value, key)?;
        }
        let f = callable(body.get("f").ok_or(Refusal::NoCallable)?)?;
        let request_type = match body.get("request_type") {
            None | Some(Value::Null) => RequestType::LocalMaster,
            Some(Value::String(s)) => match s.as_str() {
                "local_any" => RequestType::LocalAny,
                "local_master" => RequestType::LocalMaster,
                "distributed_master" => RequestType::DistributedMaster,
                _ => {
                    return Err(Refusal::BadField {
                        field: "request_type".into(),
                        why: "must be local_any, local_master or distributed_master",
                    })
                }
            },
            Some(_) => {
                return Err(Refusal::BadField {
                    field: "request_type".into(),
                    why: "must be a string",
                })
            }
        };
        if !matches!(
            body.get("f_kwargs"),
            None | Some(Value::Null | Value::Object(_))
        ) {
            return Err(Refusal::BadField {
                field: "f_kwargs".into(),
                why: "must be an object",
            });
        }
        let flag = |name: &str| body.get(name).and_then(Value::as_bool).unwrap_or(false);
        Ok(DapiRequest {
            request_type,
            wait_for_complete: flag("wait_for_complete"),
            from_cluster: flag("from_cluster"),
            broadcasting: flag("broadcasting"),
            f,
            body,
        })
    }

    /// The function's arguments.
    pub fn kwargs(&self) -> Map<String, Value> {
        match self.body.get("f_kwargs") {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        }
    }

    /// One node's share of a `distributed_master` request: `from_cluster` set, the node
    /// arguments removed and, when the share names agents, the agent argument replaced by them.
    pub fn forwarded(&self, agents: Option<&[String]>) -> Vec<u8> {
        let mut body = self.body.clone();
        body.insert("from_cluster".into(), Value::Bool(true));
        if let Some(Value::Object(kwargs)) = body.get_mut("f_kwargs") {
            // The node arguments chose the nodes; the function itself does not take them.
            kwargs.remove("node_id");
            kwargs.remove("node_list");
        }
        if let (Some(agents), Some(Value::Object(kwargs))) = (agents, body.get_mut("f_kwargs")) {
            if kwargs.contains_key("agent_id") {
                kwargs.insert(
                    "agent_id".into(),
                    agents.iter().cloned().map(Value::from).collect(),
                );
            } else if kwargs.contains_key("agent_list") {
                kwargs.insert(
                    "agent_list".into(),
                    agents.iter().cloned().map(Value::from).collect(),
                );
            }
        }
        Value::Object(body).to_string().into_bytes()
    }

    /// The request as it came, re-encoded.
    pub fn to_bytes(&self) -> Vec<u8> {
        Value::Object(self.body.clone()).to_string().into_bytes()
    }
}

/// The function name a request gives, for the log line of a refused request (best effort).
pub fn function_name(bytes: &[u8]) -> String {
    callable_field(bytes, |c| {
        c.get("__name__")
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

/// The `module.qualname` of a request's callable, as refusal logs name it (`os.system`), so an
/// operator sees exactly what was asked for; `unknown` when the request names none.
pub fn callable_path(bytes: &[u8]) -> String {
    callable_field(bytes, |c| {
        let qualname = c
            .get("__qualname__")
            .or_else(|| c.get("__name__"))?
            .as_str()?;
        Some(match c.get("__module__").and_then(Value::as_str) {
            Some(module) => format!("{module}.{qualname}"),
            None => qualname.to_string(),
        })
    })
}

/// One field of the request's callable, cut at 128 characters.
fn callable_field(
    bytes: &[u8],
    field: impl Fn(&serde_json::Map<String, Value>) -> Option<String>,
) -> String {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return "unknown".into();
    };
    body.get("f")
        .and_then(|f| f.get("__callable__"))
        .and_then(Value::as_object)
        .and_then(field)
        .map_or_else(|| "unknown".into(), |s| quote(&s))
}

fn check_markers(value: &Value, at: &str) -> Result<(), Refusal> {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if REFUSED_MARKERS.contains(&key.as_str()) {
                    return Err(Refusal::Marker {
                        marker: key.clone(),
                        at: at.to_string(),
                    });
                }
                check_markers(inner, &format!("{at}.{key}"))?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, inner)| check_markers(inner, &format!("{at}[{i}]"))),
        _ => Ok(()),
    }
}

/// `{"__callable__": {"__name__", "__module__", "__qualname__", "__type__"[, "__wazuh__"]}}`, with
/// names made of Python identifiers only.
fn callable(f: &Value) -> Result<Callable, Refusal> {
    let Some(Value::Object(fields)) = f.get("__callable__") else {
        return Err(Refusal::NoCallable);
    };
    if f.as_object().is_some_and(|o| o.len() != 1) {
        return Err(Refusal::BadCallable(
            "'f' has keys besides '__callable__'".into(),
        ));
    }
    let text = |key: &str| -> Result<String, Refusal> {
        fields
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Refusal::BadCallable(format!("'{key}' must be a string")))
    };
    let (name, module, qualname) = (
        text("__name__")?,
        text("__module__")?,
        text("__qualname__")?,
    );
    for (what, dotted) in [("module", &module), ("qualname", &qualname)] {
        if !dotted.split('.').all(identifier) {
            return Err(Refusal::BadCallable(format!(
                "{what} '{}' is not a dotted Python name",
                quote(dotted)
            )));
        }
    }
    if !identifier(&name) || qualname.rsplit('.').next() != Some(name.as_str()) {
        return Err(Refusal::BadCallable(format!(
            "name '{}' does not end qualname '{}'",
            quote(&name),
            quote(&qualname)
        )));
    }
    if let Some(wazuh) = fields.get("__wazuh__") {
        check_markers(wazuh, "f.__callable__.__wazuh__")?;
    }
    Ok(Callable {
        bound: fields.contains_key("__wazuh__"),
        name,
        module,
        qualname,
    })
}

fn identifier(part: &str) -> bool {
    let mut chars = part.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && part.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(f_kwargs: &str) -> String {
        format!(
            r#"{{"f": {{"__callable__": {{"__name__": "get_agents_overview", "__module__": "wazuh.core.agent", "__qualname__": "Agent.get_agents_overview", "__type__": "function"}}}}, "f_kwargs": {f_kwargs}, "from_cluster": false, "wait_for_complete": false}}"#
        )
    }

    #[test]
    fn the_stock_agents_listing_parses_as_a_local_master_request() {
        let r = DapiRequest::parse(request(r#"{"limit": null}"#).as_bytes()).unwrap();
        assert_eq!(r.f.path(), "wazuh.core.agent.Agent.get_agents_overview");
        assert_eq!(r.request_type, RequestType::LocalMaster);
        assert!(!r.from_cluster && !r.broadcasting && !r.f.bound);
    }

    #[test]
    fn markers_that_decode_into_objects_are_refused_wherever_they_hide() {
        for kwargs in [
            r#"{"x": {"__unhandled_exc__": {"__class__": "exit", "__args__": []}}}"#,
            r#"{"x": [1, {"__callable__": {"__name__": "system", "__module__": "os", "__qualname__": "system"}}]}"#,
            r#"{"x": {"y": {"__wazuh_exception__": {}}}}"#,
            r#"{"x": {"__wazuh_result__": {}}}"#,
        ] {
            let e = DapiRequest::parse(request(kwargs).as_bytes()).unwrap_err();
            assert!(matches!(e, Refusal::Marker { .. }), "{kwargs}: {e}");
        }
        let dated = request(r#"{"x": {"__wazuh_datetime__": "2026-01-01T00:00:00"}}"#);
        assert!(DapiRequest::parse(dated.as_bytes()).is_ok());
    }

    #[test]
    fn callables_must_be_plain_dotted_names() {
        let bad = r#"{"f": {"__callable__": {"__name__": "x", "__module__": "os;import", "__qualname__": "x", "__type__": "function"}}}"#;
        assert!(matches!(
            DapiRequest::parse(bad.as_bytes()),
            Err(Refusal::BadCallable(_))
        ));
        assert_eq!(
            function_name(request("{}").as_bytes()),
            "get_agents_overview"
        );
    }

    #[test]
    fn a_forwarded_share_names_its_agents_and_comes_from_the_cluster() {
        let r = DapiRequest::parse(request(r#"{"agent_list": ["001", "002", "003"]}"#).as_bytes())
            .unwrap();
        let fwd = DapiRequest::parse(&r.forwarded(Some(&["002".to_string()]))).unwrap();
        assert!(fwd.from_cluster);
        assert_eq!(fwd.kwargs()["agent_list"], serde_json::json!(["002"]));
    }
}
