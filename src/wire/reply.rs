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
    /// A reply to `request`: its members, then `fields` (the result), then `errors`. When `errors` is not
    /// empty the type's result field is forced to null: a failed request never carries a signature.
    pub fn new(
        request: &Map<String, Value>,
        kind: RequestType,
        fields: Map<String, Value>,
        errors: Vec<String>,
    ) -> Self {
        let mut msg = request.clone();
        msg.extend(fields);
        if !errors.is_empty() || !msg.contains_key(kind.result_field()) {
            msg.insert(kind.result_field().into(), Value::Null);
        }
        msg.insert(
            "errors".into(),
            Value::Array(errors.into_iter().map(Value::String).collect()),
        );
        Reply { msg }
    }

    /// A successful reply carrying `result` in the type's result field.
    pub fn signed(request: &Map<String, Value>, kind: RequestType, result: String) -> Self {
        let fields = Map::from_iter([(kind.result_field().to_owned(), Value::String(result))]);
        Reply::new(request, kind, fields, Vec::new())
    }

    /// A failed reply: no signature, the errors.
    pub fn failed(request: &Map<String, Value>, kind: RequestType, errors: Vec<String>) -> Self {
        Reply::new(request, kind, Map::new(), errors)
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
