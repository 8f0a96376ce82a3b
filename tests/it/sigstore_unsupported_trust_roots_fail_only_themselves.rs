//! `sigstoreSigned` requirements whose trust signbus cannot check — `fulcio` (with the Rekor key it requires),
//! `pki`, and public keys combined with a `rekorPublicKey*` — fail only themselves, with a reason that says
//! signbus does not support them; a public-key requirement beside them is still judged on the real registry's
//! signatures. A policy whose only sigstore requirements are unsupported never contacts the registry.

use crate::support::sigstore::{payload, requirements, SigBed};

#[test]
fn fulcio_rekor_and_pki_fail_alone_saying_they_are_not_supported() {
    let bed = SigBed::start();
    let key = bed.signbus_key("s");
    let repo = "unsupported/app";
    let d = bed.push_image(repo, "unsupported");
    bed.attach(
        repo,
        &d,
        &payload(&format!("{}:v1", bed.repo(repo).name()), &d),
        &key,
    );
    let fulcio = r#"{"type":"sigstoreSigned",
        "fulcio":{"caPath":"@DIR@/fulcio.pem","oidcIssuer":"https://issuer.example.com","subjectEmail":"a@example.com"},
        "rekorPublicKeyPath":"@DIR@/rekor.pub"}"#;
    let pki = r#"{"type":"sigstoreSigned","pki":{"caRootsPath":"@DIR@/roots.pem","subjectEmail":"a@example.com"}}"#;
    let rekor = r#"{"type":"sigstoreSigned","keyPath":"@DIR@/s.pub","rekorPublicKeyPaths":["@DIR@/rekor.pub"]}"#;
    let good = r#"{"type":"sigstoreSigned","keyPath":"@DIR@/s.pub"}"#;
    bed.registry_policy("mixed", &format!("[{good},{fulcio},{pki},{rekor}]"));
    let (code, report) = bed.signbus_verify("mixed", repo, &d);
    assert_eq!(code, 1, "{report:#}");
    let reqs = requirements(&report);
    assert_eq!(
        reqs[0],
        (
            "sigstoreSigned".into(),
            true,
            "signature-1 is accepted".into()
        )
    );
    for ((_, ok, why), what) in reqs[1..]
        .iter()
        .zip(["fulcio", "pki", "rekorPublicKeyPaths"])
    {
        assert!(!ok, "{what}: {report:#}");
        assert!(
            why.starts_with(what) && why.contains("not supported by signbus"),
            "{what}: {why}"
        );
    }
    assert_eq!(reqs.len(), 4);
    assert!(report["sigstore_attachments"]
        .as_str()
        .unwrap()
        .contains(".sig"));

    // Only unsupported requirements: nothing to read, the registry is not asked.
    bed.registry_policy("unsupported", &format!("[{fulcio},{pki}]"));
    let (code, report) = bed.signbus_verify("unsupported", repo, &d);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["sigstore_attachments"], serde_json::Value::Null);
    assert!(requirements(&report).iter().all(|(_, ok, _)| !ok));
}
