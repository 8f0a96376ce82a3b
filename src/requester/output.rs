//! What the requester prints: pubtools-sign's JSON document (byte-compatible with Python's `json.dumps`) or the
//! `--raw` lines, and the exit status.
//!
//! Differences from pubtools-sign 1.0.6, on purpose: when any reply carries errors the status is `error` and
//! the exit code 1 (pubtools-sign says `ok` and exits 0); a timeout with `--raw` prints the error instead of a
//! traceback.

use super::{Exchange, PreparedRequest};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// The rendered result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Text for stdout.
    pub stdout: String,
    /// Text for stderr.
    pub stderr: String,
    /// Process exit code.
    pub exit_code: i32,
}

/// Python `json.dumps(value)` with default arguments: `", "` and `": "` separators, ASCII only.
pub fn python_dumps(v: &Value) -> String {
    let mut out = String::new();
    write_py(v, &mut out);
    out
}

fn write_py(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_py_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_str(k, out);
                out.push_str(": ");
                write_py(x, out);
            }
            out.push('}');
        }
    }
}

fn write_py_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Renders a run: `operation` is the inputs echo, `signing_keys` the keys as given, `result_field` the reply
/// member printed by `--raw`.
pub fn render(
    requests: &[PreparedRequest],
    ex: &Exchange,
    operation: Value,
    signing_keys: &[String],
    result_field: &str,
    raw: bool,
) -> Rendered {
    let failed_requests = requests
        .iter()
        .filter_map(|r| ex.replies.get(&r.id))
        .filter(|(doc, _)| !reply_errors(doc).is_empty())
        .count();
    let missing = ex.missing(requests).len();
    let mut error_message = String::new();
    if let Some(e) = &ex.error {
        error_message.push_str(e);
        error_message.push('\n');
    }
    if failed_requests > 0 {
        let _ = writeln!(
            error_message,
            "SigningFailed : {failed_requests}/{} requests failed",
            requests.len()
        );
    }
    let status = if error_message.is_empty() {
        "ok"
    } else {
        "error"
    };
    if raw {
        let mut stdout = String::new();
        let mut stderr = String::new();
        for (doc, _) in requests.iter().filter_map(|r| ex.replies.get(&r.id)) {
            let errors = reply_errors(doc);
            if errors.is_empty() {
                let v = doc
                    .pointer(&format!("/msg/{result_field}"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                stdout.push_str(v);
                stdout.push('\n');
            }
            for e in errors {
                let _ = writeln!(stderr, "{e}");
            }
        }
        if let Some(e) = &ex.error {
            let _ = writeln!(stderr, "{}", e.trim_end());
        }
        if status == "error" {
            let _ = writeln!(
                stderr,
                "{}",
                summary(requests.len(), failed_requests, missing)
            );
        }
        return Rendered {
            stdout,
            stderr,
            exit_code: i32::from(status == "error"),
        };
    }
    let results: Vec<Value> = requests
        .iter()
        .map(|r| match ex.replies.get(&r.id) {
            Some((doc, props)) => json!([doc, Value::Object(props.clone())]),
            None => Value::String(String::new()),
        })
        .collect();
    let mut top = Map::new();
    top.insert(
        "signer_result".into(),
        json!({"status": status, "error_message": error_message}),
    );
    top.insert("operation_results".into(), Value::Array(results));
    top.insert("operation".into(), operation);
    top.insert("signing_keys".into(), json!(signing_keys));
    let mut stdout = python_dumps(&Value::Object(top));
    stdout.push('\n');
    let stderr = if status == "error" {
        format!("{}\n", summary(requests.len(), failed_requests, missing))
    } else {
        String::new()
    };
    Rendered {
        stdout,
        stderr,
        exit_code: i32::from(status == "error"),
    }
}

/// The `msg.errors` of a reply, as strings.
fn reply_errors(doc: &Value) -> Vec<String> {
    doc.pointer("/msg/errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
        .collect()
}

fn summary(total: usize, failed: usize, missing: usize) -> String {
    let mut parts = Vec::new();
    if failed > 0 {
        parts.push(format!(
            "{failed} of {total} requests were refused by the server (see the errors above)"
        ));
    }
    if missing > 0 {
        parts.push(format!(
            "{missing} of {total} requests got no reply in time: is a signing server consuming topic_send_to, \
             and does its reply address reach topic_listen_to?"
        ));
    }
    if parts.is_empty() {
        parts.push("signing failed".into());
    }
    format!("error: {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_like_python() {
        let v = json!({"a": [1, "é\n\"", null, true], "b": {"c": "\u{1F600}"}});
        assert_eq!(
            python_dumps(&v),
            r#"{"a": [1, "\u00e9\n\"", null, true], "b": {"c": "\ud83d\ude00"}}"#
        );
    }
}
