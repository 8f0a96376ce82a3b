use super::*;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn native_cfg() -> CosignSignerConfig {
    CosignSignerConfig {
        upload_tlog: false,
        ..Default::default()
    }
}

fn input(refs: &[&str], digests: &[&str], ids: &[&str], keys: &[&str]) -> SignInput {
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
    SignInput {
        references: v(refs),
        digests: v(digests),
        identities: v(ids),
        signing_keys: v(keys),
    }
}

#[test]
fn references_digests_and_identities_zip_in_order_keys_outermost() {
    let i = input(
        &[
            "127.0.0.1:5000/ns/a:v1",
            "127.0.0.1:5000/ns/b:v2",
            "127.0.0.1:5000/ns/a:v3",
        ],
        &[D1, D2, D1],
        &["registry.example.com/ns/a:v1"],
        &["k1", "k2"],
    );
    let p = Plan::new(&i, &native_cfg()).unwrap();
    let t = |j: &Job| (j.key, j.target.clone(), j.tag.clone(), j.identity.clone());
    let a = format!("127.0.0.1:5000/ns/a@{D1}");
    let b = format!("127.0.0.1:5000/ns/b@{D2}");
    let jobs: Vec<_> = p.jobs.iter().map(t).collect();
    // Grouped by repo@digest in order of first appearance, as pubtools-sign's results are.
    assert_eq!(
        jobs[0],
        (
            0,
            a.clone(),
            Some("v1".into()),
            Some("registry.example.com/ns/a:v1".into())
        )
    );
    assert_eq!(jobs[1], (0, a.clone(), Some("v3".into()), None));
    assert_eq!(jobs[2], (0, b.clone(), Some("v2".into()), None));
    assert_eq!(jobs[3].0, 1);
    assert_eq!(p.groups, vec![vec![0, 1, 3, 4], vec![2, 5]]);
    assert_eq!(p.jobs[0].repo.name(), "127.0.0.1:5000/ns/a");
}

#[test]
fn digests_alone_must_be_whole_references() {
    let whole = format!("quay.io/ns/app@{D1}");
    let p = Plan::new(&input(&[], &[&whole], &[], &["k"]), &native_cfg()).unwrap();
    assert_eq!(p.jobs[0].target, whole);
    assert_eq!(p.jobs[0].digest, D1);
    assert_eq!(p.jobs[0].tag, None);
    for bad in [D1, "quay.io/ns/app:v1", "quay.io/ns/app@sha256:abc"] {
        let e = Plan::new(&input(&[], &[bad], &[], &["k"]), &native_cfg()).unwrap_err();
        assert!(e.to_string().contains("--digest"), "{e}");
    }
}

#[test]
fn malformed_or_unpaired_input_is_refused_by_name() {
    let cfg = native_cfg();
    /// (references, digests, identities, what the error says)
    type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&["q.io/a:1", "q.io/b:1"], &[D1], &[], "must pair"),
        (
            &["q.io/a:1"],
            &[D1],
            &["q.io/a:1", "q.io/b:1"],
            "--identity",
        ),
        (&["q.io/a:1"], &["sha256:xyz"], &[], "--digest"),
        (&["q.io/A:1"], &[D1], &[], "--reference"),
        (&["127.0.0.1:5000/a"], &[D1], &[], "no tag"),
        (
            &["q.io/a@sha256:1111111111111111111111111111111111111111111111111111111111111111"],
            &[D1],
            &[],
            "not a digest",
        ),
        (&["q.io/a:1"], &[D1], &["Bad Identity"], "--identity"),
    ];
    for (refs, digests, ids, why) in cases {
        let e = Plan::new(&input(refs, digests, ids, &["k"]), &cfg).unwrap_err();
        assert!(e.to_string().contains(why), "{refs:?} {digests:?}: {e}");
    }
}

#[test]
fn aliases_resolve_and_uris_tlog_and_insecure_registries_go_to_cosign_bin() {
    let mut cfg = native_cfg();
    cfg.key_aliases
        .insert("prod".into(), "awskms:///alias/prod".into());
    cfg.key_aliases.insert("dev".into(), "/keys/dev.key".into());
    let i = input(
        &["q.io/a:1"],
        &[D1],
        &[],
        &["prod", "dev", "pkcs11:token=x", "k8s://ns/s"],
    );
    let p = Plan::new(&i, &cfg).unwrap();
    let ways: Vec<_> = p
        .keys
        .iter()
        .map(|k| (k.resolved.as_str(), k.way))
        .collect();
    assert_eq!(
        ways,
        [
            ("awskms:///alias/prod", Way::CosignBin(Fallback::KeyUri)),
            ("/keys/dev.key", Way::Native),
            ("pkcs11:token=x", Way::CosignBin(Fallback::KeyUri)),
            ("k8s://ns/s", Way::CosignBin(Fallback::KeyUri)),
        ]
    );
    cfg.upload_tlog = true;
    let p = Plan::new(&input(&["q.io/a:1"], &[D1], &[], &["dev"]), &cfg).unwrap();
    assert_eq!(p.keys[0].way, Way::CosignBin(Fallback::UploadTlog));
    cfg.upload_tlog = false;
    cfg.allow_insecure_registry = true;
    let p = Plan::new(&input(&["q.io/a:1"], &[D1], &[], &["dev"]), &cfg).unwrap();
    assert_eq!(p.keys[0].way, Way::CosignBin(Fallback::InsecureRegistry));
}
