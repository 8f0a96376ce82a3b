//! Recent replies by request id: what makes a redelivered or resent request cheap and its answer identical.
//!
//! A request id is bound to the SHA-256 of the request (its `mtype` and body bytes) the first time it is seen.
//! The same id with the same request gets the reply already made — or, while the first copy is still being
//! signed, waits for it — so a redelivery never produces a second, different signature. The same id with a
//! different request is a [`Conflict`]. The cache is bounded by entry count and age; it is per process (two
//! servers on one queue may each answer a duplicate, with equally valid signatures). Only answers that would
//! be the same next time are kept: a transient failure is answered but not remembered, so a resend retries.
//! This module knows nothing of AMQP, gpg or the reply format.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// A kept answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept<T> {
    /// The answer.
    pub value: T,
    /// True when it was made for an earlier copy of the request (a duplicate was served from the cache).
    pub replayed: bool,
}

/// The request id was used before for a different request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request_id {0:?} was already used for a different request; refusing to answer it with another signature")]
pub struct Conflict(pub String);

/// The memory an answer holds, in bytes (roughly), for the cache's byte budget.
pub trait Weigh {
    /// Bytes held.
    fn weight(&self) -> usize;
}

struct Slot<T> {
    fingerprint: [u8; 32],
    born: Instant,
    answer: OnceCell<T>,
    weight: AtomicUsize,
}

struct Entries<T> {
    by_id: HashMap<String, Arc<Slot<T>>>,
    order: VecDeque<(String, Instant)>,
    bytes: usize,
}

/// A bounded map from request id to the answer made for it.
pub struct RecentReplies<T> {
    entries: Mutex<Entries<T>>,
    capacity: usize,
    max_bytes: usize,
    ttl: Duration,
}

