use super::*;

/// The cheapest scrypt cost cosign accepts, so tests stay fast.
const CHEAP_N: u64 = 32768;

fn pw(s: &str) -> Passphrase {
    Passphrase::from_bytes(s.as_bytes().to_vec())
}

fn pem(label: &str, der: &[u8]) -> String {
    pem_rfc7468::encode_string(label, LineEnding::LF, der).unwrap()
}

/// An encrypted key file (either cosign label) around arbitrary plaintext, as a foreign tool would write it.
fn sealed_pem(label: &str, plaintext: &[u8], password: &str) -> String {
    pem(
        label,
        &sealed::seal(plaintext, password.as_bytes(), CHEAP_N).unwrap(),
    )
}

// Hand-made PKCS#8 PrivateKeyInfo structures of other key types (the key bytes themselves are never reached).
const ED25519_PKCS8: [u8; 48] = {
    let mut b = [7u8; 48];
    let head = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut i = 0;
    while i < head.len() {
        b[i] = head[i];
        i += 1;
    }
    b
};
const RSA_PKCS8: &[u8] = &[
    0x30, 0x17, 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x01, 0x05, 0x00, 0x04, 0x03, 0x30, 0x01, 0x00,
];
const P384_PKCS8: &[u8] = &[
    0x30, 0x1a, 0x02, 0x01, 0x00, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x04, 0x03, 0x30, 0x01, 0x00,
];
const RSA_SPKI: &[u8] = &[
    0x30, 0x14, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
    0x00, 0x03, 0x03, 0x00, 0x30, 0x00,
];

#[test]
fn a_generated_key_pair_reads_back_signs_and_verifies() {
    let files = generate_key_pair(&pw("correct horse")).unwrap();
    assert!(files
        .private_pem
        .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    assert!(files
        .private_pem
        .ends_with("-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    assert!(files.private_pem.lines().all(|l| l.len() <= 64));
    assert!(files.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let key =
        PrivateKey::from_encrypted_pem(files.private_pem.as_bytes(), &pw("correct horse")).unwrap();
    let public = PublicKey::from_pem(files.public_pem.as_bytes()).unwrap();
    assert_eq!(key.public_key(), public);
    let sig = key.sign(b"payload");
    public.verify(b"payload", &sig).unwrap();
    assert!(public.verify(b"payloaD", &sig).is_err());
}

#[test]
fn a_wrong_password_is_its_own_error() {
    let key = PrivateKey::generate();
    let file = key.to_encrypted_pem(&pw("right"), CHEAP_N).unwrap();
    assert_eq!(
        PrivateKey::from_encrypted_pem(file.as_bytes(), &pw("wrong")).unwrap_err(),
        KeyError::WrongPassword
    );
    assert_eq!(
        PrivateKey::from_encrypted_pem(file.as_bytes(), &pw("")).unwrap_err(),
        KeyError::WrongPassword
    );
    // An empty password is a password like any other (cosign allows it).
    let empty = key.to_encrypted_pem(&pw(""), CHEAP_N).unwrap();
    PrivateKey::from_encrypted_pem(empty.as_bytes(), &pw("")).unwrap();
}

#[test]
fn the_older_cosign_label_is_read_and_text_around_the_block_is_skipped() {
    let key = PrivateKey::generate();
    let der = key.key.to_pkcs8_der().unwrap();
    let file = format!(
        "a comment line\n{}trailing\n",
        sealed_pem(COSIGN_PRIVATE_KEY_LABEL, der.as_bytes(), "pw")
    );
    let back = PrivateKey::from_encrypted_pem(file.as_bytes(), &pw("pw")).unwrap();
    assert_eq!(back.public_key(), key.public_key());
}

#[test]
fn keys_of_other_types_are_refused_by_name() {
    for (der, name) in [
        (&ED25519_PKCS8[..], "Ed25519"),
        (RSA_PKCS8, "RSA"),
        (P384_PKCS8, "P-384"),
    ] {
        let file = sealed_pem(SIGSTORE_PRIVATE_KEY_LABEL, der, "pw");
        match PrivateKey::from_encrypted_pem(file.as_bytes(), &pw("pw")) {
            Err(KeyError::WrongKeyType(t)) => assert!(t.contains(name), "{t}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let public = pem(PUBLIC_KEY_LABEL, RSA_SPKI);
    assert!(matches!(
        PublicKey::from_pem(public.as_bytes()),
        Err(KeyError::WrongKeyType(t)) if t.contains("RSA")
    ));
}

#[test]
fn corrupt_files_are_told_apart_from_wrong_passwords() {
    let not_pem = PrivateKey::from_encrypted_pem(b"hello", &pw("pw")).unwrap_err();
    assert!(matches!(not_pem, KeyError::NotPem(_)), "{not_pem}");
    let key = PrivateKey::generate();
    let good = key.to_encrypted_pem(&pw("pw"), CHEAP_N).unwrap();
    let mut bad_b64 = good.clone();
    bad_b64.insert(40, '!');
    assert!(matches!(
        PrivateKey::from_encrypted_pem(bad_b64.as_bytes(), &pw("pw")),
        Err(KeyError::NotPem(_))
    ));
    let unencrypted = pem("PRIVATE KEY", key.key.to_pkcs8_der().unwrap().as_bytes());
    assert!(matches!(
        PrivateKey::from_encrypted_pem(unencrypted.as_bytes(), &pw("pw")),
        Err(KeyError::UnexpectedLabel { found, .. }) if found == "PRIVATE KEY"
    ));
    let not_json = pem(SIGSTORE_PRIVATE_KEY_LABEL, b"{not json");
    assert!(matches!(
        PrivateKey::from_encrypted_pem(not_json.as_bytes(), &pw("pw")),
        Err(KeyError::Corrupt(_))
    ));
    let not_pkcs8 = sealed_pem(SIGSTORE_PRIVATE_KEY_LABEL, b"not a key", "pw");
    assert!(matches!(
        PrivateKey::from_encrypted_pem(not_pkcs8.as_bytes(), &pw("pw")),
        Err(KeyError::Corrupt(_))
    ));
    let weak = pem(
        SIGSTORE_PRIVATE_KEY_LABEL,
        String::from_utf8(sealed::seal(b"x", b"pw", CHEAP_N).unwrap())
            .unwrap()
            .replace("32768", "1024")
            .as_bytes(),
    );
    assert!(matches!(
        PrivateKey::from_encrypted_pem(weak.as_bytes(), &pw("pw")),
        Err(KeyError::UnsupportedEncryption(_))
    ));
    assert!(matches!(
        PublicKey::from_pem(good.as_bytes()),
        Err(KeyError::UnexpectedLabel { .. })
    ));
    assert!(matches!(
        PublicKey::from_pem(pem(PUBLIC_KEY_LABEL, b"junk").as_bytes()),
        Err(KeyError::Corrupt(_))
    ));
}

#[test]
fn key_material_never_shows_in_debug_output() {
    let key = PrivateKey::generate();
    let shown = format!("{key:?}");
    assert!(
        shown.contains("<redacted>") && shown.contains("sha256:"),
        "{shown}"
    );
    let secret_hex: String = key
        .key
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!shown.contains(&secret_hex[..16]));
}
