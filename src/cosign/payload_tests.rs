use super::*;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// The expected bytes are derived from cosign 2.5's code path: `payload.Cosign.MarshalJSON` (sigstore
// pkg/signature/payload) fills `SimpleContainerImage{Critical{Identity, Image, Type}, Optional}` and calls Go's
// `json.Marshal`: struct field order, no whitespace, no newline, a nil annotations map as `null`.
#[test]
fn payload_bytes_equal_what_cosign_writes_without_annotations() {
    let p = Payload::new("registry.example.com/ns/app", DIGEST, BTreeMap::new()).unwrap();
    let expected = format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"registry.example.com/ns/app\"}},\
         \"image\":{{\"docker-manifest-digest\":\"{DIGEST}\"}},\
         \"type\":\"cosign container image signature\"}},\"optional\":null}}"
    );
    assert_eq!(String::from_utf8(p.to_json()).unwrap(), expected);
}

// Go sorts map keys byte-wise and escapes strings HTML-safe: `<`, `>`, `&`, U+2028/9 as \u00xx / \u20xx,
// other control characters as \u00xx except the short forms \b \f \n \r \t (Go 1.22+), lowercase hex.
#[test]
fn annotations_are_sorted_and_escaped_as_go_does() {
    let p = Payload::new(
        "127.0.0.1:5000/test/pt:v1",
        DIGEST,
        annotations(&[
            ("tag", "v1"),
            ("Z", "a<b>&c\"d\\e"),
            ("ctl", "\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}"),
            ("u", "é\u{2028}\u{2029}😀"),
        ]),
    )
    .unwrap();
    let expected = format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"127.0.0.1:5000/test/pt:v1\"}},\
         \"image\":{{\"docker-manifest-digest\":\"{DIGEST}\"}},\
         \"type\":\"cosign container image signature\"}},\"optional\":{{\
         \"Z\":\"a\\u003cb\\u003e\\u0026c\\\"d\\\\e\",\
         \"ctl\":\"\\u0001\\b\\f\\n\\r\\t\\u001f\u{7f}\",\
         \"tag\":\"v1\",\
         \"u\":\"é\\u2028\\u2029😀\"}}}}"
    );
    assert_eq!(String::from_utf8(p.to_json()).unwrap(), expected);
    // And serde reads the same values back.
    let back = ParsedPayload::parse(&p.to_json()).unwrap();
    let opt = back.optional().unwrap();
    assert_eq!(opt["ctl"], "\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}");
    assert_eq!(opt["u"], "é\u{2028}\u{2029}😀");
}

#[test]
fn default_identity_is_the_repository_as_go_containerregistry_names_it() {
    let r = Reference::parse_normalized("busybox:1").unwrap();
    assert_eq!(default_identity(&r), "index.docker.io/library/busybox");
    let r = Reference::parse_normalized("index.docker.io/ns/x").unwrap();
    assert_eq!(default_identity(&r), "index.docker.io/ns/x");
    let r = Reference::parse_normalized(&format!("127.0.0.1:5000/a/b:v1@{DIGEST}")).unwrap();
    assert_eq!(default_identity(&r), "127.0.0.1:5000/a/b");
}

#[test]
fn building_refuses_a_bad_identity_or_digest() {
    assert!(matches!(
        Payload::new("Not A Reference", DIGEST, BTreeMap::new()),
        Err(PayloadError::Identity { .. })
    ));
    assert!(matches!(
        Payload::new("quay.io/a/b", "sha256:abc", BTreeMap::new()),
        Err(PayloadError::Digest(_))
    ));
}

