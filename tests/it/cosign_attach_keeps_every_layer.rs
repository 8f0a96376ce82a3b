//! Attaching cosign signatures to a real registry (Debian's `docker-registry` on loopback, see
//! tests/it/support/registry.rs): every existing layer is kept, concurrent writers lose nothing, and a signature that
//! is already there is not written twice. When `SIGNBUS_TEST_COSIGN` names Debian 13's cosign, `cosign verify`
//! must also accept what signbus attached, next to a signature cosign attached itself.

use crate::support::registry::Registry;
use signbus::cosign::attach::signature_layers;
use signbus::cosign::{
    signature_tag, AttachError, AttachOutcome, Attacher, Payload, PrivateKey, SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
};
use signbus::reference::Reference;
use signbus::registry::{Client, ClientOptions, OCI_MANIFEST};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

fn client() -> Client {
    Client::new(ClientOptions {
        allow_http: true,
        timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .unwrap()
}

/// Pushes a tiny image (a config blob, no layers) to `repo:v1`; returns its manifest digest.
fn push_image(c: &Client, repo: &Reference, salt: &str) -> String {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"salt":"{salt}"}}"#
    );
    let config_digest = c.put_blob(repo, config.as_bytes()).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    c.put_manifest(repo, "v1", OCI_MANIFEST, manifest.as_bytes())
        .unwrap()
}

/// A payload for `repo@digest` with an annotation that makes it unique, and its signature by `key`.
fn signed(repo: &Reference, digest: &str, key: &PrivateKey, note: &str) -> (Vec<u8>, String) {
    let mut a = BTreeMap::new();
    a.insert("note".to_owned(), note.to_owned());
    let payload = Payload::new(&repo.name(), digest, a).unwrap().to_json();
    let sig = key.sign(&payload);
    (payload, sig)
}

/// The `.sig` manifest's layers, each checked: payload blob present and its signature verifying under one of
/// `keys`. Returns the payload digests.
fn layers_checked(c: &Client, repo: &Reference, digest: &str, keys: &[&PrivateKey]) -> Vec<String> {
    let tag = signature_tag(digest).unwrap();
    let m = c.get_manifest(repo, &tag, &[OCI_MANIFEST]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
    let config = c
        .get_blob(repo, v["config"]["digest"].as_str().unwrap())
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let layers = signature_layers(&m.bytes).unwrap();
    let digests: Vec<String> = layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(digests),
        "config lists every layer"
    );
    assert_eq!(config["history"].as_array().unwrap().len(), layers.len());
    for l in &layers {
        assert_eq!(l.media_type, SIMPLE_SIGNING_MEDIA_TYPE);
        let payload = c.get_blob(repo, &l.digest).unwrap();
        let sig = l.signature.as_deref().unwrap();
        assert!(
            keys.iter()
                .any(|k| k.public_key().verify(&payload, sig).is_ok()),
            "layer {} verifies under none of the keys",
            l.digest
        );
    }
    digests
}

#[test]
fn two_keys_attach_two_layers_and_a_repeat_is_reported_already_present() {
    let registry = Registry::start();
    let c = client();
    let repo = Reference::parse_normalized(&format!("{}/test/app", registry.host)).unwrap();
    let digest = push_image(&c, &repo, "two-keys");
    let (k1, k2) = (PrivateKey::generate(), PrivateKey::generate());
    let attacher = Attacher::new(&c);

    let (p1, s1) = signed(&repo, &digest, &k1, "one");
    let first = attacher
        .attach(&repo, &digest, &p1, &s1, &k1.public_key())
        .unwrap();
    assert!(
        matches!(first, AttachOutcome::Attached { puts: 1, .. }),
        "{first:?}"
    );
    // The same payload signed by another key is another signature: appended, the first kept.
    let s2 = k2.sign(&p1);
    let second = attacher
        .attach(&repo, &digest, &p1, &s2, &k2.public_key())
        .unwrap();
    assert!(
        matches!(second, AttachOutcome::Attached { puts: 1, .. }),
        "{second:?}"
    );
    assert_eq!(layers_checked(&c, &repo, &digest, &[&k1, &k2]).len(), 2);

    // Again with k1: already there, nothing written.
    let before = c
        .get_manifest(&repo, &signature_tag(&digest).unwrap(), &[OCI_MANIFEST])
        .unwrap();
    let again = attacher
        .attach(&repo, &digest, &p1, &k1.sign(&p1), &k1.public_key())
        .unwrap();
    assert_eq!(
        again,
        AttachOutcome::AlreadyPresent {
            manifest_digest: before.digest.clone()
        }
    );
    let after = c
        .get_manifest(&repo, &signature_tag(&digest).unwrap(), &[OCI_MANIFEST])
        .unwrap();
    assert_eq!(before.bytes, after.bytes);
    // A signature that does not verify under the key given with it is refused before anything is written.
    let forged = k2.sign(b"something else");
    let out = attacher.attach(&repo, &digest, &p1, &forged, &k2.public_key());
    assert!(matches!(out, Err(AttachError::BadSignature(_))), "{out:?}");
    let annotations = String::from_utf8(after.bytes).unwrap();
    assert!(annotations.contains(SIGNATURE_ANNOTATION));
}

