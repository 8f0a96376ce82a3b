//! The most specific scope wins in policy.json and registries.d; a scope defined in two registries.d files is an
//! error naming both.

use crate::support::verify_fixtures::*;
use signbus::verify::registries_d::RegistriesD;

#[test]
fn policy_json_applies_the_most_specific_docker_scope() {
    let f = Fixture::new();
    let policy = f.policy(
        r#"{"default":[{"type":"reject"}],
            "transports":{"docker":{
              "":[{"type":"reject"}],
              "*.example.com":[{"type":"insecureAcceptAnything"}],
              "registry.example.com":[{"type":"reject"}],
              "registry.example.com/ns":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"@ED@"}],
              "registry.example.com/ns/open:1":[{"type":"insecureAcceptAnything"}]}}}"#,
    );
    let (_, d) = manifest("scopes");
    let check = |image: &str| {
        let r = f.verify(&policy, image, &d).unwrap();
        (r.accepted, r.policy_scope)
    };
    assert_eq!(
        check("registry.example.com/ns/open:1"),
        (
            true,
            r#"transports.docker["registry.example.com/ns/open:1"]"#.to_owned()
        )
    );
    // Same repository, other tag: the namespace's signedBy applies and there is no signature.
    assert_eq!(
        check("registry.example.com/ns/open:2"),
        (
            false,
            r#"transports.docker["registry.example.com/ns"]"#.to_owned()
        )
    );
    assert_eq!(
        check("registry.example.com/other:1"),
        (
            false,
            r#"transports.docker["registry.example.com"]"#.to_owned()
        )
    );
    assert_eq!(
        check("mirror.example.com/x:1"),
        (true, r#"transports.docker["*.example.com"]"#.to_owned())
    );
    assert_eq!(
        check("quay.io/x:1"),
        (false, r#"transports.docker[""]"#.to_owned())
    );
    // And a signature makes the namespace scope accept.
    let image = "registry.example.com/ns/open:2";
    f.put(image, &d, 1, &f.sign(f.env.key_ed25519(), image, &d));
    assert!(check(image).0);
}

#[test]
fn registries_d_uses_the_most_specific_lookaside() {
    let f = Fixture::new(); // default-docker → f.store()
    let ns_store = f.dir.path().join("ns-store");
    f.write_registries(
        "ns.yml",
        &format!(
            "docker:\n  registry.example.com/ns:\n    sigstore: {}\n  registry.example.com:\n    lookaside: file:///nonexistent\n",
            url::Url::from_file_path(&ns_store).unwrap()
        ),
    );
    let (_, d) = manifest("regd");
    let image = "registry.example.com/ns/repo:1";
    let sig = f.sign(f.env.key_ed25519(), image, &d);
    // Only in the namespace's store (deprecated key name, .yml file).
    let dir = ns_store.join(format!("ns/repo@{}", d.replacen(':', "=", 1)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("signature-1"), &sig).unwrap();
    let policy = f.policy(&ed_policy(None));
    let r = f.verify(&policy, image, &d).unwrap();
    assert!(r.accepted, "{}", r.to_text());
    assert!(
        r.lookaside
            .as_deref()
            .unwrap()
            .contains(r#"sigstore of docker: "registry.example.com/ns""#),
        "{:?}",
        r.lookaside
    );
    // Another repository on the host uses the host scope, where there is nothing.
    let r2 = f.verify(&policy, "registry.example.com/x:1", &d).unwrap();
    assert!(!r2.accepted);
    assert!(r2
        .lookaside
        .as_deref()
        .unwrap()
        .contains("file:///nonexistent"));
}

#[test]
fn the_same_scope_in_two_files_is_an_error_naming_both() {
    let f = Fixture::new();
    f.write_registries(
        "a.yaml",
        "docker:\n  quay.io/ns:\n    lookaside: file:///a\n",
    );
    f.write_registries(
        "b.yaml",
        "docker:\n  quay.io/ns:\n    lookaside: file:///b\n",
    );
    let err = RegistriesD::load_dir(&f.registries_d())
        .unwrap_err()
        .to_string();
    assert!(err.contains("quay.io/ns"), "{err}");
    assert!(err.contains("a.yaml") && err.contains("b.yaml"), "{err}");

    let g = Fixture::new(); // default.yaml already has default-docker
    g.write_registries("z.yaml", "default-docker:\n  lookaside: file:///z\n");
    let err = RegistriesD::load_dir(&g.registries_d())
        .unwrap_err()
        .to_string();
    assert!(err.contains("default-docker"), "{err}");
    assert!(
        err.contains("default.yaml") && err.contains("z.yaml"),
        "{err}"
    );
}

#[test]
fn unknown_registries_d_keys_are_ignored_and_other_files_are_not_read() {
    let f = Fixture::new();
    f.write_registries(
        "extra.yaml",
        "docker:\n  quay.io:\n    lookaside: file:///q\n    future-key: 1\n",
    );
    f.write_registries("notes.txt", "docker: [this is not yaml config]\n");
    assert!(RegistriesD::load_dir(&f.registries_d()).is_ok());
}
