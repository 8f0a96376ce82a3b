//! Where a reply goes: the request's AMQP `reply-to`, else the configured template filled from the request.
//!
//! Template values come from the requester, so they are checked: a value that could change the shape of the
//! address (`/`, wildcards, whitespace, braces) is refused rather than escaped.

use crate::wire::template::{placeholders, TemplateError};
use serde_json::{Map, Value};

/// Why no reply address could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The template has an unclosed `{` or an empty `{}`.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The template names a member the request lacks.
    #[error("reply address template needs {0:?}, which the request does not carry")]
    Missing(String),
    /// A value would change the address's shape.
    #[error("request member {name:?} = {value:?} cannot be used in a reply address")]
    Unsafe { name: String, value: String },
    /// Neither reply-to nor a template.
    #[error("the request has no reply-to and the server has no reply_to template")]
    Nowhere,
}

fn safe(v: &str) -> bool {
    !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/{}*#>".contains(c))
}

/// The reply address for a request with body `body`, properties `props` and AMQP reply-to `reply_to`.
pub fn reply_address(
    reply_to: Option<&str>,
    template: Option<&str>,
    body: &Map<String, Value>,
    props: &Map<String, Value>,
    task_id_attributes: &[String],
) -> Result<String, AddressError> {
    if let Some(r) = reply_to.filter(|r| !r.is_empty()) {
        return Ok(r.to_owned());
    }
    let t = template.ok_or(AddressError::Nowhere)?;
    let lookup = |name: &str| -> Option<String> {
        let get = |k: &str| {
            body.get(k).or_else(|| props.get(k)).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        match name {
            "creator" => get("requested_by").or_else(|| get("owner_id")),
            "task_id" => task_id_attributes.iter().find_map(|a| get(a)),
            other => get(other),
        }
    };
    let mut out = String::new();
    let mut last = 0;
    for (open, close) in placeholders(t)? {
        let name = &t[open + 1..close];
        let value = lookup(name).ok_or_else(|| AddressError::Missing(name.into()))?;
        if !safe(&value) {
            return Err(AddressError::Unsafe {
                name: name.into(),
                value,
            });
        }
        out.push_str(&t[last..open]);
        out.push_str(&value);
        last = close + 1;
    }
    out.push_str(&t[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }
    const TASK: &[String] = &[];

    #[test]
    fn fills_from_body_then_properties() {
        let body = obj(json!({"requested_by": "alice", "pub_task_id": "42"}));
        let props = obj(json!({"environment": "prod"}));
        let ids = vec!["pub_task_id".to_string()];
        let a = reply_address(
            None,
            Some("/exchanges/x/r.{creator}.{task_id}.{environment}"),
            &body,
            &props,
            &ids,
        );
        assert_eq!(a.unwrap(), "/exchanges/x/r.alice.42.prod");
        assert_eq!(
            reply_address(Some("/queues/mine"), Some("x"), &body, &props, TASK).unwrap(),
            "/queues/mine"
        );
    }

    #[test]
    fn refuses_missing_unsafe_and_malformed() {
        let body = obj(json!({"requested_by": "a/b", "x": "ok"}));
        let none = Map::new();
        assert!(matches!(
            reply_address(None, Some("q.{creator}"), &body, &none, TASK),
            Err(AddressError::Unsafe { .. })
        ));
        assert!(matches!(
            reply_address(None, Some("q.{nope}"), &body, &none, TASK),
            Err(AddressError::Missing(_))
        ));
        assert!(matches!(
            reply_address(None, None, &body, &none, TASK),
            Err(AddressError::Nowhere)
        ));
        for bad in ["q.{x", "q.{}", "q.}x", "{a{b}"] {
            assert!(crate::wire::template::check_template(bad).is_err(), "{bad}");
        }
    }
}
