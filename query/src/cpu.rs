//! A dedicated runtime for DataFusion plans, apart from the one that serves requests.
//!
//! DataFusion's operators are CPU-bound futures that yield only between batches. Run on
//! the runtime that also accepts connections, answers reads and hands acknowledgements
//! from the WAL back to waiting writers, a few large scans would occupy every worker
//! thread, and a read by id behind them would wait for a scan to finish. So, as the
//! DataFusion documentation advises and InfluxDB 3 does, plans are planned and executed
//! on a runtime of their own ([`CpuRuntime::run`]); the request's task only awaits the
//! result. The operating system shares the cores between the two runtimes' threads, so
//! a burst of queries slows requests down but never stops them.
//!
//! A Tokio runtime cannot be dropped from async code, so a plain thread owns this one
//! and shuts it down in the background when the last [`CpuRuntime`] handle goes away.

use std::future::Future;
use std::sync::mpsc;

use datafusion::error::DataFusionError;
use tokio::runtime::{Builder, Handle};

/// A multi-threaded Tokio runtime for query plans. Dropping it stops its threads.
pub struct CpuRuntime {
    handle: Handle,
    /// Dropped with the runtime handle: the owner thread then shuts the runtime down.
    _stop: mpsc::Sender<()>,
}

impl CpuRuntime {
    /// A runtime with one thread per core (`threads`, at least 1).
    pub fn new(threads: usize) -> std::io::Result<CpuRuntime> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("medlake-query")
            // Plans read object storage (S3, Azure, GCS) as they run.
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("medlake-query-owner".into())
            .spawn(move || {
                // Returns when every sender is gone.
                let _ = stopped.recv();
                runtime.shutdown_background();
            })?;
        Ok(CpuRuntime {
            handle,
            _stop: stop,
        })
    }

    /// One thread per core the process may use.
    pub fn for_this_machine() -> std::io::Result<CpuRuntime> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        CpuRuntime::new(cores)
    }

    /// Run `work` to completion on this runtime and hand back its output. A panic in the
    /// work is reported as an error, not propagated into the caller's task.
    pub async fn run<F, T>(&self, work: F) -> Result<T, DataFusionError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.handle
            .spawn(work)
            .await
            .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))
    }

    /// Start `work` on this runtime without waiting for it: for work that hands its
    /// output back as it goes (a producer that feeds a channel, a streamed scan), which
    /// ends with the runtime. The handle may be dropped.
    pub fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_query_threads_and_panics_become_errors() {
        let cpu = CpuRuntime::new(1).unwrap();
        let name = cpu
            .run(async { std::thread::current().name().map(str::to_string) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("medlake-query"));
        let failed = cpu.run(async { panic!("a bug in an operator") }).await;
        assert!(failed.is_err());
        // The runtime survives a panicking task.
        assert_eq!(cpu.run(async { 2 + 2 }).await.unwrap(), 4);
    }
}
