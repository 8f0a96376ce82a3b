//! An http:// lookaside store: 200 delivers, 404 ends the list, 403 and 5xx stop with an error naming the URL.

use crate::support::http_store::HttpServer;
use crate::support::verify_fixtures::*;
use crate::support::*;
use std::collections::HashMap;

const IMAGE: &str = "registry.example.com/ns/repo:2";

fn fixture_with_http(routes: HashMap<String, (u16, Vec<u8>)>) -> (Fixture, HttpServer) {
    let f = Fixture::new();
    let server = HttpServer::start(routes);
    f.write_registries(
        "http.yaml",
        &format!(
            "docker:\n  registry.example.com/ns:\n    lookaside: {}\n",
            server.base
        ),
    );
    (f, server)
}

#[test]
fn signatures_are_read_until_404() {
    let (_, digest) = manifest("http-ok");
    let f0 = Fixture::new();
    let good = f0.sign(f0.env.key_ed25519(), IMAGE, &digest);
    let routes = HashMap::from([
        // An OpenPGP-looking blob that is no valid signature: refused on its own.
        (
            HttpServer::path(IMAGE, &digest, 1),
            (200, vec![0x88, 0x01, 0x02]),
        ),
        (HttpServer::path(IMAGE, &digest, 2), (200, good)),
    ]);
    let (f, server) = fixture_with_http(routes);
    let report = f
        .verify(&f.policy(&ed_policy(None)), IMAGE, &digest)
        .unwrap();
    assert!(report.accepted, "{}", report.to_text());
    assert_eq!(verdicts(&report).len(), 2);
    assert!(report.lookaside.as_deref().unwrap().contains("http.yaml"));
    let asked = server.requested.lock().unwrap().clone();
    assert_eq!(
        asked,
        [1, 2, 3].map(|n| HttpServer::path(IMAGE, &digest, n)),
        "signature-3 answered 404 and ended the list"
    );
}

#[test]
fn http_403_is_an_error_that_explains_hidden_missing_objects() {
    let (_, digest) = manifest("http-403");
    let routes = HashMap::from([(
        HttpServer::path(IMAGE, &digest, 1),
        (403, b"AccessDenied".to_vec()),
    )]);
    let (f, _server) = fixture_with_http(routes);
    let err = f
        .verify(&f.policy(&ed_policy(None)), IMAGE, &digest)
        .unwrap_err()
        .to_string();
    assert!(err.contains("403"), "{err}");
    assert!(err.contains("S3"), "{err}");
    assert!(err.contains("/signature-1"), "{err}");
}

#[test]
fn http_500_is_an_error_naming_the_url() {
    let (_, digest) = manifest("http-500");
    let f0 = Fixture::new();
    let good = f0.sign(f0.env.key_ed25519(), IMAGE, &digest);
    let routes = HashMap::from([
        (HttpServer::path(IMAGE, &digest, 1), (200, good)),
        (HttpServer::path(IMAGE, &digest, 2), (500, b"oops".to_vec())),
    ]);
    let (f, _server) = fixture_with_http(routes);
    let err = f
        .verify(&f.policy(&ed_policy(None)), IMAGE, &digest)
        .unwrap_err()
        .to_string();
    assert!(err.contains("500"), "{err}");
    assert!(err.contains("/signature-2"), "{err}");
}

#[test]
fn an_unreachable_store_is_an_error_naming_the_url() {
    let (_, digest) = manifest("http-down");
    let f = Fixture::new();
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    f.write_registries(
        "down.yaml",
        &format!("docker:\n  registry.example.com:\n    lookaside: http://127.0.0.1:{port}/s\n"),
    );
    let err = f
        .verify(&f.policy(&ed_policy(None)), IMAGE, &digest)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{port}/s/ns/repo@")),
        "{err}"
    );
}

/// https stores are checked against the system CA store, or the bundle given: never a bundle compiled into
/// signbus. The store's certificate is signed by testenv's CA, which only the explicit bundle trusts.
#[test]
fn https_stores_trust_the_given_ca_bundle_and_not_a_compiled_in_one() {
    let (_, digest) = manifest("https");
    let f = Fixture::new();
    let good = f.sign(f.env.key_ed25519(), IMAGE, &digest);
    let routes = HashMap::from([(HttpServer::path(IMAGE, &digest, 1), (200, good))]);
    let tls = std::path::PathBuf::from(f.env.get("SIGNBUS_TESTENV_DIR")).join("tls");
    let server = HttpServer::start_tls(routes, &tls.join("server.crt"), &tls.join("server.key"));
    f.write_registries(
        "https.yaml",
        &format!(
            "docker:\n  registry.example.com/ns:\n    lookaside: {}\n",
            server.base
        ),
    );
    let policy = f.policy(&ed_policy(None));
    let policy_file = f.policy_file(&ed_policy(None));
    // Without the bundle: the system store does not know testenv's CA.
    let err = f.verify(&policy, IMAGE, &digest).unwrap_err().to_string();
    assert!(
        err.contains("https://localhost") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    // With it (as `signbus verify --ca-cert` passes it): read and accepted.
    let limits = signbus::verify::lookaside::FetchLimits {
        ca_cert: Some(tls.join("ca.pem")),
        ..Default::default()
    };
    let report = f.verify_with(&policy, IMAGE, &digest, limits).unwrap();
    assert!(report.accepted, "{}", report.to_text());
    // The CLI flag reaches it.
    let out = signbus()
        .args(["verify", IMAGE, "--digest", &digest, "--json", "--ca-cert"])
        .arg(tls.join("ca.pem"))
        .arg("--policy")
        .arg(&policy_file)
        .arg("--registries-d")
        .arg(f.registries_d())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"accepted\": true"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
