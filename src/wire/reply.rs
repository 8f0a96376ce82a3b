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
    pub fn into_value(self) -> Value {
        let mut top = Map::new();
        top.insert("msg".into(), Value::Object(self.msg));
        Value::Object(top)
    }
}