/// The fingerprint of a request: SHA-256 over its type and body bytes.
pub fn fingerprint(kind: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

impl<T: Clone + Weigh> RecentReplies<T> {
    /// Keeps at most `capacity` answers holding at most `max_bytes` in all, each for at most `ttl`. A capacity
    /// of 0 keeps nothing (every copy of a request is answered anew).
    pub fn new(capacity: usize, max_bytes: usize, ttl: Duration) -> Self {
        RecentReplies {
            entries: Mutex::new(Entries {
                by_id: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
            capacity,
            max_bytes,
            ttl,
        }
    }

    /// The answer for request `id` with `fingerprint`: the kept one, or the one `make` produces. `make` returns
    /// `Ok` for an answer worth keeping and `Err` for one that must not be (a transient failure); either way the
    /// answer is returned. Concurrent calls for the same request wait for one `make`.
    pub async fn answer<F, Fut>(
        &self,
        id: &str,
        fingerprint: [u8; 32],
        make: F,
    ) -> Result<Kept<T>, Conflict>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, T>>,
    {
        if self.capacity == 0 {
            let value = make().await.unwrap_or_else(|v| v);
            return Ok(Kept {
                value,
                replayed: false,
            });
        }
        let slot = self.slot(id, fingerprint)?;
        if let Some(v) = slot.answer.get() {
            return Ok(Kept {
                value: v.clone(),
                replayed: true,
            });
        }
        let mut made_here = false;
        let mut transient = None;
        let kept = slot
            .answer
            .get_or_try_init(|| async {
                made_here = true;
                make().await.map_err(|v| transient = Some(v))
            })
            .await;
        match kept {
            Ok(v) => {
                if made_here {
                    self.weigh(id, &slot, v.weight());
                }
                Ok(Kept {
                    value: v.clone(),
                    replayed: !made_here,
                })
            }
            Err(()) => {
                self.forget(id, &slot);
                Ok(Kept {
                    value: transient.expect("set when make failed"),
                    replayed: false,
                })
            }
        }
    }

    /// The slot for `id`, created if absent or expired; a live slot with another fingerprint is a conflict.
    fn slot(&self, id: &str, fingerprint: [u8; 32]) -> Result<Arc<Slot<T>>, Conflict> {
        let mut e = self
            .entries
            .lock()
            .expect("never poisoned: no panics under the lock");
        let now = Instant::now();
        self.evict(&mut e, now);
        if let Some(slot) = e.by_id.get(id) {
            if slot.fingerprint != fingerprint {
                return Err(Conflict(id.to_owned()));
            }
            return Ok(slot.clone());
        }
        let slot = Arc::new(Slot {
            fingerprint,
            born: now,
            answer: OnceCell::new(),
            weight: AtomicUsize::new(0),
        });
        e.by_id.insert(id.to_owned(), slot.clone());
        e.order.push_back((id.to_owned(), now));
        Ok(slot)
    }

    /// Drops entries past their age, then the oldest beyond capacity or the byte budget.
    fn evict(&self, e: &mut Entries<T>, now: Instant) {
        while let Some((id, born)) = e.order.front().cloned() {
            let expired = now.duration_since(born) >= self.ttl;
            if !expired && e.order.len() < self.capacity && e.bytes <= self.max_bytes {
                break;
            }
            e.order.pop_front();
            if e.by_id.get(&id).is_some_and(|s| s.born == born) {
                if let Some(s) = e.by_id.remove(&id) {
                    e.bytes -= s.weight.load(Ordering::Relaxed);
                }
            }
        }
    }

    /// Accounts the weight of `slot`'s new answer, if the slot is still kept.
    fn weigh(&self, id: &str, slot: &Arc<Slot<T>>, weight: usize) {
        let mut e = self
            .entries
            .lock()
            .expect("never poisoned: no panics under the lock");
        let kept = e.by_id.get(id).is_some_and(|s| Arc::ptr_eq(s, slot));
        if kept {
            slot.weight.store(weight, Ordering::Relaxed);
            e.bytes += weight;
            self.evict(&mut e, Instant::now());
        }
    }

    /// Removes `slot` for `id` if it is still the current one (its answer was not worth keeping).
    fn forget(&self, id: &str, slot: &Arc<Slot<T>>) {
        let mut e = self
            .entries
            .lock()
            .expect("never poisoned: no panics under the lock");
        if e.by_id.get(id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            e.by_id.remove(id);
        }
    }

    /// How many answers are kept now.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("never poisoned").by_id.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    impl Weigh for u8 {
        fn weight(&self) -> usize {
            1
        }
    }

    impl Weigh for usize {
        fn weight(&self) -> usize {
            8
        }
    }

    #[tokio::test]
    async fn the_same_request_gets_the_same_answer_and_a_different_one_is_refused() {
        let cache = RecentReplies::new(10, 1 << 20, Duration::from_secs(60));
        let made = AtomicUsize::new(0);
        let make = || async { Ok::<_, usize>(made.fetch_add(1, Ordering::SeqCst)) };
        let a = cache
            .answer("r1", fingerprint("t", b"x"), make)
            .await
            .unwrap();
        let b = cache
            .answer("r1", fingerprint("t", b"x"), make)
            .await
            .unwrap();
        assert_eq!(
            (a.value, a.replayed, b.value, b.replayed),
            (0, false, 0, true)
        );
        let c = cache.answer("r1", fingerprint("t", b"y"), make).await;
        assert_eq!(c, Err(Conflict("r1".into())));
        let d = cache.answer("r1", fingerprint("u", b"x"), make).await;
        assert!(d.is_err(), "another type is another request");
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_copies_wait_for_one_answer() {
        let cache = Arc::new(RecentReplies::new(10, 1 << 20, Duration::from_secs(60)));
        let made = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, made) = (cache.clone(), made.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .answer("r", fingerprint("t", b"x"), || async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, usize>(made.fetch_add(1, Ordering::SeqCst))
                    })
                    .await
                    .unwrap()
            }));
        }
        let mut replayed = 0;
        for t in tasks {
            let k = t.await.unwrap();
            assert_eq!(k.value, 0);
            replayed += usize::from(k.replayed);
        }
        assert_eq!((made.load(Ordering::SeqCst), replayed), (1, 7));
    }

    #[tokio::test]
    async fn transient_answers_are_not_kept() {
        let cache = RecentReplies::new(10, 1 << 20, Duration::from_secs(60));
        let a = cache
            .answer("r", fingerprint("t", b"x"), || async { Err::<u8, u8>(1) })
            .await
            .unwrap();
        assert_eq!((a.value, a.replayed), (1, false));
        assert!(cache.is_empty());
        let b = cache
            .answer("r", fingerprint("t", b"x"), || async { Ok::<u8, u8>(2) })
            .await
            .unwrap();
        assert_eq!((b.value, b.replayed), (2, false));
    }

    /// Answers `n` distinct requests, checking after each that at most `most` are kept.
    async fn fill(cache: &RecentReplies<u8>, n: u8, most: usize) {
        for i in 0..n {
            let id = format!("r{i}");
            let made = cache
                .answer(
                    &id,
                    fingerprint("t", &[i]),
                    || async move { Ok::<u8, u8>(i) },
                )
                .await;
            assert_eq!(made.map(|k| k.value), Ok(i));
            assert!(cache.len() <= most, "{} kept", cache.len());
        }
    }

    #[tokio::test]
    async fn capacity_and_age_bound_the_cache() {
        let cache = RecentReplies::new(3, 1 << 20, Duration::from_millis(200));
        fill(&cache, 10, 3).await;
        // The oldest were evicted: a different body for r0 is a new request now, not a conflict.
        assert!(cache
            .answer("r0", fingerprint("t", b"other"), || async {
                Ok::<u8, u8>(9)
            })
            .await
            .is_ok());
        tokio::time::sleep(Duration::from_millis(250)).await;
        let k = cache
            .answer("r9", fingerprint("t", b"new"), || async { Ok::<u8, u8>(7) })
            .await
            .unwrap();
        assert_eq!(
            (k.value, k.replayed),
            (7, false),
            "expired entries are forgotten"
        );
        let small = RecentReplies::new(100, 2, Duration::from_secs(60));
        fill(&small, 5, 3).await;
        let none = RecentReplies::new(0, 1 << 20, Duration::from_secs(1));
        let k = none
            .answer("r", fingerprint("t", b"x"), || async { Ok::<u8, u8>(1) })
            .await
            .unwrap();
        assert!(!k.replayed && none.is_empty());
    }
}
