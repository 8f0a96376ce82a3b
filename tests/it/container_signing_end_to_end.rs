//! A requester signs N image references through the real broker and a real signbus server; every signature
//! verifies with skopeo and carries exactly the claim that was sent. Prints the server's throughput.

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use signbus::requester::ContainerSignInput;

fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_n_references_and_every_signature_verifies_with_skopeo() {
    let bed = Bed::start("e2e", "");
    let env = &bed.env;
    let n = 200;
    let manifests: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{{\"manifest\": {i}}}").into_bytes())
        .collect();
    let references: Vec<String> = (0..n)
        .map(|i| format!("registry.example.com/ns/repo{}:tag-{i}", i % 7))
        .collect();
    let task_id = unique("task");
    let input = ContainerSignInput {
        digests: manifests.iter().map(|m| digest_of(m)).collect(),
        references: references.clone(),
        signing_keys: vec![env.key_ed25519().to_owned()],
        task_id: task_id.clone(),
        requester: Some("tester".into()),
        ..Default::default()
    };
    let (requests, ex, elapsed) = bed.sign(&input).await;
    assert!(ex.error.is_none(), "{:?}\n{}", ex.error, bed.logs());
    assert_eq!(ex.replies.len(), n);
    println!(
        "throughput: {n} signatures in {:.2} s = {:.0} signatures/s with 2 signing workers (ed25519, AMQP 1.0, one requester)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );

    for (i, req) in requests.iter().enumerate() {
        let (doc, props) = &ex.replies[&req.id];
        let msg = &doc["msg"];
        assert_eq!(msg["errors"], Value::Array(vec![]), "{doc}");
        assert_eq!(msg["request_id"], req.body["request_id"]);
        assert_eq!(
            props.get("mtype").and_then(Value::as_str),
            Some("container_signature")
        );
        assert_eq!(
            props.get("pub_task_id").and_then(Value::as_str),
            Some(task_id.as_str())
        );
        let sig = STANDARD
            .decode(msg["signed_claim"].as_str().unwrap())
            .unwrap();
        // The signature is a signed message over exactly the claim bytes that were sent.
        let sent_claim = STANDARD
            .decode(req.body["claim_file"].as_str().unwrap())
            .unwrap();
        assert_eq!(gpg_payload(env, &sig), sent_claim);
        // Checking every one with skopeo takes a while; check a spread, always the first and last.
        if i % 25 == 0 || i == n - 1 {
            let out = skopeo_verify(env, &manifests[i], &references[i], env.key_ed25519(), &sig)
                .unwrap_or_else(|e| panic!("skopeo rejected signature {i}: {e}"));
            assert!(out.contains("Signature verified"), "{out}");
            // And not for another image or identity.
            assert!(skopeo_verify(
                env,
                &manifests[(i + 1) % n],
                &references[i],
                env.key_ed25519(),
                &sig
            )
            .is_err());
            assert!(skopeo_verify(
                env,
                &manifests[i],
                "registry.example.com/ns/other:x",
                env.key_ed25519(),
                &sig
            )
            .is_err());
        }
        let claim: Value = serde_json::from_slice(&sent_claim).unwrap();
        assert_eq!(
            claim["critical"]["identity"]["docker-reference"],
            Value::String(references[i].clone())
        );
        assert_eq!(
            claim["critical"]["image"]["docker-manifest-digest"],
            Value::String(digest_of(&manifests[i]))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_key_by_name_signs_and_verifies() {
    let bed = Bed::start("rsa", "");
    let env = &bed.env;
    let manifest = b"rsa manifest".to_vec();
    let input = ContainerSignInput {
        digests: vec![digest_of(&manifest)],
        references: vec!["quay.example.org:5000/a/b/c:v1".into()],
        signing_keys: vec![env.key_rsa().to_owned()],
        signing_key_names: vec!["rsa".into()],
        task_id: unique("t"),
        requester: Some("tester".into()),
    };
    let (requests, ex, _) = bed.sign(&input).await;
    assert_eq!(requests[0].body["repo"], "a/b/c");
    assert!(ex.error.is_none(), "{:?}", ex.error);
    let (doc, _) = &ex.replies[&requests[0].id];
    let sig = STANDARD
        .decode(doc["msg"]["signed_claim"].as_str().unwrap())
        .unwrap();
    skopeo_verify(
        env,
        &manifest,
        "quay.example.org:5000/a/b/c:v1",
        env.key_rsa(),
        &sig,
    )
    .unwrap();
    assert!(skopeo_verify(
        env,
        &manifest,
        "quay.example.org:5000/a/b/c:v1",
        env.key_ed25519(),
        &sig
    )
    .is_err());
}
