//! The one signing thread pool both backends run on: N named threads taking jobs from one shared queue and
//! answering each through a oneshot.
//!
//! Each thread builds its own signing function when it starts (`make`, run on that thread, so a backend may keep
//! per-thread state that is not `Send`, as gpgme contexts are) and reports whether it could; the pool is returned
//! only when every thread is ready, so a pool that starts can sign. Signing is CPU-bound: threads beyond the
//! core count add nothing.

use super::{SignError, SignMode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;

/// What a worker thread runs for every job: sign `data` with the key `fingerprint` in `mode`.
pub type SignFn = Box<dyn FnMut(&str, SignMode, &[u8]) -> Result<Vec<u8>, SignError>>;

struct Job {
    fingerprint: String,
    mode: SignMode,
    data: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<u8>, SignError>>,
}

/// A fixed set of signing threads.
pub struct Workers {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    busy: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts `count` threads (at least one) named `{name}-{n}`, one after the other; each runs `make` first and
    /// the pool fails with the first error a thread's `make` returns.
    pub fn start<M>(name: &str, count: usize, make: M) -> Result<Self, SignError>
    where
        M: Fn() -> Result<SignFn, SignError> + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let busy = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for n in 0..count.max(1) {
            let (ready_tx, ready_rx) = mpsc::channel::<Result<(), SignError>>();
            let (rx, busy, make) = (rx.clone(), busy.clone(), make.clone());
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || match make() {
                    Ok(sign) => {
                        let _ = ready_tx.send(Ok(()));
                        drop(ready_tx);
                        serve(sign, &rx, &busy);
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
            jobs: Mutex::new(Some(tx)),
            threads,
            busy,
        })
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
            reply,
        };
        {
            let jobs = self.jobs.lock().expect("jobs lock");
            jobs.as_ref()
                .ok_or(SignError::Closed)?
                .send(job)
                .map_err(|_| SignError::Closed)?;
        }
        wait.await.unwrap_or(Err(SignError::Closed))
    }

    /// Stops taking jobs and waits for the threads to finish the ones they have.
    pub fn shutdown(mut self) {
        self.close();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }

    fn close(&self) {
        if let Ok(mut j) = self.jobs.lock() {
            j.take();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.close();
    }
}

fn serve(mut sign: SignFn, jobs: &Mutex<mpsc::Receiver<Job>>, busy: &AtomicUsize) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // pool shut down
            }
        };
        busy.fetch_add(1, Ordering::Relaxed);
        let result = sign(&job.fingerprint, job.mode, &job.data);
        busy.fetch_sub(1, Ordering::Relaxed);
        let _ = job.reply.send(result);
    }
}
