//! cosign ("sigstore") container signatures, natively: the simple-signing payload ([`payload`]), cosign's key
//! files ([`keys`], with the password-sealed box in [`sealed`]), and ECDSA P-256 signatures ([`sign`]).
//!
//! What lands in a registry for `REPO@sha256:HEX`: an OCI image manifest under the tag `sha256-HEX.sig` whose
//! layers each hold one payload (media type [`SIMPLE_SIGNING_MEDIA_TYPE`]) with its base64 signature in the
//! [`SIGNATURE_ANNOTATION`] annotation.
//!
//! Everything but [`attach`] is pure: it works on bytes and values its callers pass in, and never opens files,
//! reads the environment, or talks to a network. [`attach`] reaches a registry only through the
//! [`crate::registry::Client`] it is given. Nothing here imports `transport`, `server` or `requester`.

pub mod attach;
pub mod keys;
pub mod payload;
pub mod ring;
pub mod sealed;
pub mod sign;

pub use attach::{AttachError, AttachOutcome, Attacher};
pub use keys::{generate_key_pair, KeyError, KeyPairFiles, PrivateKey, PublicKey};
pub use payload::{default_identity, ParsedPayload, Payload, PayloadError, PAYLOAD_TYPE};
pub use sign::VerifyError;

/// Media type of a signature layer: the blob is the payload.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 DER signature over the layer's payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The tag cosign stores the signatures of `digest` under: `sha256:HEX` → `sha256-HEX.sig`. `None` when
/// `digest` is not a valid digest.
pub fn signature_tag(digest: &str) -> Option<String> {
    crate::reference::validate_digest(digest).ok()?;
    Some(format!("{}.sig", digest.replacen(':', "-", 1)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_tag_replaces_the_colon_and_adds_sig() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            super::signature_tag(d).unwrap(),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
        assert_eq!(super::signature_tag("sha256:abc"), None);
    }
}
