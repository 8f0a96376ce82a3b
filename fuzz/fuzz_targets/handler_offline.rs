//! The server's whole request handling, offline: any message (body, properties, reply-to) goes through
//! `Handler::handle` (as `serve --replay` calls it) — decode, schemas, claim checks, key lookup, signing, reply — and comes out as a
//! decision, never a panic. A reply the handler decides to send matches the reply schema, carries a
//! `traceparent`, goes to the request's reply-to when it has one, and has a result exactly when it has no error.
//!
//! Input: a wire example `{"properties": {...}, "body": <object or JSON text>, "reply_to": "..."}` (as
//! `serve --replay` reads them), or anything else as a container request's raw body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use signbus::config::ServerConfig;
use signbus::server::handler::{Decision, Handler, Origin, Outcome};
use signbus::signing::fake::FakeSigner;
use signbus::signing::{KeyRing, ResolvedKey};
use signbus::transport::IncomingMessage;
use signbus::wire::{RequestType, Schema};
use std::sync::{Arc, OnceLock};

/// Signs by returning the data: the handler's logic without gpg.
struct Fixture {
    rt: tokio::runtime::Runtime,
    handler: Handler<FakeSigner>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // The wire examples' key id (23456789) and name (mykey), plus a second key sharing no suffix.
        let keys = KeyRing::new(vec![
            ResolvedKey {
                fingerprint: "0123456789ABCDEF0123456789ABCDEF23456789".into(),
                name: Some("mykey".into()),
                aliases: vec!["alias".into()],
            },
            ResolvedKey {
                fingerprint: "FEDCBA9876543210FEDCBA9876543210FEDCBA98".into(),
                name: Some("other".into()),
                aliases: vec![],
            },
        ])
        .expect("distinct keys");
        // No reply cache: each input is judged on its own, so a crash reproduces from its input alone.
        let cfg = ServerConfig::from_yaml(
            "{broker: {urls: ['amqp://x']}, signing: {keys: [{id: mykey}]}, server: {listen_to: /q, \
             reply_to: '/queues/reply.{creator}.{pub_task_id}', task_id_attributes: [pub_task_id], \
             reply_cache: {capacity: 0}}}",
        )
        .expect("a valid configuration");
        let handler = Handler::new(
            Arc::new(FakeSigner::new()),
            keys,
            Default::default(),
            &cfg,
            Default::default(),
            Default::default(),
        ).expect("no authorization section");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        Fixture { rt, handler }
    })
}

fn message(data: &[u8]) -> IncomingMessage {
    if let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(data) {
        if let Some(body) = doc.remove("body") {
            let body = match body {
                Value::String(text) => text,
                other => other.to_string(),
            };
            let properties = match doc.remove("properties") {
                Some(Value::Object(p)) => p,
                _ => Map::new(),
            };
            let reply_to = doc
                .remove("reply_to")
                .and_then(|v| v.as_str().map(str::to_owned));
            return IncomingMessage {
                body: body.into_bytes(),
                properties,
                reply_to,
                ..Default::default()
            };
        }
    }
    IncomingMessage {
        body: data.to_vec(),
        properties: Map::from_iter([("mtype".to_owned(), "container_signature".into())]),
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let msg = message(data);
    let handled = f.rt.block_on(f.handler.handle(&msg, Origin::Replay));
    let Decision::Reply { message, outcome } = handled.decision else {
        return;
    };
    let reply: Value = serde_json::from_str(&message.body).expect("a reply is JSON");
    assert!(
        Schema::Reply.validate(&reply).is_ok(),
        "reply breaks its schema"
    );
    assert!(message.properties.contains_key("traceparent"));
    if let Some(to) = msg.reply_to.as_deref().filter(|t| !t.is_empty()) {
        assert_eq!(message.address, to, "reply-to not honoured");
    }
    // A signed reply carries its result and no error; any other carries errors and no signature.
    let kind = RequestType::from_properties(&msg.properties).unwrap_or(RequestType::Container);
    let errors = reply["msg"]["errors"].as_array().expect("errors is a list");
    let result = &reply["msg"][kind.result_field()];
    if outcome == Outcome::Signed {
        assert!(errors.is_empty(), "signed with errors: {errors:?}");
        assert!(result.is_string(), "signed without a result");
    } else {
        assert!(!errors.is_empty(), "{outcome:?} without an error");
        assert!(result.is_null(), "{outcome:?} with a result");
    }
});
