//! The one signing thread pool both backends run on: N named threads taking jobs from one shared queue and
//! answering each through a oneshot.
//!
//! The queue is fair between callers: jobs are queued per tokio task (a request is handled in a task of its own,
//! and a batch signs all its claim × key pairs from its one task), and the threads take one job from each task's
//! lane in turn. A single request queued behind a 5000-claim batch waits for about one signature per busy lane,
//! not for the whole batch; within a lane the order is kept. Calls from outside a tokio task share one lane.
//!
//! Each thread builds its own signing function when it starts (`make`, run on that thread, so a backend may keep
//! per-thread state that is not `Send`, as gpgme contexts are) and reports whether it could; the pool is returned
//! only when every thread is ready, so a pool that starts can sign. Signing is CPU-bound: threads beyond the
//! core count add nothing.
//!
//! Each job reports how long it waited for a thread apart from how long it took to sign ([`Timings`]), so a
//! queue that grows is seen as such and not as a slow signer.

use super::{SignError, SignMode};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a worker thread runs for every job: sign `data` with the key `fingerprint` in `mode`.
pub type SignFn = Box<dyn FnMut(&str, SignMode, &[u8]) -> Result<Vec<u8>, SignError>>;

struct Job {
    fingerprint: String,
    mode: SignMode,
    data: Vec<u8>,
    queued: Instant,
    reply: oneshot::Sender<Done>,
}

/// A job's result, with how long it waited for a thread and how long the signature took.
struct Done {
    result: Result<Vec<u8>, SignError>,
    waited: Duration,
    signing: Duration,
}

/// Histograms the pool observes for every job: seconds waited for a signing thread, seconds spent signing.
#[derive(Clone)]
pub struct Timings {
    /// Time from queueing a job to a thread taking it.
    pub queue_wait: prometheus::Histogram,
    /// Time a thread spent signing it.
    pub signing: prometheus::Histogram,
}

/// Who queued a job: the tokio task it was queued from (`None`: outside any task).
type Lane = Option<tokio::task::Id>;

/// Jobs by lane, and the order the lanes are served in (round robin).
#[derive(Default)]
struct Lanes {
    jobs: HashMap<Lane, VecDeque<Job>>,
    order: VecDeque<Lane>,
    closed: bool,
}

/// The fair queue the threads share.
#[derive(Default)]
struct Queue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
}

impl Queue {
    fn push(&self, lane: Lane, job: Job) -> Result<(), SignError> {
        let mut l = self.lanes.lock().map_err(|_| SignError::Closed)?;
        if l.closed {
            return Err(SignError::Closed);
        }
        let queued = l.jobs.entry(lane).or_default();
        queued.push_back(job);
        if queued.len() == 1 {
            l.order.push_back(lane);
        }
        drop(l);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job, from the lane whose turn it is; `None` once closed and drained.
    fn pop(&self) -> Option<Job> {
        let mut l = self.lanes.lock().ok()?;
        loop {
            if let Some(lane) = l.order.pop_front() {
                let queued = l.jobs.get_mut(&lane).expect("a lane in order has jobs");
                let job = queued.pop_front().expect("a lane in order is not empty");
                if queued.is_empty() {
                    l.jobs.remove(&lane);
                } else {
                    l.order.push_back(lane);
                }
                return Some(job);
            }
            if l.closed {
                return None;
            }
            l = self.ready.wait(l).ok()?;
        }
    }

    fn close(&self) {
        if let Ok(mut l) = self.lanes.lock() {
            l.closed = true;
        }
        self.ready.notify_all();
    }
}

/// A fixed set of signing threads.
pub struct Workers {
    queue: Arc<Queue>,
    threads: Vec<std::thread::JoinHandle<()>>,
    busy: Arc<AtomicUsize>,
    timings: Option<Timings>,
}

impl Workers {
    /// Starts `count` threads (at least one) named `{name}-{n}`, one after the other; each runs `make` first and
    /// the pool fails with the first error a thread's `make` returns.
    pub fn start<M>(name: &str, count: usize, make: M) -> Result<Self, SignError>
    where
        M: Fn() -> Result<SignFn, SignError> + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let queue = Arc::new(Queue::default());
        let busy = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for n in 0..count.max(1) {
            let (ready_tx, ready_rx) = mpsc::channel::<Result<(), SignError>>();
            let (queue, busy, make) = (queue.clone(), busy.clone(), make.clone());
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || match make() {
                    Ok(sign) => {
                        let _ = ready_tx.send(Ok(()));
                        drop(ready_tx);
                        serve(sign, &queue, &busy);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                })
                .map_err(|e| SignError::Gpg {
                    fingerprint: String::new(),
                    reason: format!("spawn worker: {e}"),
                })?;
            ready_rx.recv().unwrap_or(Err(SignError::Closed))?;
            threads.push(handle);
        }
        Ok(Workers {
            queue,
            threads,
            busy,
            timings: None,
        })
    }

