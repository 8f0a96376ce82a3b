//! No signature of one type can pass for another: clearsign and blob requests whose data is an atomic container
//! signature claim (in any disguise a verifier's JSON parser sees through) get an error reply and no signature,
//! counted as `outcome="cross_type"`. Each refused text is first signed directly with gpg, as the request would
//! have been (a cleartext signature; a detached signature, wrapped with its data into a signed message), and
//! shown to skopeo (containers/image), which accepts it as a signature of the image — the signature the server
//! refused to make.

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const REFERENCE: &str = "registry.example.com/evil/app:1";

/// `data` signed by gpg with `key` as a cleartext signature (`clear`, what a clearsign request returns) or as a
/// binary detached signature (what a blob request returns) wrapped with the data into a signed message: the
/// signature packet followed by a literal data packet holding `data`, which a verifier reads like any other.
fn sign_like_a_request(env: &Env, key: &str, clear: bool, data: &[u8]) -> Vec<u8> {
    if clear {
        return gpg_sign(env, key, data, Mode::Clear);
    }
    let signature = gpg_sign(env, key, data, Mode::Detached);
    // Literal data packet (tag 11, new format, 4-byte length): binary, no file name, date 0, then the data.
    let mut literal = vec![b'b', 0, 0, 0, 0, 0];
    literal.extend_from_slice(data);
    let mut message = signature;
    message.push(0xC0 | 11);
    message.push(0xFF);
    message.extend_from_slice(&u32::try_from(literal.len()).unwrap().to_be_bytes());
    message.extend_from_slice(&literal);
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_disguised_as_text_or_blobs_are_refused_and_would_have_passed_skopeo() {
    let bed = Bed::start("crosstype", "");
    let env = &bed.env;
    let key = env.key_ed25519().to_owned();
    let manifest = format!(r#"{{"schemaVersion": 2, "evil": "{}"}}"#, unique("m"));
    let digest = format!("sha256:{:x}", Sha256::digest(manifest.as_bytes()));
    let compact = format!(
        r#"{{"critical":{{"type":"atomic container signature","image":{{"docker-manifest-digest":"{digest}"}},"identity":{{"docker-reference":"{REFERENCE}"}}}},"optional":{{}}}}"#
    );
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&compact).unwrap()).unwrap();
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    // (name, text, whether skopeo is expected to accept gpg's signature of it)
    let variants: Vec<(&str, String, bool)> = vec![
        ("compact", compact.clone(), true),
        ("pretty", pretty.clone(), true),
        ("crlf", pretty.replace('\n', "\r\n"), true),
        (
            "surrounding whitespace",
            format!("\n \t{compact}\n\n"),
            true,
        ),
        // A line that starts with '-' is dash-escaped in the cleartext armour and unescaped by the verifier.
        (
            "dash-escaped line",
            compact.replace(r#""optional":{}"#, "\"optional\":{\"timestamp\":\n-1}"),
            true,
        ),
        (
            "escaped member name",
            compact.replacen("critical", "\\u0063ritical", 1),
            true,
        ),
        (
            "nested deeper than serde_json goes",
            compact.replace(r#""optional":{}"#, &format!(r#""optional":{{"x":{deep}}}"#)),
            true,
        ),
        // Go's decoder refuses a byte order mark; refused here all the same.
        ("byte order mark", format!("\u{feff}{compact}"), false),
    ];
    let task = unique("task");
    let mut client = RawClient::open(env, &task).await;
    let address = format!("/queues/{}", bed.queue);
    let send = |id: String, mtype: &str, data: &[u8]| {
        let member = if mtype == "clearsign_signature" {
            "data"
        } else {
            "artifact"
        };
        let body = json!({
            "sig_key_id": &key[key.len() - 8..], member: STANDARD.encode(data), "request_id": id,
            "created": signbus::requester::isodate_now(), "requested_by": "tester", "repo": null,
            "pub_task_id": task,
        });
        let props = json!({"mtype": mtype, "owner_id": "tester", "pub_task_id": task});
        (body.to_string(), props)
    };
    let mut expected = Vec::new();
    for (name, text, skopeo_accepts) in &variants {
        for (mtype, clear) in [("clearsign_signature", true), ("gpg_signature", false)] {
            // What a signature over this text would be worth: skopeo's verdict on gpg's own signature of it.
            let sig = sign_like_a_request(env, &key, clear, text.as_bytes());
            let verdict = skopeo_verify(env, manifest.as_bytes(), REFERENCE, &key, &sig);
            if *skopeo_accepts {
                assert!(
                    verdict.is_ok(),
                    "{name} ({mtype}): skopeo refused gpg's signature: {verdict:?}"
                );
            }
            println!(
                "{name:>36} as {mtype:<19}: skopeo {} gpg's signature of it",
                if verdict.is_ok() {
                    "accepts"
                } else {
                    "refuses"
                }
            );
            let id = format!("{mtype}-{}", name.replace(' ', "-"));
            let (body, props) = send(id.clone(), mtype, text.as_bytes());
            client.send(&address, body, &props).await;
            expected.push((id, mtype, false));
        }
    }
    // Controls: JSON that is no claim, and the claim as a member of another document, are signed.
    for (i, text) in [
        r#"{"hello": "world"}"#.to_owned(),
        format!(r#"{{"claim": {compact}}}"#),
    ]
    .iter()
    .enumerate()
    {
        for mtype in ["clearsign_signature", "gpg_signature"] {
            let id = format!("{mtype}-control-{i}");
            let (body, props) = send(id.clone(), mtype, text.as_bytes());
            client.send(&address, body, &props).await;
            expected.push((id, mtype, true));
        }
    }
    let got = client.replies(expected.len(), || bed.logs()).await;
    for (id, mtype, signed) in &expected {
        let msg = &got[id]["msg"];
        let result = signbus::wire::RequestType::from_mtype(mtype)
            .unwrap()
            .result_field();
        if *signed {
            assert_eq!(msg["errors"], json!([]), "{id}: {msg}");
            assert!(msg[result].is_string(), "{id}: {msg}");
        } else {
            assert_eq!(msg[result], Value::Null, "{id}: signed: {msg}");
            let e = msg["errors"][0].as_str().unwrap_or_default();
            assert!(e.contains("atomic container signature claim"), "{id}: {e}");
        }
    }
    let metrics = bed.server.as_ref().unwrap().scrape();
    let refused = 2.0 * variants.len() as f64;
    assert_eq!(
        metric_sum(
            &metrics,
            "signbus_requests_total",
            &[("outcome", "cross_type")]
        ),
        refused
    );
    client.close().await;
}
