//! `cosign_signature` through the whole handler: the server builds the payload cosign would, signs it with the
//! named cosign key, and a grant restricted to repositories is checked against the identity.

use crate::config::ServerConfig;
use crate::cosign::ring::KeyRing as CosignKeys;
use crate::cosign::{Payload, PrivateKey, PublicKey};
use crate::server::handler::{Decision, Handler, Origin, Outcome};
use crate::signing::fake::FakeSigner;
use crate::signing::KeyRing;
use crate::transport::IncomingMessage;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn handler() -> (Handler<FakeSigner>, PublicKey) {
    let key = PrivateKey::generate();
    let public = key.public_key();
    let cosign = CosignKeys::new([("release".to_owned(), vec!["r".to_owned()], key)]).unwrap();
    let cfg = ServerConfig::from_yaml(
        "{broker: {urls: [amqp://x]}, server: {listen_to: /q, reply_to: /r}, \
         signing: {keys: [], cosign_keys: [{name: release, key_file: /unused}]}, \
         authorization: {grants: [{requester: me, keys: [release], repositories: [ns/]}]}}",
    )
    .unwrap();
    let gpg = KeyRing::new(vec![]).unwrap();
    let metrics = Default::default();
    let h = Handler::new(
        Arc::new(FakeSigner::new()),
        gpg,
        cosign,
        &cfg,
        metrics,
        Default::default(),
    );
    (h.unwrap(), public)
}

fn request(id: &str, key: &str, identity: &str) -> IncomingMessage {
    let body = json!({"sig_key_id": key, "manifest_digest": DIGEST, "identity": identity,
        "annotations": {"team": "release"}, "request_id": id, "requested_by": "me",
        "created": crate::requester::isodate_now()});
    IncomingMessage {
        body: body.to_string().into_bytes(),
        properties: Map::from_iter([("mtype".to_owned(), Value::from("cosign_signature"))]),
        ..Default::default()
    }
}

async fn answer(h: &Handler<FakeSigner>, m: IncomingMessage) -> (Outcome, Value, String) {
    let handled = h.handle(&m, Origin::Replay).await;
    match handled.decision {
        Decision::Reply { message, outcome } => {
            let doc: Value = serde_json::from_str(&message.body).unwrap();
            (outcome, doc["msg"].clone(), handled.key)
        }
        Decision::Reject { reason, .. } => panic!("rejected: {reason}"),
    }
}

#[tokio::test]
async fn the_server_signs_the_payload_cosign_would_build_with_the_named_key() {
    let (h, public) = handler();
    let (outcome, msg, key) = answer(&h, request("c1", "r", "quay.io/ns/app:1")).await;
    assert_eq!(
        (outcome, key.as_str()),
        (Outcome::Signed, "release"),
        "{msg}"
    );
    let payload = STANDARD
        .decode(msg["cosign_payload"].as_str().unwrap())
        .unwrap();
    let annotations = BTreeMap::from([("team".to_owned(), "release".to_owned())]);
    let expected = Payload::new("quay.io/ns/app:1", DIGEST, annotations).unwrap();
    assert_eq!(
        payload,
        expected.to_json(),
        "the payload cosign 2.5 would sign"
    );
    let signature = msg["cosign_signature"].as_str().unwrap();
    public.verify(&payload, signature).unwrap();
    assert_eq!(
        msg["cosign_public_key"].as_str(),
        Some(public.to_pem().as_str())
    );
    assert_eq!(
        h.signatory().signer().calls(),
        0,
        "no gpg signature was made"
    );
}

#[tokio::test]
async fn cosign_refusals_name_the_key_the_grant_and_the_identity() {
    let (h, _) = handler();
    let (o, msg, _) = answer(&h, request("c2", "nope", "quay.io/ns/app:1")).await;
    assert_eq!(o, Outcome::Key);
    assert!(
        msg["errors"][0]
            .as_str()
            .unwrap()
            .contains("unknown cosign key \"nope\""),
        "{msg}"
    );
    assert!(msg["cosign_signature"].is_null() && msg.get("cosign_payload").is_none());
    let (o, msg, _) = answer(&h, request("c3", "release", "quay.io/other/app:1")).await;
    assert_eq!(o, Outcome::Forbidden);
    assert!(
        msg["errors"][0]
            .as_str()
            .unwrap()
            .contains("repository \"other/app\""),
        "{msg}"
    );
    let (o, msg, _) = answer(&h, request("c4", "release", "Not A Reference")).await;
    assert_eq!(o, Outcome::Claim);
    assert!(
        msg["errors"][0]
            .as_str()
            .unwrap()
            .contains("Not A Reference"),
        "{msg}"
    );
}
