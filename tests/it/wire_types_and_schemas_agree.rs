//! The Rust wire types and the JSON Schemas in `schemas/` describe the same messages, and the requests the real
//! pubtools-sign client sent (`../shared/docs/wire-examples/`) parse and validate.

use serde_json::{json, Value};
use signbus::claim::Claim;
use signbus::wire::{ContainerRequest, Reply, RequestType, Schema};
use std::path::PathBuf;

fn example(name: &str) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/docs/wire-examples");
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_real_clients_container_request_parses_and_validates() {
    let ex = example("container-single.request.json");
    Schema::RequestProperties
        .validate(&ex["properties"])
        .unwrap();
    Schema::ContainerRequest.validate(&ex["body"]).unwrap();
    let req: ContainerRequest = serde_json::from_value(ex["body"].clone()).unwrap();
    assert_eq!(
        req.manifest_digest(),
        ex["properties"]["manifest_digest"].as_str()
    );
    // Re-serialising the typed request gives back the same document, member order included.
    assert_eq!(serde_json::to_string(&req).unwrap(), ex["body"].to_string());
    // Its claim is a valid claim (pubtools-sign's spacing, no timestamp).
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&req.claim_file)
        .unwrap();
    let claim = Claim::parse(&bytes).unwrap();
    assert_eq!(claim.manifest_digest(), req.manifest_digest().unwrap());
    assert!(claim.reference().path_matches(&req.repo));
}

#[test]
fn every_examples_properties_validate() {
    for name in [
        "container-single.request.json",
        "container-batch.request.json",
        "clearsign.request.json",
        "blob.request.json",
    ] {
        let ex = example(name);
        Schema::RequestProperties
            .validate(&ex["properties"])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mtype = ex["properties"]["mtype"].as_str().unwrap();
        assert!(RequestType::from_mtype(mtype).is_some(), "{name}: {mtype}");
    }
}

#[test]
fn each_required_schema_member_is_required_by_the_type_too() {
    let body = example("container-single.request.json")["body"].clone();
    let schema: Value = serde_json::from_str(Schema::ContainerRequest.text()).unwrap();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for member in &required {
        let mut b = body.clone();
        b.as_object_mut().unwrap().remove(*member);
        assert!(
            Schema::ContainerRequest.validate(&b).is_err(),
            "schema accepts a body without {member}"
        );
        let typed = serde_json::from_value::<ContainerRequest>(b);
        // manifest_digest lives in the typed request's extra members; the schema is what requires it.
        if *member != "manifest_digest" {
            assert!(typed.is_err(), "type accepts a body without {member}");
        }
    }
    // And every typed field is described by the schema.
    let props = schema["properties"].as_object().unwrap();
    for field in [
        "sig_key_id",
        "claim_file",
        "request_id",
        "created",
        "requested_by",
        "repo",
        "sig_keyname",
    ] {
        assert!(props.contains_key(field), "schema lacks {field}");
    }
}

#[test]
fn replies_built_by_the_types_validate_and_failed_ones_carry_no_signature() {
    let body = example("container-single.request.json")["body"]
        .as_object()
        .unwrap()
        .clone();
    let ok = Reply::signed(&body, RequestType::Container, "c2ln".into()).into_value();
    Schema::Reply.validate(&ok).unwrap();
    let failed = Reply::failed(&body, RequestType::Container, vec!["boom".into()]).into_value();
    Schema::Reply.validate(&failed).unwrap();
    assert_eq!(failed["msg"]["signed_claim"], Value::Null);
    // A reply with errors AND a signature breaks the schema.
    let mut bad = failed.clone();
    bad["msg"]["signed_claim"] = json!("c2ln");
    assert!(Schema::Reply.validate(&bad).is_err());
    assert!(
        Schema::Reply
            .validate(&json!({"msg": {"errors": []}}))
            .is_err(),
        "request_id is required"
    );
}
