//! Wire decoding: any message body either decodes to a JSON object or is refused — never a panic — and every
//! decoded object can be checked against every schema, read as a container request, and answered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use signbus::wire::{self, ContainerRequest, Reply, RequestType, Schema};

fuzz_target!(|data: &[u8]| {
    let Ok(map) = wire::decode_object(data) else {
        return;
    };
    let doc = Value::Object(map);
    for schema in Schema::ALL {
        let _ = schema.validate(&doc);
    }
    let map = doc.as_object().expect("decoded as an object");

    // What the decoder accepts, re-encoded, decodes again with the same members in the same order: serde_json
    // never writes duplicates, and the strict parser keeps member order.
    let again = wire::decode_object(doc.to_string().as_bytes()).expect("re-encoded body decodes");
    assert!(
        again.keys().eq(map.keys()),
        "member order changed on re-encoding"
    );

    if let Some(mtype) = map.get("mtype").and_then(Value::as_str) {
        if let Some(kind) = RequestType::from_mtype(mtype) {
            assert_eq!(kind.as_str(), mtype);
        }
    }
    if let Ok(req) = serde_json::from_value::<ContainerRequest>(doc.clone()) {
        let _ = req.manifest_digest();
        let _ = serde_json::to_value(&req).expect("a parsed request serialises");
    }
    for kind in [
        RequestType::Container,
        RequestType::ClearSign,
        RequestType::Blob,
        RequestType::Batch,
    ] {
        let reply = Reply::failed(map, kind, vec!["fuzz".into()]).into_value();
        let _ = Schema::Reply.validate(&reply);
    }
});
