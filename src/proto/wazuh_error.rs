//! Error payloads as stock Wazuh nodes exchange them (PROTOCOL.md §2.2): a JSON-encoded exception
//! `{"__wazuh_exception__": {"__class__": ..., "__object__": {...}}}` or, for a few replies, plain text.

use serde_json::{json, Value};

use crate::config::Dialect;

/// A Wazuh error code with its catalogue message and an optional detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WazuhError {
    pub code: u32,
    pub extra: Option<String>,
}

impl WazuhError {
    pub fn new(code: u32) -> WazuhError {
        WazuhError { code, extra: None }
    }

    pub fn with_extra(code: u32, extra: impl Into<String>) -> WazuhError {
        WazuhError {
            code,
            extra: Some(extra.into()),
        }
    }

    /// The catalogue message for the code (texts of Wazuh's exception table).
    pub fn message(&self) -> &'static str {
        match self.code {
            1000 => "Wazuh Internal Error",
            1013 => "Unable to connect with socket",
            1014 => "Error communicating with socket",
            1400 => "Invalid offset",
            1401 => "Invalid limit",
            1405 => "Specified limit exceeds maximum allowed",
            1406 => "0 is not a valid limit",
            1407 => "Query does not match expected format",
            1724 => "Not a valid select field",
            1728 => "Invalid type",
            1730 => "Node does not exist",
            2007 => "Error retrieving data from Wazuh DB",
            3000 => "Cluster",
            3001 => "Error creating zip file",
            3007 => "Client.keys file received in master node",
            3012 => "Cluster is not running",
            3016 => "Received an error response",
            3018 => "Error sending request",
            3020 => "Timeout sending request",
            3021 => "Timeout executing API request",
            3022 => "Unknown node ID",
            3023 => "Worker node is not connected to master",
            3024 => {
                "Length of command exceeds limit defined in wazuh.cluster.common.Handler.cmd_len."
            }
            3025 => "Could not decrypt message",
            3026 => "Error sending request: Memory error. Request chunk size divided by 2.",
            3027 => "Unknown received task name",
            3028 => "Worker node ID already exists",
            3029 => "Connected worker with same name as the master",
            3030 => "Worker does not belong to the same cluster",
            3031 => "Worker and master versions are not the same",
            3032 => "Could not forward DAPI request. Connection not available.",
            3034 => "Error sending file. File not found.",
            3035 => "String couldn't be found",
            3036 => "JSON couldn't be loaded",
            3037 => "Error while processing Agent-info chunks",
            3038 => "Error while processing extra-valid files",
            3039 => "Timeout while waiting to receive a file",
            3040 => "Error while waiting to receive a file",
            3050 => "Payload size exceeds maximum allowed limit",
            3051 => "Too many concurrent divided messages",
            3052 => "Invalid cluster file parameter",
            3053 => "Decompressed file exceeds the maximum allowed size",
            3060 => "Invalid node name format",
            _ => "Unknown error",
        }
    }

    /// The error as a peer of `dialect` can read it. Wazuh 4.3.11's catalogue ends at 3039, and a
    /// 4.3 node that decodes an error with a later code fails on the lookup (the request it waits on
    /// never completes); there such an error travels as 3000 carrying its own message.
    pub fn in_dialect(self, dialect: Dialect) -> WazuhError {
        if dialect != Dialect::V4_3 || !(3040..=3999).contains(&self.code) {
            return self;
        }
        let text = match &self.extra {
            Some(extra) => format!("{}: {extra}", self.message()),
            None => self.message().to_owned(),
        };
        WazuhError::with_extra(3000, text)
    }

    fn class(&self) -> &'static str {
        match self.code {
            1000 | 1013 | 1014 | 2007 => "WazuhInternalError",
            3000..=3999 => "WazuhClusterError",
            _ => "WazuhError",
        }
    }

    fn title(&self) -> &'static str {
        match self.code {
            1000 | 1013 | 1014 | 2007 => "Wazuh Internal Error",
            3000..=3999 => "Wazuh Cluster Error",
            _ => "Bad Request",
        }
    }

    /// The JSON payload of an `err` reply, as a stock node would build it.
    pub fn to_json(&self) -> Value {
        let mut object = json!({
            "type": "about:blank",
            "title": self.title(),
            "code": self.code,
            "extra_message": self.extra,
            "extra_remediation": null,
            "cmd_error": false,
            "dapi_errors": {},
        });
        if self.class() == "WazuhError" {
            object["ids"] = json!([]);
        }
        json!({"__wazuh_exception__": {"__class__": self.class(), "__object__": object}})
    }

    pub fn to_payload(&self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }

    /// Reads an `err` payload: a JSON exception, or plain text (which stock nodes turn into 3000).
    pub fn from_payload(payload: &[u8]) -> WazuhError {
        let text = String::from_utf8_lossy(payload);
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let object = parsed
            .as_ref()
            .and_then(|v| v.get("__wazuh_exception__"))
            .and_then(|v| v.get("__object__"));
        match object.and_then(|o| o.get("code")).and_then(Value::as_u64) {
            Some(code) => WazuhError {
                code: code as u32,
                extra: object
                    .and_then(|o| o.get("extra_message"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
            },
            None => WazuhError::with_extra(3000, text.into_owned()),
        }
    }
}

impl std::fmt::Display for WazuhError {
    /// `Error <code> - <message>[: <extra>]`, the text stock nodes log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error {} - {}", self.code, self.message())?;
        if let Some(extra) = &self.extra {
            // A peer's text: only its start goes into a log line.
            write!(f, ": {}", super::quote::quote(extra))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_mismatch_payload_has_the_stock_shape() {
        let expected: Value = serde_json::from_str(
            r#"{"__wazuh_exception__": {"__class__": "WazuhClusterError", "__object__": {"type": "about:blank",
             "title": "Wazuh Cluster Error", "code": 3031, "extra_message": null, "extra_remediation": null,
             "cmd_error": false, "dapi_errors": {}}}}"#,
        )
        .unwrap();
        assert_eq!(WazuhError::new(3031).to_json(), expected);
    }

    #[test]
    fn payloads_round_trip_and_plain_text_is_3000() {
        let e = WazuhError::with_extra(3028, "a node named worker1 is already connected");
        assert_eq!(WazuhError::from_payload(&e.to_payload()), e);
        assert_eq!(
            e.to_string(),
            "Error 3028 - Worker node ID already exists: a node named worker1 is already connected"
        );
        let plain = WazuhError::from_payload(b"unknown command 'b'foo''");
        assert_eq!(plain.code, 3000);
        assert_eq!(
            plain.to_string(),
            "Error 3000 - Cluster: unknown command 'b'foo''"
        );
    }

    #[test]
    fn codes_after_4_3_travel_as_3000_to_4_3_peers() {
        let error = WazuhError::with_extra(3040, "x.zip did not arrive intact");
        assert_eq!(error.clone().in_dialect(Dialect::V4_14), error);
        let old = error.in_dialect(Dialect::V4_3);
        assert_eq!(old.code, 3000);
        assert_eq!(
            old.extra.as_deref(),
            Some("Error while waiting to receive a file: x.zip did not arrive intact")
        );
        let known = WazuhError::new(3039);
        assert_eq!(known.clone().in_dialect(Dialect::V4_3), known);
        assert_eq!(
            WazuhError::new(3060)
                .in_dialect(Dialect::V4_3)
                .extra
                .as_deref(),
            Some("Invalid node name format")
        );
    }
}
