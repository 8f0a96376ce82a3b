//! The one exponential backoff of the crate: how long a retry loop waits before its next attempt.
//!
//! Owns the delay sequence (`initial`, then × `factor` after each wait, never above `max`) and nothing else: it
//! never sleeps, never logs and decides nothing about whether to retry. A leaf module: it must never import
//! from the crate, so every layer (transport, server, requester) can use it.

use std::time::Duration;

/// Delays that grow by `factor` from `initial` up to `max`; [`Backoff::reset`] starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay, and the delay after a reset.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// What each delay is multiplied by to give the next.
    pub factor: u32,
    next: Duration,
}

impl Backoff {
    /// Doubling delays from `initial` up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            factor: 2,
            next: initial,
        }
    }

    /// The delay [`Backoff::next_delay`] will return next, without using it up (for logs: "retry in …").
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The delay to wait now; the one after it grows by `factor`, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = now
            .checked_mul(self.factor)
            .unwrap_or(self.max)
            .min(self.max);
        now
    }

    /// Starts over at `initial` (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_starts_over_on_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(200), ms(1000));
        assert_eq!(b.peek(), ms(200));
        let seen: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(seen, [ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(200));
        let mut huge = Backoff::new(Duration::MAX / 2, Duration::MAX);
        huge.next_delay();
        huge.next_delay();
        assert_eq!(
            huge.next_delay(),
            Duration::MAX,
            "saturates instead of overflowing"
        );
    }
}
