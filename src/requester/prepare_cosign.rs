//! `cosign_signature` requests for `msg-cosign-container-sign`: one per (image, cosign key), naming what to sign —
//! digest, identity, annotations — never the bytes (the server builds the payload). The identity is the one given
//! for the reference, else cosign's default for it (the repository, without tag or digest). No I/O.

use super::prepare::{Builder, Common};
use super::{MsgSignerConfig, PreparedRequest, RequestError};
use crate::cosign::default_identity;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::wire::RequestType;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// What the user asked for in `msg-cosign-container-sign`.
#[derive(Debug, Clone, Default)]
pub struct CosignBusInput {
    /// `--digest`, paired with `references`.
    pub digests: Vec<String>,
    /// `--reference`: where each signature is attached.
    pub references: Vec<String>,
    /// `--identity`, paired with `references` when given.
    pub identities: Vec<String>,
    /// Annotations for every payload.
    pub annotations: BTreeMap<String, String>,
    /// Keys (cosign key names on the server), task id, requester.
    pub common: Common,
}

/// One image to sign: where its signatures go and what they name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignImage {
    /// The reference given (the registry repository the signature is attached in).
    pub reference: Reference,
    /// The manifest digest.
    pub digest: Digest,
    /// The identity the payload names.
    pub identity: String,
}

/// The images of `input`, paired and checked: as many digests (and identities, when given) as references, each
/// reference and digest valid.
pub fn cosign_images(input: &CosignBusInput) -> Result<Vec<CosignImage>, RequestError> {
    if input.digests.len() != input.references.len() {
        return Err(RequestError::Unpaired {
            digests: input.digests.len(),
            references: input.references.len(),
        });
    }
    if !input.identities.is_empty() && input.identities.len() != input.references.len() {
        return Err(RequestError::Invalid(format!(
            "{} --identity values for {} --reference values: give one per reference, or none",
            input.identities.len(),
            input.references.len()
        )));
    }
    let mut images = Vec::new();
    for (i, (digest, reference)) in input.digests.iter().zip(&input.references).enumerate() {
        let parsed = Reference::parse_normalized(reference)
            .map_err(|e| RequestError::Invalid(format!("--reference {reference:?}: {e}")))?;
        let digest =
            Digest::parse(digest).map_err(|e| RequestError::Invalid(format!("--digest: {e}")))?;
        let identity = match input.identities.get(i) {
            Some(id) => id.clone(),
            None => default_identity(&parsed),
        };
        images.push(CosignImage {
            reference: parsed,
            digest,
            identity,
        });
    }
    Ok(images)
}

/// One `cosign_signature` request per (image, key), in order, each paired with its image.
pub fn prepare_cosign(
    cfg: &MsgSignerConfig,
    creator: &str,
    input: &CosignBusInput,
) -> Result<Vec<(CosignImage, PreparedRequest)>, RequestError> {
    let images = cosign_images(input)?;
    let b = Builder::new(cfg, creator, &input.common)?;
    let mut out = Vec::new();
    for image in images {
        for key in &input.common.signing_keys {
            let mut body = Map::new();
            body.insert("sig_key_id".into(), json!(key));
            body.insert("manifest_digest".into(), json!(image.digest));
            body.insert("identity".into(), json!(image.identity));
            if !input.annotations.is_empty() {
                body.insert("annotations".into(), json!(input.annotations));
            }
            b.stamp(&mut body);
            body.insert(cfg.task_id_attribute().into(), json!(input.common.task_id));
            let headers = b.headers(
                RequestType::Cosign,
                &[
                    (cfg.task_id_attribute(), json!(input.common.task_id)),
                    ("manifest_digest", Value::from(image.digest.as_str())),
                ],
            );
            let request = b.finish(RequestType::Cosign, body, headers)?;
            out.push((image.clone(), request));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Request, Schema};

    fn cfg() -> MsgSignerConfig {
        let yaml = "msg_signer: {messaging_brokers: [amqp://x], messaging_cert_key: /k, \
                    messaging_ca_cert: /c, topic_send_to: /q, topic_listen_to: /r, environment: e, \
                    service: s, timeout: 1, retries: 1, send_retries: 1, message_id_key: request_id, \
                    log_level: INFO}";
        let file =
            crate::requester::RequesterConfig::parse(yaml, "c.yaml".as_ref(), |_| None).unwrap();
        file.single().unwrap().clone()
    }

    #[test]
    fn each_image_and_key_makes_one_schema_valid_request_naming_what_to_sign() {
        let d = format!("sha256:{}", "a".repeat(64));
        let input = CosignBusInput {
            digests: vec![d.clone(), d.clone()],
            references: vec!["quay.io/ns/a:1".into(), "docker.io/library/b:2".into()],
            identities: vec![],
            annotations: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            common: Common {
                signing_keys: vec!["release".into(), "beta".into()],
                task_id: "7".into(),
                ..Default::default()
            },
        };
        let out = prepare_cosign(&cfg(), "me", &input).unwrap();
        assert_eq!(out.len(), 4);
        let identities: Vec<&str> = out.iter().map(|(i, _)| i.identity.as_str()).collect();
        assert_eq!(
            identities,
            [
                "quay.io/ns/a",
                "quay.io/ns/a",
                "index.docker.io/library/b",
                "index.docker.io/library/b"
            ]
        );
        let (_, first) = &out[0];
        assert_eq!(first.properties["mtype"], "cosign_signature");
        let body = Value::Object(first.body.clone());
        Schema::CosignRequest.validate(&body).unwrap();
        let Request::Cosign(typed) = Request::parse(RequestType::Cosign, &body).unwrap() else {
            panic!("not a cosign request")
        };
        assert_eq!(
            (typed.sig_key_id.as_str(), typed.annotations["k"].as_str()),
            ("release", "v")
        );
    }

    #[test]
    fn unpaired_or_invalid_inputs_are_refused_before_anything_is_sent() {
        let d = format!("sha256:{}", "a".repeat(64));
        let mut input = CosignBusInput {
            digests: vec![d.clone()],
            references: vec!["quay.io/ns/a:1".into()],
            identities: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert!(cosign_images(&input)
            .unwrap_err()
            .to_string()
            .contains("--identity"));
        input.identities.clear();
        input.digests = vec!["sha256:nope".into()];
        assert!(cosign_images(&input)
            .unwrap_err()
            .to_string()
            .contains("--digest"));
        input.digests = vec![d];
        input.references = vec!["Bad Ref".into()];
        assert!(cosign_images(&input)
            .unwrap_err()
            .to_string()
            .contains("--reference"));
    }
}
