//! W3C trace context (`traceparent`, `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`) for requests.
//!
//! A request's `traceparent` application property is continued: the server's work gets a new span id under the
//! same trace id, and the reply carries `traceparent` with that trace id and the server's span id. A request
//! without a valid one starts a new trace. This module parses and formats only; it does no I/O and never
//! trusts the input beyond the exact W3C shape.

use rand_ids::random_hex;

/// The trace context of one request as the server continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits, never all zero.
    pub trace_id: String,
    /// The server's own span id: 16 lower-case hex digits, never all zero.
    pub span_id: String,
    /// The caller's span id, when a valid `traceparent` came with the request.
    pub parent_id: Option<String>,
    /// Trace flags (2 hex digits), `01` (sampled) for new traces.
    pub flags: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceContext {
    /// Continues `traceparent` when it is a valid version-00 value (or a later version's first four fields),
    /// else starts a new trace.
    pub fn continue_or_start(traceparent: Option<&str>) -> Self {
        traceparent
            .and_then(Self::parse)
            .unwrap_or_else(|| TraceContext {
                trace_id: random_hex(16),
                span_id: random_hex(8),
                parent_id: None,
                flags: "01".into(),
            })
    }

    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let mut parts = s.split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let more = parts.next().is_some();
        let valid = is_hex(version, 2)
            && version != "ff"
            && (version != "00" || !more)
            && is_hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && is_hex(parent, 16)
            && parent.bytes().any(|b| b != b'0')
            && is_hex(flags, 2);
        valid.then(|| TraceContext {
            trace_id: trace.to_owned(),
            span_id: random_hex(8),
            parent_id: Some(parent.to_owned()),
            flags: flags.to_owned(),
        })
    }

    /// The `traceparent` value for the reply: same trace, the server's span.
    pub fn reply_traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

mod rand_ids {
    /// `bytes` random bytes as lower-case hex, never all zero (uuid v4 randomness).
    pub fn random_hex(bytes: usize) -> String {
        loop {
            let mut out = String::with_capacity(bytes * 2);
            while out.len() < bytes * 2 {
                out.push_str(&uuid::Uuid::new_v4().simple().to_string());
            }
            out.truncate(bytes * 2);
            if out.bytes().any(|b| b != b'0') {
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_the_trace_with_a_new_span() {
        let t = TraceContext::continue_or_start(Some(TP));
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        let reply = t.reply_traceparent();
        assert!(
            reply.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && reply.ends_with("-01"),
            "{reply}"
        );
        assert_eq!(reply.len(), TP.len());
    }

    #[test]
    fn invalid_values_start_a_new_trace() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            let t = TraceContext::continue_or_start(Some(bad));
            assert_eq!(t.parent_id, None, "{bad:?}");
            assert!(is_hex(&t.trace_id, 32) && is_hex(&t.span_id, 16));
        }
        let later = TraceContext::continue_or_start(Some(&format!("01{}-future", &TP[2..])));
        assert_eq!(later.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
