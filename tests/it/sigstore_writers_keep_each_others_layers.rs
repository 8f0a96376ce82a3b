//! Writers of one `.sig` tag do not lose each other's layers: signbus's library, Debian 13's cosign 2.5 and
//! skopeo 1.18 append to the same image's signatures in turn, and afterwards every signature is there and
//! verifies — in `signbus verify`, `cosign verify --key` and skopeo `copy`, each key on its own.

use crate::support::sigstore::{payload, verdicts, SigBed};
use signbus::cosign::attach::signature_layers;
use signbus::cosign::signature_tag;
use signbus::registry::OCI_MANIFEST;

#[test]
fn signbus_cosign_and_skopeo_append_to_one_sig_tag_and_every_signature_verifies() {
    let bed = SigBed::start();
    let repo = "shared/app";
    let d = bed.push_image(repo, "shared");
    let identity = format!("{}:v1", bed.repo(repo).name());
    let first = bed.signbus_key("s1");
    let second = bed.signbus_key("s2");
    bed.cosign_key_pair("c");
    bed.cosign_key_pair("k");

    bed.attach(repo, &d, &payload(&identity, &d), &first);
    bed.cosign_sign("c", repo, &d, &["--sign-container-identity", &identity]);
    bed.skopeo_sign("k", repo, &d);
    bed.attach(repo, &d, &payload(&identity, &d), &second);

    let tag = signature_tag(&d).unwrap();
    let m = bed
        .client
        .get_manifest(&bed.repo(repo), &tag, &[OCI_MANIFEST])
        .unwrap();
    assert_eq!(
        signature_layers(&m.bytes).unwrap().len(),
        4,
        "{}",
        String::from_utf8_lossy(&m.bytes)
    );

    let keys = ["s1", "c", "k", "s2"];
    bed.registry_policy(
        "all",
        &format!(
            r#"[{{"type":"sigstoreSigned","keyPaths":[{}]}}]"#,
            keys.map(|k| format!("\"@DIR@/{k}.pub\"")).join(",")
        ),
    );
    let (code, report) = bed.signbus_verify("all", repo, &d);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        verdicts(&report),
        vec![(true, "accepted".to_owned()); 4],
        "{report:#}"
    );
    for (i, key) in keys.iter().enumerate() {
        bed.registry_policy(
            key,
            &format!(r#"[{{"type":"sigstoreSigned","keyPath":"@DIR@/{key}.pub"}}]"#),
        );
        let (code, report) = bed.signbus_verify(key, repo, &d);
        assert_eq!(code, 0, "{key}: {report:#}");
        let accepted: Vec<bool> = verdicts(&report).iter().map(|v| v.0).collect();
        let mut expected = vec![false; 4];
        expected[i] = true;
        assert_eq!(accepted, expected, "{key}: {report:#}");
        bed.cosign_verify(key, repo, &d)
            .unwrap_or_else(|e| panic!("cosign verify --key {key}: {e}"));
        bed.skopeo_verify(key, repo)
            .unwrap_or_else(|e| panic!("skopeo under {key}: {e}"));
    }
}
