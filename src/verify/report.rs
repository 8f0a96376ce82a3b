//! The [`Report`] of one verification: every requirement of the policy entry that applied and, for signature
//! requirements, a verdict per signature. Data and its text rendering only; it decides nothing.

use serde::Serialize;

/// The verdict on one signature under one requirement.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SignatureVerdict {
    /// N in `signature-N`.
    pub index: usize,
    /// Where it was read.
    pub url: String,
    /// Fingerprint of the key that made it, once known (the claimed key id when the key is not trusted).
    pub key: Option<String>,
    /// The signed docker-reference: present only when the signature checked out and the payload parsed.
    pub identity: Option<String>,
    /// The signed manifest digest, under the same condition.
    pub signed_digest: Option<String>,
    /// Whether this signature satisfies the requirement.
    pub accepted: bool,
    /// Why (or "accepted").
    pub reason: String,
}

/// The outcome of one requirement.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequirementReport {
    /// The requirement's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `signedBy` and `sigstoreSigned`: the trusted keys (gpg fingerprints, or sha256 of each public key)
    /// and the identity rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whether it holds.
    pub satisfied: bool,
    /// Why.
    pub reason: String,
    /// Per-signature verdicts (signedBy and sigstoreSigned).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureVerdict>,
}

/// The full account of one verification.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    /// The image reference, normalised.
    pub image: String,
    /// Its manifest digest.
    pub digest: String,
    /// The policy entry that applied.
    pub policy_scope: String,
    /// The lookaside store read (if signatures were needed), and where it was configured.
    pub lookaside: Option<String>,
    /// The `.sig` tag read for sigstore signatures (if a `sigstoreSigned` requirement needed them), and where
    /// registries.d enabled it; or why it was not read.
    pub sigstore_attachments: Option<String>,
    /// Every requirement of the entry, in order.
    pub requirements: Vec<RequirementReport>,
    /// True when every requirement holds.
    pub accepted: bool,
}

/// A requirement report without per-signature verdicts.
pub(super) fn simple(kind: &str, satisfied: bool, reason: &str) -> RequirementReport {
    RequirementReport {
        kind: kind.to_owned(),
        detail: None,
        satisfied,
        reason: reason.to_owned(),
        signatures: Vec::new(),
    }
}

impl Report {
    /// The human-readable report.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "image:     {}", self.image);
        let _ = writeln!(s, "digest:    {}", self.digest);
        let _ = writeln!(s, "policy:    {}", self.policy_scope);
        if let Some(l) = &self.lookaside {
            let _ = writeln!(s, "lookaside: {l}");
        }
        if let Some(a) = &self.sigstore_attachments {
            let _ = writeln!(s, "sigstore:  {a}");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            let _ = writeln!(
                s,
                "requirement {}: {}{}",
                i + 1,
                r.kind,
                r.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
            for sig in &r.signatures {
                let verdict = if sig.accepted { "ACCEPTED" } else { "rejected" };
                let _ = writeln!(s, "  signature-{}: {verdict}", sig.index);
                let _ = writeln!(
                    s,
                    "    key:      {}",
                    sig.key.as_deref().unwrap_or("(unknown)")
                );
                if let Some(id) = &sig.identity {
                    let _ = writeln!(s, "    identity: {id}");
                }
                if let Some(d) = &sig.signed_digest {
                    let _ = writeln!(s, "    signed:   {d}");
                }
                let _ = writeln!(s, "    from:     {}", sig.url);
                let _ = writeln!(s, "    reason:   {}", sig.reason);
            }
            let _ = writeln!(
                s,
                "  → {}: {}",
                if r.satisfied {
                    "satisfied"
                } else {
                    "NOT satisfied"
                },
                r.reason
            );
        }
        let _ = writeln!(
            s,
            "verdict:   {}",
            if self.accepted {
                "ACCEPTED by policy"
            } else {
                "REJECTED by policy"
            }
        );
        s
    }
}
