//! Order-preserving parallel map: jobs run on a fixed set of worker threads (each with state of
//! its own, kept for the whole run), results reach the caller's sink in job order, on the
//! calling thread, while the workers go on with the next jobs.
//!
//! The workers live for the whole run on purpose: short-lived threads each start an allocator
//! heap of their own, and the memory they free when they exit is faulted in (and zeroed by the
//! kernel) again by the next ones; that churn was a third of the analyzer's time.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Jobs in flight per worker: enough to keep every worker busy while the sink runs, few enough
/// to bound memory.
const AHEAD_PER_WORKER: usize = 2;

/// The number of workers to use: the machine's cores, at most 8.
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8)
}

/// Runs `work` over `jobs` on `threads` workers and hands each result to `sink` in job order.
/// Stops at the first error of `sink` (the workers finish the jobs they hold, and no more are
/// given). A panic in a worker is resumed on the calling thread.
pub(crate) fn map_ordered<T, R, S, E>(
    jobs: impl IntoIterator<Item = T>,
    threads: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, T) -> R + Sync,
    mut sink: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    R: Send,
{
    let threads = threads.max(1);
    std::thread::scope(|scope| {
        let (job_sender, job_receiver) = mpsc::channel::<(usize, T)>();
        let job_receiver = Arc::new(Mutex::new(job_receiver));
        let (result_sender, results) = mpsc::channel::<(usize, R)>();
        let mut handles = Vec::with_capacity(threads);
        for _ in 0..threads {
            let job_receiver = Arc::clone(&job_receiver);
            let result_sender = result_sender.clone();
            let (init, work) = (&init, &work);
            handles.push(scope.spawn(move || {
                let mut state = init();
                loop {
                    // The lock is held only to take a job; a poisoned lock means another
                    // worker panicked, which the caller resumes.
                    let job = match job_receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    let Ok((sequence, job)) = job else { return };
                    if result_sender
                        .send((sequence, work(&mut state, job)))
                        .is_err()
                    {
                        return;
                    }
                }
            }));
        }
        drop(result_sender);

        let mut jobs = jobs.into_iter().enumerate();
        let mut sent = 0;
        let mut next = 0;
        let mut waiting: BTreeMap<usize, R> = BTreeMap::new();
        let mut outcome = Ok(());
        let mut feed = |sent: &mut usize, next: usize| {
            while *sent < next + threads * AHEAD_PER_WORKER {
                match jobs.next() {
                    Some(job) => {
                        if job_sender.send(job).is_err() {
                            break;
                        }
                        *sent += 1;
                    }
                    None => break,
                }
            }
        };
        feed(&mut sent, next);
        while next < sent {
            let Ok((sequence, result)) = results.recv() else {
                break; // A worker panicked; resumed below.
            };
            waiting.insert(sequence, result);
            while let Some(result) = waiting.remove(&next) {
                next += 1;
                if outcome.is_ok() {
                    outcome = sink(result);
                }
            }
            if outcome.is_ok() {
                feed(&mut sent, next);
            }
        }
        drop(job_sender);
        for handle in handles {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_arrive_in_order_with_per_worker_state() {
        let mut seen = Vec::new();
        let result: Result<(), ()> = map_ordered(
            0..1000u64,
            3,
            || 0u64,
            |calls, n| {
                *calls += 1;
                // Uneven work, so results finish out of order.
                std::hint::black_box((0..(n % 7) * 2000).fold(0u64, u64::wrapping_add));
                n * 2
            },
            |r| {
                seen.push(r);
                Ok(())
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(seen, (0..1000).map(|n| n * 2).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_sink_error_stops_the_run() {
        let mut seen = 0;
        let result = map_ordered(
            0..1_000_000u64,
            2,
            || (),
            |_, n| n,
            |n| {
                seen += 1;
                if n == 10 { Err(n) } else { Ok(()) }
            },
        );
        assert_eq!(result, Err(10));
        assert_eq!(seen, 11);
    }
}
