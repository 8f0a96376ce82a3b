//! A file:// lookaside store: invalid signatures are skipped, the first missing signature-N ends the list, and
//! the caps on count and size hold.

use crate::support::verify_fixtures::*;
use signbus::verify::lookaside::{FetchLimits, LookasideError};
use signbus::verify::VerifyError;

const IMAGE: &str = "registry.example.com/ns/repo:1";

#[test]
fn only_the_valid_second_signature_is_accepted_and_a_gap_ends_the_list() {
    let f = Fixture::new();
    let (_, digest) = manifest("skip");
    let ed = f.env.key_ed25519().to_owned();
    let rsa = f.env.key_rsa().to_owned();
    // 1: made by the RSA key, which this policy does not trust.
    f.put(IMAGE, &digest, 1, &f.sign(&rsa, IMAGE, &digest));
    // 2: the good one.
    f.put(IMAGE, &digest, 2, &f.sign(&ed, IMAGE, &digest));
    // 4: after the gap at 3, never read.
    f.put(IMAGE, &digest, 4, b"never read");
    let policy = f.policy(&ed_policy(None));
    let report = f.verify(&policy, IMAGE, &digest).unwrap();
    let v = verdicts(&report);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(!v[0].1, "{v:?}");
    assert!(v[0].2.contains("not one of the trusted keys"), "{v:?}");
    assert!(v[1].1, "{v:?}");
    assert!(report.accepted);
    let sig2 = &report.requirements[0].signatures[1];
    assert_eq!(sig2.key.as_deref(), Some(ed.as_str()));
    assert_eq!(sig2.identity.as_deref(), Some(IMAGE));
    // The untrusted signature's payload is never reported.
    assert_eq!(report.requirements[0].signatures[0].identity, None);
}

#[test]
fn garbage_and_missing_signatures_reject_the_image() {
    let f = Fixture::new();
    let (_, digest) = manifest("garbage");
    let policy = f.policy(&ed_policy(None));
    let none = f.verify(&policy, IMAGE, &digest).unwrap();
    assert!(!none.accepted);
    assert!(
        none.requirements[0].reason.contains("no signature exists"),
        "{:?}",
        none.requirements[0]
    );
    // Not a signature at all (JSON text): containers/image refuses the image outright, and so does signbus.
    f.put(IMAGE, &digest, 1, b"{\"critical\":{}}");
    let e = f.verify(&policy, IMAGE, &digest).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Lookaside(LookasideError::UnrecognizedFormat { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("starting with binary 0x7b"), "{e}");
    // An OpenPGP-looking blob that is no valid message: that signature is refused, the image not outright.
    f.put(IMAGE, &digest, 1, &[0xA3, 0x01, 0x00, 0xFF]);
    let bad = f.verify(&policy, IMAGE, &digest).unwrap();
    assert!(!bad.accepted);
    assert!(!verdicts(&bad)[0].1);
}

#[test]
fn a_signature_over_the_size_cap_stops_verification() {
    let f = Fixture::new();
    let (_, digest) = manifest("size");
    let good = f.sign(f.env.key_ed25519(), IMAGE, &digest);
    f.put(IMAGE, &digest, 1, &good);
    let policy = f.policy(&ed_policy(None));
    let limits = FetchLimits {
        max_signature_bytes: good.len() as u64 - 1,
        ..FetchLimits::default()
    };
    let err = f.verify_with(&policy, IMAGE, &digest, limits).unwrap_err();
    assert!(
        matches!(err, VerifyError::Lookaside(LookasideError::TooLarge { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("signature-1"), "{err}");
    let exact = FetchLimits {
        max_signature_bytes: good.len() as u64,
        ..FetchLimits::default()
    };
    assert!(
        f.verify_with(&policy, IMAGE, &digest, exact)
            .unwrap()
            .accepted
    );
}

#[test]
fn more_signatures_than_the_cap_is_an_error() {
    let f = Fixture::new();
    let (_, digest) = manifest("count");
    for n in 1..=3 {
        f.put(IMAGE, &digest, n, &[0x88, 0x00]);
    }
    let policy = f.policy(&ed_policy(None));
    let limits = FetchLimits {
        max_signatures: 2,
        ..FetchLimits::default()
    };
    let err = f.verify_with(&policy, IMAGE, &digest, limits).unwrap_err();
    assert!(err.to_string().contains("more than 2 signatures"), "{err}");
}
