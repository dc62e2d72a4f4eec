//! [`ArchiveThread`]: the one thread on which a store's archive calls run.
//!
//! Archive reads allocate the blocks they return on the thread that reads, and those blocks
//! are freed on the runtime's workers once the response is sent. With a per-thread allocator
//! (the node's mimalloc) memory freed by another thread returns to the owning thread's heap
//! only when that thread allocates again; tokio's blocking pool hands each read to whichever
//! thread is idle, so after a catch-up every pool thread that served one held its share of
//! the responses until it exited. On one long-lived thread per store the next read or write
//! reuses that memory.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::archive::ArchiveError;

/// Archive calls queued for the thread at most (the archive writer's one and the served
/// reads, which [`Config::max_concurrent_archive_reads`](crate::Config) bounds); beyond it a
/// call fails at once.
pub(crate) const ARCHIVE_QUEUE: usize = 16;

/// How long the thread waits without a call before it calls its idle hook (once per quiet
/// spell): a catch-up's reads end at once, and the memory they left should not wait for the
/// next one.
pub(crate) const IDLE_AFTER: Duration = Duration::from_secs(1);

/// How often the thread calls its idle hook at least while calls keep coming: the archive
/// writer calls every [`ARCHIVE_INTERVAL`](crate::ARCHIVE_INTERVAL), so a validator's thread
/// is rarely quiet for [`IDLE_AFTER`], and the memory a catch-up's reads left on it stayed
/// for minutes.
pub(crate) const IDLE_HOOK_EVERY: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce() + Send>;

/// A store's archive thread. Cheap to clone; the thread ends once every clone is dropped.
#[derive(Clone, Debug)]
pub(crate) struct ArchiveThread {
    jobs: mpsc::SyncSender<Job>,
}

impl ArchiveThread {
    /// Starts the thread. `idle` runs on it after [`IDLE_AFTER`] without a call, once per
    /// quiet spell that followed a call, and after a call once [`IDLE_HOOK_EVERY`] has passed
    /// since it last ran ([`BlockArchive::idle_hook`](crate::BlockArchive::idle_hook)).
    pub(crate) fn spawn(idle: Option<fn()>) -> std::io::Result<Self> {
        Self::spawn_with(IDLE_AFTER, IDLE_HOOK_EVERY, idle)
    }

    /// [`spawn`](Self::spawn) with `idle_after` for [`IDLE_AFTER`] and `hook_every` for
    /// [`IDLE_HOOK_EVERY`].
    fn spawn_with(
        idle_after: Duration,
        hook_every: Duration,
        idle: Option<impl Fn() + Send + 'static>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(ARCHIVE_QUEUE);
        std::thread::Builder::new()
            .name("state-sync-archive".into())
            .spawn(move || {
                // Calls since the hook last ran, and when it did.
                let mut busy = false;
                let mut hooked_at = Instant::now();
                let run_hook = |busy: &mut bool, hooked_at: &mut Instant| {
                    if let (true, Some(idle)) = (std::mem::take(busy), &idle) {
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(idle));
                        *hooked_at = Instant::now();
                    }
                };
                loop {
                    match queue.recv_timeout(idle_after) {
                        Ok(job) => {
                            // A panicking call fails alone (its caller sees the thread's
                            // answer dropped); the thread goes on with the next.
                            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                            busy = true;
                            if hooked_at.elapsed() >= hook_every {
                                run_hook(&mut busy, &mut hooked_at);
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            run_hook(&mut busy, &mut hooked_at);
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `call` on the thread and waits for its result without blocking the runtime.
    /// Fails at once when [`ARCHIVE_QUEUE`] calls wait, or when the call panicked.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ArchiveError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(Box::new(move || {
                let _ = answer.send(call());
            }))
            .map_err(|err| -> ArchiveError {
                match err {
                    mpsc::TrySendError::Full(_) => "the archive thread's queue is full".into(),
                    mpsc::TrySendError::Disconnected(_) => "the archive thread ended".into(),
                }
            })?;
        answered
            .await
            .map_err(|_| "the archive call panicked".into())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// The idle hook runs once after a quiet spell that followed calls, on the archive's
    /// thread, and not again while nothing is called.
    #[tokio::test]
    async fn the_idle_hook_runs_once_per_quiet_spell() {
        let idles = Arc::new(AtomicUsize::new(0));
        let (idled, idle_seen) = mpsc::channel();
        let quiet = Duration::from_millis(20);
        let thread = ArchiveThread::spawn_with(
            quiet,
            Duration::from_secs(3600),
            Some({
                let idles = idles.clone();
                move || {
                    idles.fetch_add(1, Ordering::SeqCst);
                    let _ = idled.send(std::thread::current().id());
                }
            }),
        )
        .unwrap();
        let archive_thread = thread.run(|| std::thread::current().id()).await.unwrap();
        let idled_on = idle_seen.recv().unwrap();
        assert_eq!(idled_on, archive_thread);
        // Quiet spells with no call in them call nothing.
        assert!(idle_seen.recv_timeout(quiet * 5).is_err());
        assert_eq!(idles.load(Ordering::SeqCst), 1);
        thread.run(|| ()).await.unwrap();
        idle_seen.recv().unwrap();
        assert_eq!(idles.load(Ordering::SeqCst), 2);
    }

    /// While calls keep coming, never a quiet spell between them, the hook still runs once
    /// `hook_every` has passed since it last did: here, with no wait, after every call.
    #[tokio::test]
    async fn the_idle_hook_runs_between_calls_that_never_pause() {
        let (idled, idle_seen) = mpsc::channel();
        let thread = ArchiveThread::spawn_with(
            Duration::from_secs(3600),
            Duration::ZERO,
            Some(move || {
                let _ = idled.send(std::thread::current().id());
            }),
        )
        .unwrap();
        for _ in 0..3 {
            let archive_thread = thread.run(|| std::thread::current().id()).await.unwrap();
            assert_eq!(idle_seen.recv().unwrap(), archive_thread);
        }
        assert!(idle_seen.try_recv().is_err());
    }

    /// Every call runs on the same thread, one after the other; a panicking call fails alone.
    #[tokio::test]
    async fn calls_run_on_one_thread_and_survive_a_panic() {
        let thread = ArchiveThread::spawn(None).unwrap();
        let first = thread.run(|| std::thread::current().id()).await.unwrap();
        let panicked = thread.run(|| -> u8 { panic!("a failing call") }).await;
        assert!(panicked.is_err());
        let second = thread.run(|| std::thread::current().id()).await.unwrap();
        assert_eq!(first, second);
        assert_ne!(first, std::thread::current().id());
    }

    /// Past the queue's bound a call fails at once instead of waiting; once the thread is
    /// free again the queue drains.
    #[tokio::test]
    async fn a_full_queue_refuses_the_call() {
        let thread = ArchiveThread::spawn(None).unwrap();
        let (release, released) = mpsc::channel::<()>();
        thread
            .jobs
            .try_send(Box::new(move || {
                let _ = released.recv();
            }))
            .unwrap();
        // The thread is held by that call; fill the queue behind it.
        while thread.jobs.try_send(Box::new(|| {})).is_ok() {}
        let refused = thread.run(|| ()).await;
        assert!(refused.unwrap_err().to_string().contains("full"));
        release.send(()).unwrap();
        // A blocking send waits for room, which the drained queue makes.
        let (done, ran) = mpsc::channel();
        thread
            .jobs
            .send(Box::new(move || done.send(7).unwrap()))
            .unwrap();
        assert_eq!(ran.recv().unwrap(), 7);
    }
}
