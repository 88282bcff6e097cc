//! Where argon2 runs: a few threads of the hasher's own, at the lowest scheduling priority,
//! fed by a bounded queue, each keeping its argon2 memory between computations.
//!
//! Why not `spawn_blocking`: during a login storm, blocking threads hashing at normal priority
//! compete with the async workers for the cores, so every other request waits behind argon2;
//! and each short-lived blocking thread leaves its 19 MiB in a malloc arena of its own. Here
//! the OS runs request threads first (`SCHED_IDLE` on Linux), memory is `threads × m_cost`,
//! and a full queue is a fast refusal instead of a growing wait.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        mpsc::{self, Receiver, SyncSender, TrySendError},
        Arc, Mutex,
    },
    thread,
};

use argon2::Block;

/// One computation; gets the worker's reusable argon2 memory.
pub(super) type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The queue is full: the caller answers 503 with `Retry-After`.
#[derive(Debug)]
pub(super) struct Full;

/// The threads and their queue. The threads end when the last [`Pool`] handle is dropped.
#[derive(Debug)]
pub(super) struct Pool {
    queue: SyncSender<Job>,
}

impl Pool {
    /// Starts `threads` workers behind a queue of `capacity` waiting jobs.
    pub(super) fn start(threads: usize, capacity: usize) -> Self {
        let (queue, jobs) = mpsc::sync_channel::<Job>(capacity);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..threads {
            let jobs = Arc::clone(&jobs);
            let spawned = thread::Builder::new()
                .name(format!("lm-argon2-{n}"))
                .spawn(move || work(&jobs));
            if let Err(error) = spawned {
                tracing::error!(%error, "could not start a password hashing thread");
            }
        }
        Self { queue }
    }

    /// Queues `job`, or refuses at once when the queue is full.
    pub(super) fn submit(&self, job: Job) -> Result<(), Full> {
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            // A disconnected queue (every worker failed to start) is a full one: refuse
            // rather than wait forever.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Full),
        }
    }
}

fn work(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    let mut memory = Vec::new();
    loop {
        // The lock is held only while waiting for the next job, never while hashing.
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return; // every `Pool` handle is gone
        };
        // A panicking computation drops its result sender (the caller sees an error); the
        // thread stays for the next job.
        if catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
            memory = Vec::new();
        }
    }
}

/// Makes the OS prefer every other thread of the process to this one: `SCHED_IDLE` on Linux
/// (it runs only on a core nothing else wants, so a request never waits for a hash's time
/// slice; nice 19 did not achieve that under the EEVDF scheduler, docs/benchmarks.md), the
/// lowest priority elsewhere. The price: on a machine kept saturated by other work, hashing
/// barely progresses, and a caller waiting past `MAX_WAIT` is answered `Error::Overloaded`.
fn lower_priority() {
    use thread_priority::ThreadPriority;

    #[cfg(target_os = "linux")]
    let lowered = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Min,
        thread_priority::ThreadSchedulePolicy::Normal(
            thread_priority::NormalThreadSchedulePolicy::Idle,
        ),
    );
    #[cfg(not(target_os = "linux"))]
    let lowered = thread_priority::set_current_thread_priority(ThreadPriority::Min);
    if let Err(error) = lowered {
        // Still correct, only less polite to the request threads.
        tracing::warn!(
            ?error,
            "could not lower the priority of a password hashing thread"
        );
    }
}
