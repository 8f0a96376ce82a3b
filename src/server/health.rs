//! Readiness: whether this server should be sent work now, and if not, a short reason why.
//!
//! Two facts make a server ready: it is connected to the broker and consuming (set by the consume loop), and
//! its signer is usable (the pool made a test signature at start; after a signer error the handler re-tests it
//! and clears the failure only when a new test signature succeeds). This module holds flags only: it never
//! talks to the broker or the signer itself.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

const SIGNER_OK: u8 = 0;
const SIGNER_FAILED: u8 = 1;

/// Shared readiness flags. Cheap to read from any thread.
#[derive(Debug)]
pub struct Health {
    consuming: AtomicBool,
    stopping: AtomicBool,
    signer: AtomicU8,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// Not consuming yet; the signer is usable (a started pool has made its test signatures).
    pub fn new() -> Self {
        Health {
            consuming: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            signer: AtomicU8::new(SIGNER_OK),
        }
    }

    /// The consume loop is (or is no longer) connected and consuming.
    pub fn set_consuming(&self, yes: bool) {
        self.consuming.store(yes, Ordering::SeqCst);
    }

    /// Shutdown has begun: never ready again.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Marks the signer failed. Returns true when it was usable until now (the caller should start a re-test).
    pub fn signer_failed(&self) -> bool {
        self.signer.swap(SIGNER_FAILED, Ordering::SeqCst) == SIGNER_OK
    }

    /// A test signature succeeded: the signer is usable again.
    pub fn signer_recovered(&self) {
        self.signer.store(SIGNER_OK, Ordering::SeqCst);
    }

    /// Whether the signer is usable (no failure since the last good test signature).
    pub fn signer_ok(&self) -> bool {
        self.signer.load(Ordering::SeqCst) == SIGNER_OK
    }

    /// `Ok` when ready; otherwise a short reason for `/readyz`.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("shutting down");
        }
        if !self.consuming.load(Ordering::SeqCst) {
            return Err("not connected to the broker / not consuming");
        }
        if !self.signer_ok() {
            return Err("signer failed; waiting for a good test signature");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_consuming_with_a_usable_signer() {
        let h = Health::new();
        assert!(h.readiness().is_err());
        h.set_consuming(true);
        assert_eq!(h.readiness(), Ok(()));
        assert!(h.signer_failed());
        assert!(
            !h.signer_failed(),
            "a second failure does not start another re-test"
        );
        assert!(h.readiness().unwrap_err().contains("signer"));
        h.signer_recovered();
        assert_eq!(h.readiness(), Ok(()));
        h.set_stopping();
        assert_eq!(h.readiness(), Err("shutting down"));
    }
}
