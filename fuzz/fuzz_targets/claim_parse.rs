//! Claim parsing: `Claim::parse` never panics; a claim it accepts survives `to_json` → `parse` unchanged, and
//! its docker reference parses, prints, and parses again to the same reference. Arbitrary text is also fed to
//! the reference parser directly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signbus::claim::Claim;
use signbus::reference::{self, Reference};

fuzz_target!(|data: &[u8]| {
    if let Ok(claim) = Claim::parse(data) {
        let again = Claim::parse(&claim.to_json()).expect("a parsed claim's own JSON parses");
        assert_eq!(again, claim, "claim changed on re-serialisation");
        assert!(reference::validate_digest(claim.manifest_digest().as_str()).is_ok());
        check_reference(&claim.reference());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = Reference::parse_normalized(text) {
            check_reference(&r);
            // A claim for any tagged reference round-trips through its JSON.
            let digest = r
                .digest()
                .map_or_else(|| format!("sha256:{}", "0".repeat(64)), str::to_owned);
            let claim = Claim::new(&r, &digest, Some(1)).expect("valid digest");
            assert_eq!(
                Claim::parse(&claim.to_json()).expect("own claim parses"),
                claim
            );
        }
        let _ = reference::validate_digest(text);
        let _ = reference::is_valid_domain(text);
    }
});

/// Normal form is a fixed point: printing a parsed reference and parsing it again gives the same reference.
fn check_reference(r: &Reference) {
    let printed = r.to_string();
    let again = Reference::parse_normalized(&printed).expect("a normalised reference parses");
    assert_eq!(&again, r, "normal form of {printed:?} is not stable");
    assert_eq!(again.to_string(), printed);
    assert_eq!(r.name(), format!("{}/{}", r.domain(), r.path()));
    assert!(r.path_matches(r.path()));
    let tagged = r.clone().with_default_tag();
    assert!(!tagged.is_name_only());
    if let Some(identity) = r.policy_identity() {
        assert!(identity.starts_with(&r.name()));
    }
    let scopes = r.policy_namespaces();
    assert_eq!(scopes.first(), Some(&r.name()));
}
