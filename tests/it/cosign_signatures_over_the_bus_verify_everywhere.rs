//! `msg-cosign-container-sign`: cosign signatures made over the bus. The cosign key lives only in the server's
//! configuration (made by the real cosign 2.5), the registry settings only in the requester's; the server builds
//! the payload, the requester attaches it. The result is accepted by `cosign verify --key`, by skopeo 1.18 under a
//! `sigstoreSigned` policy and by `signbus verify`; a key the server does not hold, or a repository its grant does
//! not cover, is refused and nothing is attached. Runs for every server × requester protocol (test.sh's rows).

use crate::support::broker::declare_request_queue;
use crate::support::env::{unique, Env};
use crate::support::requester::client_config;
use crate::support::run::Args;
use crate::support::server::{server_config, Server};
use crate::support::sigstore::SigBed;

/// A server on a queue of its own holding the cosign key `bus` as `release` (granted per `authorization`), a
/// requester config for it with the registry settings, and the bed with one pushed image; returns its digest.
struct World {
    bed: SigBed,
    _server: Server,
    config: std::path::PathBuf,
    digest: String,
}

fn world(authorization: &str) -> World {
    let bed = SigBed::start();
    bed.cosign_key_pair("bus");
    let env = Env::load();
    let queue = unique("cosign-bus");
    declare_request_queue(&env, &queue);
    let server_cfg = format!(
        "{}  cosign_keys:\n    - name: release\n      aliases: [bus]\n      key_file: \"{}\"\n      \
         passphrase_file: \"{}\"\n{authorization}",
        server_config(&env, &queue, ""),
        bed.path("bus.key").display(),
        bed.path("pass").display(),
    );
    let server = Server::start(&server_cfg);
    let config = bed.path("requester.yaml");
    let requester = format!(
        "{}cosign_signer:\n  allow_http_registry: true\n  num_threads: 2\n",
        client_config(&env, &queue, 30)
    );
    std::fs::write(&config, requester).unwrap();
    let digest = bed.push_image("ns/app", "bus");
    World {
        bed,
        _server: server,
        config,
        digest,
    }
}

fn sign(w: &World, key: &str, repo: &str) -> (i32, String, String) {
    Args::new("msg-cosign-container-sign")
        .opt("--signing-key", key)
        .opt("--task-id", "t1")
        .opt("--config-file", &w.config)
        .opt("--digest", &w.digest)
        .opt("--reference", format!("{}:v1", w.bed.repo(repo).name()))
        .opt("--annotation", "team=release")
        .flag("--raw")
        .run()
}

#[test]
fn a_signature_made_over_the_bus_passes_cosign_skopeo_and_signbus_verify() {
    let w = world("");
    let (code, out, err) = sign(&w, "release", "ns/app");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("attached"), "{err}");
    w.bed
        .cosign_verify("bus", "ns/app", &w.digest)
        .unwrap_or_else(|e| panic!("cosign verify refused it: {e}"));
    let key = w.bed.path("bus.pub");
    w.bed.registry_policy(
        "bus",
        &format!(
            r#"[{{"type":"sigstoreSigned","keyPath":"{}","signedIdentity":{{"type":"matchRepository"}}}}]"#,
            key.display()
        ),
    );
    let (code, report) = w.bed.signbus_verify("bus", "ns/app", &w.digest);
    assert_eq!(code, 0, "signbus verify: {report:#}");
    // skopeo reads the key through the chroot's /tmp, the bed's work directory.
    w.bed.registry_policy(
        "bus-chroot",
        r#"[{"type":"sigstoreSigned","keyPath":"/tmp/bus.pub","signedIdentity":{"type":"matchRepository"}}]"#,
    );
    w.bed
        .skopeo_verify("bus-chroot", "ns/app")
        .unwrap_or_else(|e| panic!("skopeo 1.18 refused it: {e}"));
    // A second run finds the same payload signed by the same key there already.
    let (code, out, err) = sign(&w, "bus", "ns/app");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("already present"), "{err}");
}

#[test]
fn an_unknown_key_or_an_ungranted_repository_is_refused_and_nothing_is_attached() {
    let w = world(
        "authorization:\n  grants:\n    - requester: signbus-test\n      keys: [release]\n      \
         repositories: [ns/allowed]\n",
    );
    let (code, out, err) = sign(&w, "nope", "ns/app");
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("unknown cosign key") || err.contains("unknown cosign key"),
        "{out}\n{err}"
    );
    let (code, out, err) = sign(&w, "release", "ns/app");
    assert_eq!(code, 1, "{out}\n{err}");
    let text = format!("{out}{err}");
    assert!(
        text.contains("not authorised") && text.contains("ns/app"),
        "{text}"
    );
    assert!(
        w.bed.cosign_verify("bus", "ns/app", &w.digest).is_err(),
        "a refused request must attach nothing"
    );
}
