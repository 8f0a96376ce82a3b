//! The requester: build signing requests, publish them, wait for and correlate the replies.
//!
//! A drop-in for pubtools-sign 1.0.6's messaging signer. [`prepare_container`] turns references, digests and
//! keys into request messages exactly as pubtools-sign lays them out (one per reference × key);
//! [`exchange`] publishes them and collects the replies ([`send_and_receive`]); [`received`] reads the image
//! signatures out of the replies; [`output`] prints what pubtools-sign prints. Nothing here knows about gpg.

pub mod config;
pub mod cosign;
pub mod cosign_config;
pub mod exchange;
pub mod output;
pub mod prepare;
pub mod prepare_cosign;
pub mod received;

pub use prepare::{
    prepare_batch, prepare_blob, prepare_clearsign, prepare_container, Common, ContainerSignInput,
};

pub use config::{MsgSignerConfig, RequesterConfig};
pub use exchange::{
    send_and_receive, send_and_receive_with_progress, Exchange, NoProgress, Progress, Retry,
};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// A request ready to publish.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    /// `body[message_id_key]`.
    pub id: String,
    /// The JSON body.
    pub body: Map<String, Value>,
    /// Application properties.
    pub properties: Map<String, Value>,
    /// Destination.
    pub address: String,
}

/// Input the requester refuses before sending anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// `--digest` and `--reference` counts differ.
    #[error("{digests} --digest values but {references} --reference values: they must pair up")]
    Unpaired { digests: usize, references: usize },
    /// `--signing-key-name` given but not one per key.
    #[error("{names} --signing-key-name values for {keys} --signing-key values")]
    UnpairedNames { names: usize, keys: usize },
    /// An input is invalid (bad reference, bad digest, ...).
    #[error("{0}")]
    Invalid(String),
    /// A placeholder in an address cannot be filled.
    #[error("address template {template:?}: {reason}")]
    Template { template: String, reason: String },
}

/// pubtools-sign's `isodate_now()`: UTC, microseconds, `Z`.
pub fn isodate_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    now.format(&f).expect("formatting a UTC time cannot fail")
}

/// Fills `{name}` placeholders (Python `str.format` style, `{{`/`}}` escapes) from `vars`.
pub fn format_address(
    template: &str,
    vars: &HashMap<&str, String>,
) -> Result<String, RequestError> {
    let err = |reason: String| RequestError::Template {
        template: template.to_owned(),
        reason,
    };
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let v = vars
                    .get(name.as_str())
                    .ok_or_else(|| err(format!("unknown placeholder {{{name}}}")))?;
                out.push_str(v);
            }
            '}' => return Err(err("single '}'".into())),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The variables pubtools-sign offers to address templates (signer and operation fields).
pub fn template_vars<'a>(
    cfg: &MsgSignerConfig,
    creator: &str,
    task_id: &str,
    requester: Option<&str>,
) -> HashMap<&'a str, String> {
    HashMap::from([
        ("creator", creator.to_owned()),
        ("task_id", task_id.to_owned()),
        ("requester", requester.unwrap_or("").to_owned()),
        ("environment", cfg.environment.clone()),
        ("service", cfg.service.clone()),
        ("topic_send_to", cfg.topic_send_to.clone()),
        ("topic_listen_to", cfg.topic_listen_to.clone()),
        ("message_id_key", cfg.message_id_key.clone()),
        ("task_id_attribute", cfg.task_id_attribute().to_owned()),
    ])
}
