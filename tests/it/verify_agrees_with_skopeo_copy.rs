//! Interop with containers/image itself: an image pushed to a real registry (Debian's docker-registry on
//! loopback), signed through the bus by a real signbus server, published with `signbus publish` into a file://
//! lookaside that a registries.d file names for the registry's host:port. Then `skopeo copy` under a
//! signedBy policy and `signbus verify` under the same policy and registries.d must reach the same verdict:
//! both accept the good signature (also stored uncompressed, and also as signature-2 after an untrusted
//! signature-1), and both refuse a removed signature, a garbled one, a tampered one, one made by an untrusted
//! key and one for another identity, each for that case's reason; both refuse the image outright when its
//! store holds something that is no signature at all (text, an empty file, an encrypted message) before a good
//! signature, and refuse a policy whose signedBaseLayer requirement lacks a valid baseLayerIdentity.

use crate::support::registry::{inspect_digest, OciLayout, Registry};
use crate::support::{run, signbus, unique, Bed};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use signbus::requester::ContainerSignInput;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// One verification scenario: its own lookaside store, registries.d and policy, so cases cannot leak into
/// each other.
struct Case {
    name: &'static str,
    dir: tempfile::TempDir,
}

impl Case {
    fn new(name: &'static str, registry: &Registry, trusted_key: &Path) -> Case {
        let case = Case {
            name,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(case.registries_d()).unwrap();
        std::fs::create_dir_all(case.lookaside()).unwrap();
        let store = url::Url::from_file_path(case.lookaside()).unwrap();
        // The scope is the registry's host:port, quoted: YAML would otherwise still read it as a string, but
        // the quotes make the intent plain.
        std::fs::write(
            case.registries_d().join("interop.yaml"),
            format!(
                "docker:\n  \"{host}\":\n    lookaside: {store}\n    lookaside-staging: {store}\n",
                host = registry.host
            ),
        )
        .unwrap();
        let policy = serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    registry.host.as_str(): [{
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPath": trusted_key,
                    }],
                },
            },
        });
        std::fs::write(
            case.policy(),
            serde_json::to_string_pretty(&policy).unwrap(),
        )
        .unwrap();
        case
    }
    fn registries_d(&self) -> PathBuf {
        self.dir.path().join("registries.d")
    }
    fn lookaside(&self) -> PathBuf {
        self.dir.path().join("sigstore")
    }
    fn policy(&self) -> PathBuf {
        self.dir.path().join("policy.json")
    }

    /// `signbus publish`es `signature` for `reference` at `digest`; returns the file it wrote.
    fn publish(&self, reference: &str, digest: &str, signature: &[u8]) -> PathBuf {
        let file = self.dir.path().join(format!("{}.sig", unique("sig")));
        std::fs::write(&file, signature).unwrap();
        let (code, out, err) = run(signbus()
            .args(["publish", "--reference", reference, "--digest", digest])
            .arg("--signature")
            .arg(&file)
            .arg("--registries-d")
            .arg(self.registries_d()));
        assert_eq!(code, 0, "{}: signbus publish: {out}{err}", self.name);
        let written = out
            .trim()
            .split_once(": ")
            .map(|(_, p)| PathBuf::from(p))
            .unwrap_or_else(|| panic!("{}: unexpected publish output {out:?}", self.name));
        assert!(
            written.starts_with(self.lookaside()),
            "{}: published outside the lookaside: {}",
            self.name,
            written.display()
        );
        written
    }

    /// `skopeo copy` from the registry under this case's policy and registries.d: (accepted, output).
    fn skopeo_copy(&self, docker_url: &str) -> (bool, String) {
        let out_dir = self.dir.path().join(unique("copy"));
        let (code, out, err) = run(Command::new("skopeo")
            .arg("--policy")
            .arg(self.policy())
            .arg("--registries.d")
            .arg(self.registries_d())
            .args(["copy", "--quiet", "--src-tls-verify=false", docker_url])
            .arg(format!("dir:{}", out_dir.display())));
        let text = format!("{out}{err}");
        if code == 0 {
            assert!(
                out_dir.join("manifest.json").exists(),
                "{}: skopeo copy succeeded without a manifest: {text}",
                self.name
            );
        }
        (code == 0, text)
    }

    /// `signbus verify --json` under this case's policy and registries.d: (accepted, output).
    fn signbus_verify(&self, image: &str, digest: &str) -> (bool, String) {
        let (code, out, err) = run(signbus()
            .args(["verify", image, "--digest", digest, "--json"])
            .arg("--policy")
            .arg(self.policy())
            .arg("--registries-d")
            .arg(self.registries_d()));
        let text = format!("{out}{err}");
        let report: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{}: signbus verify --json: {e}: {text}", self.name));
        let accepted = report["accepted"] == Value::Bool(true);
        assert_eq!(
            code,
            if accepted { 0 } else { 1 },
            "{}: exit status disagrees with the report: {text}",
            self.name
        );
        (accepted, text)
    }
}

