//! Loopback ports for servers a test starts as child processes, reserved for the process's life.
//!
//! A port found by binding `127.0.0.1:0` and letting go is free only for a moment: the kernel
//! hands it out again to the next `bind(0)` anywhere on the machine, or as the local port of an
//! outgoing connection. Tests run in parallel, and a test that stops a server and starts it
//! again on the same port (the soak's collector, which Envoy's cluster points at) leaves that
//! port free for seconds. Two CI runs failed that way: a collector that could not bind its port,
//! and a soak whose collector heard another test's filter.
//!
//! So these ports come from outside the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), which neither `bind(0)` nor `connect` ever
//! picks, and each is held by an advisory lock on a file under the temporary directory until
//! the process exits, so no two test processes (nextest runs each test in its own) and no two
//! calls in one process share a port. A port something else already listens on is skipped.
//!
//! `cli/tests/cli.rs` includes this file by path (the CLI cannot depend on this crate, which
//! depends on it).

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};

/// The lock files of the ports this process reserved, held open (and so locked) until it exits.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A loopback port no other test process holds, outside the ephemeral range, free when
/// returned and reserved for the rest of this process.
pub fn reserve_port() -> Result<SocketAddr> {
    let range = unassigned_range()?;
    let dir = std::env::temp_dir().join("tapedeck-ports");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (first, last) = (u32::from(*range.start()), u32::from(*range.end()));
    let span = last - first + 1;
    // Start somewhere different in each process, so that parallel tests rarely contend.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for step in 0..span {
        let port = (first + (seed.wrapping_add(step)) % span) as u16;
        let path = dir.join(format!("{port}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if file.try_lock().is_err() {
            continue; // another test process holds it (or this one, through another call)
        }
        // Something outside the tests may listen there; std sets SO_REUSEADDR, so letting go
        // of this probe leaves the port bindable at once by the child.
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        HELD.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(file);
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    bail!("no free loopback port in {range:?} (outside the ephemeral range)")
}

/// The widest stretch of ports above 1023 that the kernel does not assign by itself.
fn unassigned_range() -> Result<RangeInclusive<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".to_owned());
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(low)), Some(Ok(high))) = (bounds.next(), bounds.next()) else {
        bail!("ip_local_port_range is not two ports: {text:?}");
    };
    // Below the range, leaving the well-known and common development ports (up to 10 000) alone.
    let below = 10_000..=low.saturating_sub(1);
    let above = high.saturating_add(1)..=u16::MAX;
    let len = |r: &RangeInclusive<u16>| r.end().saturating_sub(*r.start());
    let widest = if len(&below) >= len(&above) {
        below
    } else {
        above
    };
    if len(&widest) < 1_000 {
        bail!("the ephemeral range {low}–{high} leaves fewer than 1 000 ports outside it");
    }
    Ok(widest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_outside_the_ephemeral_range_and_bindable() {
        let range = unassigned_range().unwrap();
        let ports: Vec<SocketAddr> = (0..8).map(|_| reserve_port().unwrap()).collect();
        let mut distinct: Vec<u16> = ports.iter().map(SocketAddr::port).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for addr in &ports {
            assert!(range.contains(&addr.port()), "{addr} outside {range:?}");
            TcpListener::bind(addr).unwrap();
        }
        // A port this process holds is locked against any other opener, in this process too.
        let held = std::env::temp_dir()
            .join("tapedeck-ports")
            .join(format!("{}.lock", ports[0].port()));
        assert!(File::open(held).unwrap().try_lock().is_err());
    }
}
