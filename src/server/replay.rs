//! `serve --replay`: the message a replay file stands for, so one request can be answered without a broker.
//!
//! A replay file is a wire example `{"address", "properties", "body", ["reply_to"]}` (body an object or JSON
//! text), or a bare request body, taken as a `container_signature` request. This module only reads the file's
//! JSON; the handler answers it like any delivery (with [`super::handler::Origin::Replay`]).

use crate::transport::IncomingMessage;
use serde_json::{Map, Value};

/// A replay file that is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The file holds JSON that is not an object.
    #[error("a replay file holds a JSON object: a wire message or a request body")]
    NotObject,
    /// `properties` is not an object.
    #[error("\"properties\" must be an object")]
    Properties,
}

/// The message a replay file's JSON stands for.
pub fn message(doc: Value) -> Result<IncomingMessage, ReplayError> {
    let Value::Object(mut doc) = doc else {
        return Err(ReplayError::NotObject);
    };
    let (body, properties, reply_to) = match doc.remove("body") {
        Some(body) => {
            let body = match body {
                Value::String(text) => text,
                other => other.to_string(),
            };
            let properties = match doc.remove("properties") {
                Some(Value::Object(p)) => p,
                None | Some(Value::Null) => Map::new(),
                Some(_) => return Err(ReplayError::Properties),
            };
            let reply_to = doc
                .remove("reply_to")
                .and_then(|v| v.as_str().map(str::to_owned));
            (body, properties, reply_to)
        }
        None => {
            let mtype = ("mtype".to_owned(), Value::from("container_signature"));
            (
                Value::Object(doc).to_string(),
                Map::from_iter([mtype]),
                None,
            )
        }
    };
    Ok(IncomingMessage {
        body: body.into_bytes(),
        properties,
        reply_to,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_wire_example_and_a_bare_body_become_messages() {
        let m =
            message(json!({"properties": {"mtype": "batch"}, "body": {"a": 1}, "reply_to": "/r"}))
                .unwrap();
        assert_eq!(
            (m.body.as_slice(), m.reply_to.as_deref()),
            (&b"{\"a\":1}"[..], Some("/r"))
        );
        assert_eq!(m.properties["mtype"], "batch");
        let m = message(json!({"request_id": "x"})).unwrap();
        assert_eq!(m.properties["mtype"], "container_signature");
        assert_eq!(message(json!([1])).unwrap_err(), ReplayError::NotObject);
        assert_eq!(
            message(json!({"body": "{}", "properties": 3})).unwrap_err(),
            ReplayError::Properties
        );
    }
}