    /// Observes every job's queue wait and signing time into `timings` from now on.
    pub fn observe(&mut self, timings: Timings) {
        self.timings = Some(timings);
    }

    /// Number of threads.
    pub fn size(&self) -> usize {
        self.threads.len()
    }

    /// Number of threads signing right now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Queues a signature and waits for it.
    pub async fn sign(
        &self,
        fingerprint: &str,
        mode: SignMode,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, SignError> {
        let (reply, wait) = oneshot::channel();
        let job = Job {
            fingerprint: fingerprint.to_owned(),
            mode,
            data,
            queued: Instant::now(),
            reply,
        };
        self.queue.push(tokio::task::try_id(), job)?;
        let done = wait.await.map_err(|_| SignError::Closed)?;
        if let Some(t) = &self.timings {
            t.queue_wait.observe(done.waited.as_secs_f64());
            t.signing.observe(done.signing.as_secs_f64());
        }
        done.result
    }

    /// Stops taking jobs and waits for the threads to finish the ones they have.
    pub fn shutdown(mut self) {
        self.close();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }

    fn close(&self) {
        self.queue.close();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.close();
    }
}

fn serve(mut sign: SignFn, queue: &Queue, busy: &AtomicUsize) {
    // Until the pool shuts down and the queue is drained.
    while let Some(job) = queue.pop() {
        busy.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = sign(&job.fingerprint, job.mode, &job.data);
        busy.fetch_sub(1, Ordering::Relaxed);
        let _ = job.reply.send(Done {
            result,
            waited: started.duration_since(job.queued),
            signing: started.elapsed(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One thread that "signs" by noting the fingerprint after `delay`.
    fn noting_pool(delay: Duration) -> (Arc<Workers>, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let noted = log.clone();
        let workers = Workers::start("test-sign", 1, move || {
            let noted = noted.clone();
            let sign: SignFn = Box::new(move |fpr: &str, _: SignMode, data: &[u8]| {
                std::thread::sleep(delay);
                noted.lock().unwrap().push(fpr.to_owned());
                Ok(data.to_vec())
            });
            Ok(sign)
        })
        .unwrap();
        (Arc::new(workers), log)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_job_is_not_queued_behind_a_whole_batch() {
        let (pool, log) = noting_pool(Duration::from_millis(2));
        let batch_pool = pool.clone();
        let batch = tokio::spawn(async move {
            let jobs = (0..50).map(|_| batch_pool.sign("batch", SignMode::Normal, vec![1]));
            futures_util::future::join_all(jobs).await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let single_pool = pool.clone();
        let single =
            tokio::spawn(
                async move { single_pool.sign("single", SignMode::Normal, vec![2]).await },
            );
        assert_eq!(single.await.unwrap().unwrap(), vec![2]);
        assert!(batch.await.unwrap().iter().all(|r| r.is_ok()));
        let log = log.lock().unwrap();
        let at = log.iter().position(|f| f == "single").unwrap();
        assert!(at <= 8, "the single job came {at}th of {}", log.len());
        assert_eq!(log.len(), 51);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wait_for_a_thread_is_observed_apart_from_the_signing() {
        let (pool, _) = noting_pool(Duration::from_millis(40));
        let mut pool = Arc::try_unwrap(pool).ok().expect("one owner");
        let histogram = |name: &str| {
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(name, "test")).unwrap()
        };
        let timings = Timings {
            queue_wait: histogram("wait"),
            signing: histogram("signing"),
        };
        pool.observe(timings.clone());
        // Two jobs at once on one thread: the second waits for the first.
        let (a, b) = tokio::join!(
            pool.sign("a", SignMode::Normal, vec![]),
            pool.sign("b", SignMode::Normal, vec![])
        );
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(timings.signing.get_sample_count(), 2);
        assert_eq!(timings.queue_wait.get_sample_count(), 2);
        let signing = timings.signing.get_sample_sum();
        let waited = timings.queue_wait.get_sample_sum();
        assert!(signing >= 0.08, "two 40 ms signatures took {signing} s");
        assert!(
            waited >= 0.035,
            "one job waited for the other: {waited} s in all"
        );
        pool.shutdown();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_pool_refuses_new_jobs_and_finishes_queued_ones() {
        // Signing takes long enough that jobs are still queued when the pool closes.
        let (pool, log) = noting_pool(Duration::from_millis(30));
        let queued: Vec<_> = (0..5)
            .map(|_| {
                let p = pool.clone();
                tokio::spawn(async move { p.sign("q", SignMode::Normal, vec![]).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        pool.close();
        assert_eq!(
            pool.sign("late", SignMode::Normal, vec![]).await,
            Err(SignError::Closed)
        );
        for q in queued {
            assert!(q.await.unwrap().is_ok());
        }
        assert_eq!(log.lock().unwrap().len(), 5);
    }
}
