//! Replies: `{"msg": {<every request member>, <result>, "errors": [...]}}`.

use super::RequestType;
use serde_json::{Map, Value};

/// A reply under construction or as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The `msg` object.
    pub msg: Map<String, Value>,
}

impl Reply {
    /// A successful reply: the request's members plus `result_field: result` and no errors.
    pub fn signed(request: &Map<String, Value>, kind: RequestType, result: String) -> Self {
        let mut msg = request.clone();
        msg.insert(kind.result_field().into(), Value::String(result));
        msg.insert("errors".into(), Value::Array(Vec::new()));
        Reply { msg }
    }

    /// A failed reply: the request's members, a null result and the errors.
    pub fn failed(request: &Map<String, Value>, kind: RequestType, errors: Vec<String>) -> Self {
        let mut msg = request.clone();
        msg.insert(kind.result_field().into(), Value::Null);
        msg.insert(
            "errors".into(),
            Value::Array(errors.into_iter().map(Value::String).collect()),
        );
        Reply { msg }
    }

    /// The JSON document sent on the wire.
    pub fn to_value(&self) -> Value {
        let mut top = Map::new();
        top.insert("msg".into(), Value::Object(self.msg.clone()));
        Value::Object(top)
    }

    /// Parses a received reply document (not schema-checked; see [`super::Schema::Reply`]).
    pub fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Object(mut top) => match top.remove("msg") {
                Some(Value::Object(msg)) => Some(Reply { msg }),
                _ => None,
            },
            _ => None,
        }
    }

    /// `msg[key]` as a string (e.g. the `message_id_key`).
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.msg.get(key).and_then(Value::as_str)
    }

    /// The errors listed in the reply.
    pub fn errors(&self) -> Vec<String> {
        match self.msg.get("errors") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }
}
