//! The name in a client certificate: its subject CN (else UID), as pubtools-sign derives the requester's name and
//! as a broker using SASL EXTERNAL (RabbitMQ `ssl_cert_login_from = common_name`) derives the user.
//!
//! A minimal DER walk over the first certificate of a PEM file; it reads the subject and nothing else and
//! never validates the certificate (that is the TLS layer's job).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_UID: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x01];

/// Reads the subject CN (or UID) of the first `CERTIFICATE` block in `pem`.
pub fn subject_name(pem: &str) -> Result<String, String> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin).ok_or("no CERTIFICATE block")? + begin.len();
    let end = pem[start..]
        .find("-----END CERTIFICATE-----")
        .ok_or("unterminated CERTIFICATE block")?
        + start;
    let b64: String = pem[start..end].split_whitespace().collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|e| format!("certificate base64: {e}"))?;
    let (_, cert, _) = tlv(&der).ok_or("certificate is not DER")?;
    let (_, tbs, _) = tlv(cert).ok_or("no tbsCertificate")?;
    let mut fields = Vec::new();
    let mut rest = tbs;
    while let Some((tag, content, next)) = tlv(rest) {
        fields.push((tag, content));
        rest = next;
    }
    // [0] version is optional; then serial, signature, issuer, validity, subject.
    let skip = usize::from(fields.first().map(|f| f.0) == Some(0xA0));
    let subject = fields.get(skip + 4).ok_or("certificate has no subject")?.1;
    let mut found_uid = None;
    let mut rdns = subject;
    while let Some((_, set, next)) = tlv(rdns) {
        let mut atvs = set;
        while let Some((_, atv, after)) = tlv(atvs) {
            if let Some((0x06, oid, value)) = tlv(atv) {
                if let Some((_, v, _)) = tlv(value) {
                    let text = String::from_utf8_lossy(v).into_owned();
                    if oid == OID_CN {
                        return Ok(text);
                    }
                    if oid == OID_UID {
                        found_uid = Some(text);
                    }
                }
            }
            atvs = after;
        }
        rdns = next;
    }
    found_uid.ok_or_else(|| "certificate subject has neither CN nor UID".into())
}

/// Splits one DER TLV: (tag, content, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let content = b.get(hdr..hdr.checked_add(len)?)?;
    Some((tag, content, &b[hdr + len..]))
}