#[test]
fn our_payload_and_containers_image_payloads_parse() {
    let p = Payload::new("quay.io/a/b:v1", DIGEST, annotations(&[("tag", "v1")])).unwrap();
    let back = ParsedPayload::parse(&p.to_json()).unwrap();
    assert_eq!(back.docker_reference(), "quay.io/a/b:v1");
    assert_eq!(back.manifest_digest(), DIGEST);
    assert_eq!(back.optional().unwrap()["tag"], "v1");
    assert_eq!(back.creator(), None);
    // containers/image writes critical in map order and stamps creator and timestamp.
    let skopeo = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"quay.io/a/b:v1"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"cosign container image signature"}},"optional":{{"creator":"containers/image 5.34.1","timestamp":1700000000}}}}"#
    );
    let back = ParsedPayload::parse(skopeo.as_bytes()).unwrap();
    assert_eq!(back.creator(), Some("containers/image 5.34.1"));
    assert_eq!(back.timestamp(), Some(1_700_000_000));
    // A whole float is an integer to Go.
    let whole = skopeo.replace("1700000000", "1.7e9");
    assert_eq!(
        ParsedPayload::parse(whole.as_bytes()).unwrap().timestamp(),
        Some(1_700_000_000)
    );
    let null_optional = Payload::new("quay.io/a/b", DIGEST, BTreeMap::new()).unwrap();
    assert_eq!(
        ParsedPayload::parse(&null_optional.to_json())
            .unwrap()
            .optional(),
        None
    );
}

#[test]
fn parsing_refuses_what_containers_image_refuses() {
    let good = String::from_utf8(
        Payload::new("quay.io/a/b", DIGEST, annotations(&[("tag", "v1")]))
            .unwrap()
            .to_json(),
    )
    .unwrap();
    let bad = |s: &str| ParsedPayload::parse(s.as_bytes()).unwrap_err();
    // unknown members at each level
    assert!(matches!(
        bad(&good.replace(r#""type":"#, r#""extra":1,"type":"#)),
        PayloadError::Shape(_)
    ));
    assert!(matches!(
        bad(&good.replace(r#""optional":"#, r#""x":1,"optional":"#)),
        PayloadError::Shape(_)
    ));
    assert!(matches!(
        bad(&good.replace(r#""docker-reference":"#, r#""x":"y","docker-reference":"#)),
        PayloadError::Shape(_)
    ));
    assert!(matches!(
        bad(&good.replace(
            r#""docker-manifest-digest":"#,
            r#""x":"y","docker-manifest-digest":"#
        )),
        PayloadError::Shape(_)
    ));
    // missing optional, wrong type, wrong type string, bad digest
    assert!(matches!(
        bad(&good.replace(r#","optional":{"tag":"v1"}"#, "")),
        PayloadError::Shape(_)
    ));
    assert!(matches!(
        bad(&good.replace(r#"{"tag":"v1"}"#, "[]")),
        PayloadError::Shape(_)
    ));
    assert_eq!(
        bad(&good.replace(
            "cosign container image signature",
            "atomic container signature"
        )),
        PayloadError::WrongType("atomic container signature".into())
    );
    assert!(matches!(
        bad(&good.replace(DIGEST, "sha256:ABC")),
        PayloadError::Digest(_)
    ));
    assert!(matches!(
        bad(&good.replace(
            r#""docker-reference":"quay.io/a/b""#,
            r#""docker-reference":7"#
        )),
        PayloadError::Shape(_)
    ));
    // creator and timestamp types
    assert!(matches!(
        bad(&good.replace(r#""tag":"v1""#, r#""creator":1"#)),
        PayloadError::Shape(_)
    ));
    assert!(matches!(
        bad(&good.replace(r#""tag":"v1""#, r#""timestamp":1.5"#)),
        PayloadError::Shape(_)
    ));
    // duplicates, trailing data, not JSON
    assert!(matches!(
        bad(&good.replace(r#""type":"#, r#""type":"x","type":"#)),
        PayloadError::Json(_)
    ));
    assert!(matches!(
        bad(&format!("{good} {{}}")),
        PayloadError::Json(_)
    ));
    assert!(matches!(bad("not json"), PayloadError::Json(_)));
}
