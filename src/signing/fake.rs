//! [`FakeSigner`]: the one stand-in signer for tests that prove what happens *around* a signature (the handler's
//! gates and retries, the consume loop's settlements, fuzzing the request path). It "signs" by returning the data
//! unchanged, so a test can see exactly what would have been signed, and can fail its first N calls the way gpg
//! fails. Compiled for tests and the `test-support` feature only; never a signer a server runs with.

use super::{SignError, SignMode, Signer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Returns the data as its "signature", after failing its first `failures` calls with a gpg error.
#[derive(Debug, Default)]
pub struct FakeSigner {
    failures: usize,
    delay: Duration,
    calls: AtomicUsize,
    signing: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl FakeSigner {
    /// A signer that never fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// A signer whose first `failures` calls fail as if gpg-agent had gone away.
    pub fn failing_first(failures: usize) -> Self {
        FakeSigner {
            failures,
            ..Self::default()
        }
    }

    /// Each signature takes `delay` (to hold requests in flight).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// How many signatures were asked for.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The most signatures that were being made at the same time.
    pub fn most_at_once(&self) -> usize {
        self.most_at_once.load(Ordering::SeqCst)
    }
}

impl Signer for FakeSigner {
    async fn sign(&self, fpr: &str, _: SignMode, data: Vec<u8>) -> Result<Vec<u8>, SignError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.signing.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.signing.fetch_sub(1, Ordering::SeqCst);
        if call < self.failures {
            return Err(SignError::Gpg {
                fingerprint: fpr.into(),
                reason: "agent gone (FakeSigner)".into(),
            });
        }
        Ok(data)
    }
}