/// Signs `reference` at `digest` with `key` through the bus; returns the binary signed message.
async fn sign(bed: &Bed, key: &str, reference: &str, digest: &str) -> Vec<u8> {
    let input = ContainerSignInput {
        digests: vec![digest.to_owned()],
        references: vec![reference.to_owned()],
        signing_keys: vec![key.to_owned()],
        task_id: unique("interop"),
        requester: Some("tester".into()),
        ..Default::default()
    };
    let (requests, ex, _) = bed.sign(&input).await;
    assert!(ex.error.is_none(), "{:?}\n{}", ex.error, bed.logs());
    assert_eq!(requests.len(), 1);
    let (doc, _) = &ex.replies[&requests[0].id];
    assert_eq!(doc["msg"]["errors"], Value::Array(vec![]), "{doc}");
    STANDARD
        .decode(doc["msg"]["signed_claim"].as_str().unwrap())
        .unwrap()
}

/// The packets inside `signature`'s compressed-data packet (old-format tag 8, indeterminate length, ZIP), i.e.
/// the same one-pass-signature + literal-data + signature message without compression. Inflated by python3's
/// zlib, as nothing in the dependency tree inflates. A message that is not compressed (the in-process signing
/// backend never compresses) is returned as it is.
fn uncompressed(signature: &[u8]) -> Vec<u8> {
    // A one-pass signature packet first: old format (tag 4, 0x90..=0x93) or new format (0xc4).
    if matches!(signature[0], 0x90..=0x93 | 0xc4) {
        return signature.to_vec();
    }
    assert_eq!(
        signature[..2],
        [0xa3, 0x01],
        "expected a ZIP-compressed signed message from gpg"
    );
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; sys.stdout.buffer.write(zlib.decompressobj(-15).decompress(sys.stdin.buffer.read()))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&signature[2..])
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "inflate failed"
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_and_signbus_verify_reach_the_same_verdicts() {
    let started = Instant::now();
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();

    // A tiny image, built by hand and pushed as is.
    let layout = OciLayout::build(&work.path().join("layout"), "v1", "hello from signbus\n");
    let image = format!("{}/ns/app:v1", registry.host);
    let other = format!("{}/ns/other:v1", registry.host);
    let url = registry.docker_url("ns/app:v1");
    let pushed = layout.push(&url, work.path());
    assert_eq!(
        pushed, layout.manifest_digest,
        "--preserve-digests keeps our manifest"
    );
    assert_eq!(inspect_digest(&url), pushed, "{}", registry.log());
    let digest = pushed;

    // Signatures made by a real signbus server through the broker.
    let bed = Bed::start("interop", "");
    let keys = PathBuf::from(bed.env.get("SIGNBUS_TESTENV_DIR")).join("keys");
    let ed_pub = keys.join("ed25519.pub.gpg");
    assert!(ed_pub.exists(), "{} missing", ed_pub.display());
    let good = sign(&bed, bed.env.key_ed25519(), &image, &digest).await;
    let by_rsa = sign(&bed, bed.env.key_rsa(), &image, &digest).await;
    let for_other = sign(&bed, bed.env.key_ed25519(), &other, &digest).await;
    drop(bed);
    let signed_at = started.elapsed();

    let mut table = Vec::new();
    // Each refusal must be for the case's reason, in both tools' words, not for an unreachable registry or store.
    let mut check = |case: &Case, expect: Result<(), (&str, &str)>| {
        let (skopeo_ok, skopeo_text) = case.skopeo_copy(&url);
        let (signbus_ok, signbus_text) = case.signbus_verify(&image, &digest);
        table.push(format!(
            "{:<16} skopeo copy: {:<8} signbus verify: {:<8} {}",
            case.name,
            if skopeo_ok { "accepts" } else { "refuses" },
            if signbus_ok { "accepts" } else { "refuses" },
            expect
                .map(|()| String::new())
                .unwrap_or_else(|(s, b)| format!("({s:?} / {b:?})")),
        ));
        assert_eq!(
            skopeo_ok,
            expect.is_ok(),
            "{}: skopeo copy: {skopeo_text}\nregistry log: {}",
            case.name,
            registry.log()
        );
        assert_eq!(
            signbus_ok,
            expect.is_ok(),
            "{}: signbus verify: {signbus_text}",
            case.name
        );
        if let Err((skopeo_reason, signbus_reason)) = expect {
            assert!(
                skopeo_text.contains("Source image rejected")
                    && skopeo_text.contains(skopeo_reason),
                "{}: skopeo copy refused, but not with {skopeo_reason:?}: {skopeo_text}",
                case.name
            );
            assert!(
                signbus_text.contains(signbus_reason),
                "{}: signbus verify refused, but not with {signbus_reason:?}: {signbus_text}",
                case.name
            );
        }
    };

    // 1. The signature from the bus, published by signbus: both accept.
    let accepted = Case::new("accepted", &registry, &ed_pub);
    let path = accepted.publish(&image, &digest, &good);
    assert!(path.ends_with(format!(
        "ns/app@{}/signature-1",
        digest.replacen(':', "=", 1)
    )));
    check(&accepted, Ok(()));

    // 2. Published, then removed: no signature-1 at all.
    let removed = Case::new("removed", &registry, &ed_pub);
    let path = removed.publish(&image, &digest, &good);
    std::fs::remove_file(&path).unwrap();
    check(
        &removed,
        Err(("no signature exists", "no signature exists")),
    );

    // 3. The signature bytes changed. gpg compresses the signed message, so a flipped byte usually breaks the
    // deflate stream rather than the signature; what breaks depends on where the byte falls. So, first, a
    // garbled blob (middle byte flipped): both refuse, for whatever reason their OpenPGP parser gives.
    let garbled = Case::new("garbled", &registry, &ed_pub);
    let path = garbled.publish(&image, &digest, &good);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    check(
        &garbled,
        Err(("Source image rejected", "\"accepted\": false")),
    );
    // Then the same message stored uncompressed: accepted by both (a control) …
    let plain = uncompressed(&good);
    let control = Case::new("uncompressed", &registry, &ed_pub);
    control.publish(&image, &digest, &plain);
    check(&control, Ok(()));
    // … and with its last byte (the end of the signature value) flipped: a bad signature for both.
    let mut flipped = plain;
    *flipped.last_mut().unwrap() ^= 0x01;
    let tampered = Case::new("tampered", &registry, &ed_pub);
    tampered.publish(&image, &digest, &flipped);
    check(&tampered, Err(("Invalid GPG signature", "Bad signature")));

    // 4. Signed by the RSA key, which the policy does not trust.
    let untrusted = Case::new("untrusted key", &registry, &ed_pub);
    untrusted.publish(&image, &digest, &by_rsa);
    // containers/image calls a signature by a key outside the policy's keyring "Invalid GPG signature" (gpgme:
    // no public key).
    check(
        &untrusted,
        Err(("Invalid GPG signature", "not one of the trusted keys")),
    );

    // 5. The right key and digest, but signed for ns/other:v1 (default signedIdentity matchRepoDigestOrExact).
    let identity = Case::new("other identity", &registry, &ed_pub);
    identity.publish(&image, &digest, &for_other);
    let not_accepted = format!("{other} is not accepted");
    check(&identity, Err((&not_accepted, &not_accepted)));

    // 6. An untrusted signature-1 before a good signature-2: both accept (one accepted signature suffices).
    let mixed = Case::new("rsa then ed", &registry, &ed_pub);
    mixed.publish(&image, &digest, &by_rsa);
    let path = mixed.publish(&image, &digest, &good);
    assert!(path.ends_with("signature-2"), "{}", path.display());
    check(&mixed, Ok(()));

    // 7. Something that is no signature at all as signature-1, a good signature-2: containers/image parses
    // every blob it reads and refuses the image on an unrecognised one; so must signbus. And a policy whose
    // signedBaseLayer requirement has no valid baseLayerIdentity: containers/image refuses to load it.
    let mut refused_outright = |case: &Case, skopeo_reason: &str, signbus_reason: &str| {
        let (skopeo_ok, skopeo_text) = case.skopeo_copy(&url);
        let (signbus_ok, signbus_text) = case.signbus_verify(&image, &digest);
        assert!(
            !skopeo_ok && skopeo_text.contains(skopeo_reason),
            "{}: skopeo copy: {skopeo_text}",
            case.name
        );
        assert!(
            !signbus_ok && signbus_text.contains(signbus_reason),
            "{}: signbus verify: {signbus_text}",
            case.name
        );
        table.push(format!(
            "{:<16} skopeo copy: refuses  signbus verify: refuses  ({skopeo_reason:?} / {signbus_reason:?})",
            case.name
        ));
    };
    let dir_of = |case: &Case| {
        case.lookaside()
            .join(format!("ns/app@{}", digest.replacen(':', "=", 1)))
    };
    for (name, blob, reason) in [
        (
            "text first",
            &b"not a signature\n"[..],
            "unrecognized signature format, starting with binary 0x6e",
        ),
        ("empty first", &b""[..], "empty signature blob"),
        (
            "encrypted first",
            &[0x85, 0x01, 0x0c, 0x03][..],
            "unrecognized signature format, starting with binary 0x85",
        ),
    ] {
        let case = Case::new(name, &registry, &ed_pub);
        std::fs::create_dir_all(dir_of(&case)).unwrap();
        std::fs::write(dir_of(&case).join("signature-1"), blob).unwrap();
        let path = case.publish(&image, &digest, &good);
        assert!(path.ends_with("signature-2"), "{}", path.display());
        refused_outright(&case, reason, reason);
    }
    for (name, identity) in [
        ("base: none", None),
        ("base: string", Some(serde_json::json!("matchExact"))),
        ("base: null", Some(Value::Null)),
    ] {
        let case = Case::new(name, &registry, &ed_pub);
        let mut policy: Value =
            serde_json::from_slice(&std::fs::read(case.policy()).unwrap()).unwrap();
        let mut base = serde_json::json!({"type": "signedBaseLayer"});
        if let Some(identity) = identity {
            base["baseLayerIdentity"] = identity;
        }
        policy["transports"]["docker"][registry.host.as_str()]
            .as_array_mut()
            .unwrap()
            .push(base);
        std::fs::write(case.policy(), policy.to_string()).unwrap();
        case.publish(&image, &digest, &good);
        refused_outright(&case, "invalid policy", "baseLayerIdentity");
    }

    println!("image {image}@{digest}");
    for line in &table {
        println!("{line}");
    }
    println!(
        "interop: registry up, image pushed and 3 signatures made through the bus in {:.1} s; {} cases in {:.1} s total",
        signed_at.as_secs_f64(),
        table.len(),
        started.elapsed().as_secs_f64()
    );
}
