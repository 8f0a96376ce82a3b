//! cosign signatures: ECDSA P-256 over SHA-256 of the payload bytes, as the standard base64 of the ASN.1 DER
//! signature (the value of the `dev.cosignproject.cosign/signature` annotation and of `cosign sign-blob`'s
//! output). This module signs and verifies bytes it is given; it never builds payloads or touches a registry.

use super::keys::{PrivateKey, PublicKey};
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature};

/// Why a signature does not verify. A property of the bytes: retrying never helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The annotation is not standard base64.
    #[error("the signature is not base64: {0}")]
    NotBase64(String),
    /// The decoded bytes are not a DER ECDSA signature.
    #[error("the signature is not a DER ECDSA signature: {0}")]
    NotDer(String),
    /// Well-formed, but not made by this key over these bytes.
    #[error("the signature does not match the payload under this key")]
    Mismatch,
}

impl PrivateKey {
    /// Signs `payload` (SHA-256, deterministic ECDSA per RFC 6979); returns the base64 DER signature.
    pub fn sign(&self, payload: &[u8]) -> String {
        let sig: DerSignature = self.key.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(sig.as_bytes())
    }
}

impl PublicKey {
    /// Checks a base64 DER signature over `payload`, as cosign and containers/image do.
    pub fn verify(&self, payload: &[u8], signature_b64: &str) -> Result<(), VerifyError> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim().as_bytes())
            .map_err(|e| VerifyError::NotBase64(e.to_string()))?;
        let sig = Signature::from_der(&der).map_err(|e| VerifyError::NotDer(e.to_string()))?;
        self.key
            .verify(payload, &sig)
            .map_err(|_| VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::payload::Payload;
    use super::*;

    #[test]
    fn a_signature_verifies_under_its_key_and_not_after_tampering() {
        let key = PrivateKey::generate();
        let payload = Payload::new(
            "quay.io/a/b",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            Default::default(),
        )
        .unwrap()
        .to_json();
        let sig = key.sign(&payload);
        key.public_key().verify(&payload, &sig).unwrap();
        let mut tampered = payload.clone();
        *tampered.last_mut().unwrap() = b' ';
        assert_eq!(
            key.public_key().verify(&tampered, &sig),
            Err(VerifyError::Mismatch)
        );
        let other = PrivateKey::generate().public_key();
        assert_eq!(other.verify(&payload, &sig), Err(VerifyError::Mismatch));
        assert!(matches!(
            key.public_key().verify(&payload, "%%%"),
            Err(VerifyError::NotBase64(_))
        ));
        assert!(matches!(
            key.public_key().verify(&payload, "AAAA"),
            Err(VerifyError::NotDer(_))
        ));
    }
}
