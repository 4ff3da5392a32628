//! Which filter VMs push: a VM start or a VM that died made visible.
//!
//! Every push carries metadata naming the filter VM that sent it (`tapedeck-vm-id`, new at every
//! VM start, and `tapedeck-vm-started`) and its workload (`tapedeck-workload`,
//! `tapedeck-namespace`). A VM id not seen before whose start is not before the collector's own
//! counts as a VM start of its workload; every push, stored or refused, sets the workload's
//! last-push time. Filters push at least every heartbeat interval, so a workload whose last push
//! stops advancing has no live VM left (under `FAIL_OPEN` a VM that died captures nothing and
//! says nothing), and a start counter that steps while the proxy ran is a VM that was replaced
//! (under `FAIL_RELOAD`, after a crash).

use std::collections::HashMap;

use tapedeck_proto::{PUSH_NAMESPACE, PUSH_VM_ID, PUSH_VM_STARTED, PUSH_WORKLOAD};
use tonic::metadata::MetadataMap;

use super::MAX_TRACKED_FILTERS;

/// Who sent a push, from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The filter VM's id (empty from senders that do not say).
    pub vm_id: String,
    /// When the VM started, nanoseconds since the Unix epoch (0 when not said).
    pub vm_started_unix_nanos: u64,
    /// The workload (empty when not said).
    pub workload: String,
    /// Its namespace.
    pub namespace: String,
}

impl Sender {
    /// The sender a push's metadata names.
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        let text = |name: &str| {
            metadata
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        Self {
            vm_id: text(PUSH_VM_ID),
            vm_started_unix_nanos: text(PUSH_VM_STARTED).parse().unwrap_or(0),
            workload: text(PUSH_WORKLOAD),
            namespace: text(PUSH_NAMESPACE),
        }
    }
}

/// The filter VMs seen, to tell a new one from a known one; the least recently seen is
/// forgotten first, beyond [`MAX_TRACKED_FILTERS`].
#[derive(Debug)]
pub struct VmTracker {
    /// The collector's start, nanoseconds since the Unix epoch: VMs that started earlier were
    /// running already and are not counted as starts.
    since_unix_nanos: u64,
    seen: HashMap<String, u64>,
    clock: u64,
}

impl VmTracker {
    /// A tracker counting the VMs that start from `since_unix_nanos` on.
    pub fn new(since_unix_nanos: u64) -> Self {
        Self {
            since_unix_nanos,
            seen: HashMap::new(),
            clock: 0,
        }
    }

    /// Records a push from `sender`; true when it is the first push of a VM that started while
    /// this collector ran (a VM start to count).
    pub fn observe(&mut self, sender: &Sender) -> bool {
        if sender.vm_id.is_empty() {
            return false;
        }
        self.clock += 1;
        let clock = self.clock;
        if let Some(last_seen) = self.seen.get_mut(&sender.vm_id) {
            *last_seen = clock;
            return false;
        }
        if self.seen.len() >= MAX_TRACKED_FILTERS {
            let oldest = self
                .seen
                .iter()
                .min_by_key(|(_, last_seen)| **last_seen)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(sender.vm_id.clone(), clock);
        sender.vm_started_unix_nanos >= self.since_unix_nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(id: &str, started: u64) -> Sender {
        Sender {
            vm_id: id.into(),
            vm_started_unix_nanos: started,
            workload: "shop".into(),
            namespace: "default".into(),
        }
    }

    #[test]
    fn a_new_vm_counts_once_and_only_when_it_started_after_the_collector() {
        let mut vms = VmTracker::new(1_000);
        // Running before the collector started: known from now on, not a start.
        assert!(!vms.observe(&sender("a", 500)));
        assert!(!vms.observe(&sender("a", 500)));
        // A VM that started since (a reload after a crash): one start, however often it pushes.
        assert!(vms.observe(&sender("b", 2_000)));
        assert!(!vms.observe(&sender("b", 2_000)));
        // Pushes that name no VM (older filters, other clients) count nothing.
        assert!(!vms.observe(&sender("", 3_000)));
    }

    #[test]
    fn metadata_names_the_sender() {
        let mut metadata = MetadataMap::new();
        metadata.insert(PUSH_VM_ID, "00ff".parse().unwrap());
        metadata.insert(PUSH_VM_STARTED, "12345".parse().unwrap());
        metadata.insert(PUSH_WORKLOAD, "shop".parse().unwrap());
        assert_eq!(
            Sender::from_metadata(&metadata),
            Sender {
                vm_id: "00ff".into(),
                vm_started_unix_nanos: 12345,
                workload: "shop".into(),
                namespace: String::new(),
            }
        );
    }
}