#[test]
fn concurrent_writers_lose_no_layer() {
    let registry = Registry::start();
    let c = client();
    let repo = Reference::parse_normalized(&format!("{}/test/race", registry.host)).unwrap();
    let digest = push_image(&c, &repo, "race");
    let keys: Vec<PrivateKey> = (0..4).map(|_| PrivateKey::generate()).collect();
    let key_refs: Vec<&PrivateKey> = keys.iter().collect();

    // Two threads of one process share an Attacher (serialised per repo@digest) ...
    let shared = Attacher::new(&c);
    // ... and two more act as other processes, each with its own Attacher and client: only the read-back and
    // re-append protect them.
    std::thread::scope(|s| {
        for (i, key) in keys.iter().enumerate() {
            let (repo, digest, shared) = (&repo, &digest, &shared);
            s.spawn(move || {
                let own_client;
                let own;
                let attacher = if i < 2 {
                    shared
                } else {
                    own_client = client();
                    own = Attacher::new(&own_client);
                    &own
                };
                for n in 0..3 {
                    let (p, sig) = signed(repo, digest, key, &format!("writer {i} signature {n}"));
                    let out = attacher.attach(repo, digest, &p, &sig, &key.public_key());
                    assert!(matches!(out, Ok(AttachOutcome::Attached { .. })), "{out:?}");
                }
            });
        }
    });
    let layers = layers_checked(&c, &repo, &digest, &key_refs);
    assert_eq!(
        layers.len(),
        12,
        "every writer's every signature is there: {layers:?}"
    );
}

#[test]
fn cosign_verifies_what_signbus_attached_beside_its_own_signature() {
    let cosign = crate::support::cosign::bin();
    let registry = Registry::start();
    let c = client();
    let repo = Reference::parse_normalized(&format!("{}/test/mixed", registry.host)).unwrap();
    let digest = push_image(&c, &repo, "mixed");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&cosign)
            .args(args)
            .current_dir(dir.path())
            .env("COSIGN_PASSWORD", "pw")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cosign {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let image = format!("{}@{digest}", repo.name());
    // cosign signs first, with its own key ...
    run(&["generate-key-pair"]);
    run(&[
        "sign",
        "--key",
        "cosign.key",
        "--tlog-upload=false",
        "--yes",
        "--allow-http-registry=true",
        &image,
    ]);
    // ... then signbus appends with another key, keeping cosign's layer ...
    let ours = PrivateKey::generate();
    std::fs::write(dir.path().join("ours.pub"), ours.public_key().to_pem()).unwrap();
    let payload = Payload::new(&repo.name(), &digest, BTreeMap::new())
        .unwrap()
        .to_json();
    let out = Attacher::new(&c)
        .attach(
            &repo,
            &digest,
            &payload,
            &ours.sign(&payload),
            &ours.public_key(),
        )
        .unwrap();
    assert!(matches!(out, AttachOutcome::Attached { .. }));
    // ... and cosign accepts both keys' signatures on the image.
    for key in ["cosign.pub", "ours.pub"] {
        run(&[
            "verify",
            "--key",
            key,
            "--insecure-ignore-tlog=true",
            "--allow-http-registry=true",
            &image,
        ]);
    }
    let tag = signature_tag(&digest).unwrap();
    let m = c.get_manifest(&repo, &tag, &[OCI_MANIFEST]).unwrap();
    assert_eq!(signature_layers(&m.bytes).unwrap().len(), 2);
}
