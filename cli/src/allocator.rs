//! The allocator's settings, applied by the binaries first thing in `main`.
//!
//! mimalloc gives memory it no longer uses back to the kernel after `purge_delay` (1 s).
//! By default it does so with `MADV_DONTNEED`: the pages leave the process at once, and the
//! next allocation there faults them in again, and the kernel zeroes every page (with
//! transparent huge pages, 2 MiB at a time). The collector's memory goes round in a cycle:
//! pushes are built into Arrow arrays that live until a flush has written them, then they are
//! freed and the next pushes allocate as much again. With `MADV_DONTNEED` each cycle paid the
//! faults and the zeroing for every byte it held again (BENCHMARKS.md, the seventh ingest
//! pass). With `MADV_FREE` (`purge_decommits` off) the pages stay mapped; the kernel takes them
//! back only when it needs memory, and until then a reuse costs nothing.
//!
//! What this changes for operators: a process's resident size (`top`, `ps`) no longer drops
//! when its memory is freed, only when the kernel reclaims it. Kubernetes' working-set figure
//! and the cgroup's reclaim under its limit count such pages as reclaimable. Setting
//! `MIMALLOC_PURGE_DECOMMITS=1` in the environment restores mimalloc's default; any value set
//! there wins over this module.

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// mimalloc's `mi_option_purge_decommits` (its place in v3's `mi_option_t`; libmimalloc-sys
/// has no constant for it). The test `the_option_is_the_one_the_environment_sets` checks it.
const PURGE_DECOMMITS: mi_option_t = 5;

/// The environment variable mimalloc reads the same option from.
const PURGE_DECOMMITS_ENV: &str = "MIMALLOC_PURGE_DECOMMITS";

/// Freed memory goes back to the kernel with `MADV_FREE` instead of `MADV_DONTNEED`, unless
/// `MIMALLOC_PURGE_DECOMMITS` is set. Call it first thing in `main`, before other threads
/// exist (mimalloc's options are plain globals).
pub fn reuse_freed_pages() {
    if std::env::var_os(PURGE_DECOMMITS_ENV).is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; the option exists
    // (checked by the test below) and 0 is one of its two values.
    unsafe { mi_option_set(PURGE_DECOMMITS, 0) }
}

/// Whether a purge decommits (`MADV_DONTNEED`) rather than resets (`MADV_FREE`).
pub fn purge_decommits() -> bool {
    // SAFETY: reads an integer from mimalloc's option table (initialising it from the
    // environment on first use).
    unsafe { mi_option_get(PURGE_DECOMMITS) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process of `the_option_is_the_one_the_environment_sets`.
    const PROBE: &str = "TAPEDECK_ALLOCATOR_PROBE";

    /// In a child process started with `MIMALLOC_PURGE_DECOMMITS` set: mimalloc read it into
    /// the option this module sets, so `PURGE_DECOMMITS` is that option's number.
    #[test]
    fn probe() {
        let Some(expected) = std::env::var_os(PROBE) else {
            return;
        };
        assert_eq!(
            purge_decommits(),
            expected == "1",
            "mimalloc read {PURGE_DECOMMITS_ENV} into another option than {PURGE_DECOMMITS}"
        );
        // And `reuse_freed_pages` leaves the environment's value alone.
        reuse_freed_pages();
        assert_eq!(purge_decommits(), expected == "1");
    }

    #[test]
    fn the_option_is_the_one_the_environment_sets() {
        for value in ["0", "1"] {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["allocator::tests::probe", "--exact", "--nocapture"])
                .env(PROBE, value)
                .env(PURGE_DECOMMITS_ENV, value)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "{PURGE_DECOMMITS_ENV}={value}: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    #[test]
    fn freed_pages_are_reset_not_decommitted() {
        if std::env::var_os(PURGE_DECOMMITS_ENV).is_some() {
            return;
        }
        assert!(purge_decommits(), "mimalloc's default decommits");
        reuse_freed_pages();
        assert!(!purge_decommits());
    }
}
