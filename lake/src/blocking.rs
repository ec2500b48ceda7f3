//! CPU-heavy work of large requests, off the async threads and at most a core's worth per
//! core at a time.
//!
//! Parsing, validating and extracting search values of a large Bundle or `/ingest` body
//! takes tens of milliseconds to seconds. Done on an async worker it would stall every
//! other request scheduled there; done on unbounded blocking threads, a burst of large
//! requests would run more parsers than there are cores, and all of them, reads
//! included, would slow down together. So such work runs on Tokio's blocking threads
//! behind one process-wide semaphore with a permit per core: [`run`] takes one permit,
//! [`run_on_every_core`] (a rayon job that spreads over every core) takes them all. The
//! semaphore is fair, so a small job waits behind at most the jobs already queued.
//!
//! Small work (one resource) is cheaper done in place than handed to another thread;
//! callers decide by size ([`LARGE_REQUEST_RESOURCES`]).

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use crate::error::{LakeError, Result};

/// From this many resources on, a request's parsing and search extraction moves to a
/// blocking thread.
pub const LARGE_REQUEST_RESOURCES: usize = 32;

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

static PERMITS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(cores()));

/// Run `work` on a blocking thread once a core's permit is free.
pub async fn run<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    run_with(1, work).await
}

/// Run `work`, which keeps every core busy (a rayon parallel iterator), on a blocking
/// thread once every permit is free.
pub async fn run_on_every_core<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    run_with(cores(), work).await
}

async fn run_with<T, F>(permits: usize, work: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let permits = u32::try_from(permits.clamp(1, cores())).unwrap_or(1);
    let _held = PERMITS
        .acquire_many(permits)
        .await
        .map_err(|_| LakeError::Internal("the CPU permits were closed".into()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LakeError::Internal(format!("a parsing thread failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_jobs_run_at_once_than_there_are_cores() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..cores() * 3)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for j in jobs {
            j.await.unwrap().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            most >= 1 && most <= cores(),
            "{most} jobs ran at once on {} cores",
            cores()
        );
        // A job on every core excludes every other job: one queued beside it runs either
        // before or after it, and never sees it running.
        let r2 = running.clone();
        let wide = tokio::spawn(run_on_every_core(move || {
            r2.fetch_add(cores(), Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            r2.fetch_sub(cores(), Ordering::SeqCst);
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let seen = run(most_of(&running)).await.unwrap();
        wide.await.unwrap().unwrap();
        assert_eq!(seen, 0, "a one-core job ran beside a job on every core");
    }

    /// What is running, seen from inside a job.
    fn most_of(running: &Arc<AtomicUsize>) -> impl FnOnce() -> usize + Send + 'static {
        let running = running.clone();
        move || running.load(Ordering::SeqCst)
    }
}
