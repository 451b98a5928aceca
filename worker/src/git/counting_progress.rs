//! A `prodash`-compatible progress sink that only counts.
//!
//! gix reports progress through a tree of `Progress` items that must be `Send + Sync`; the
//! caller's callback is neither, so the items only update atomics here, and the thread that
//! owns the callback polls [`Counters::snapshot`]. An item's maximum is kept beside its counter:
//! gix sets the indexing and resolving items' maximum to the object count of the pack's header
//! as soon as the header has arrived, which makes the fetch's total known from then on.

use std::sync::{
    Arc,
    atomic::{AtomicU8, AtomicUsize, Ordering},
};

use gix::progress::{Id, MessageLevel, Step, StepShared, UNKNOWN, Unit};
use parking_lot::Mutex;

/// Progress id of the "read pack" item: bytes of pack data read from the wire.
const READ_PACK_BYTES: Id = *b"BWRB";
/// Progress id of the "indexing" item: objects indexed from the received pack.
const INDEX_OBJECTS: Id = *b"IWIO";
/// Progress id of the "resolving" item: objects whose hash was computed.
const RESOLVE_OBJECTS: Id = *b"IWRO";

/// The phases reported to callers, in order.
pub(crate) const PHASES: [&str; 6] = [
    "connecting",
    "listing refs",
    "receiving",
    "indexing",
    "updating refs",
    "done",
];

pub(crate) const PHASE_CONNECTING: u8 = 0;
pub(crate) const PHASE_LISTING: u8 = 1;
pub(crate) const PHASE_RECEIVING: u8 = 2;
const PHASE_INDEXING: u8 = 3;
pub(crate) const PHASE_UPDATING_REFS: u8 = 4;
pub(crate) const PHASE_DONE: u8 = 5;

/// Shared counters of one fetch.
#[derive(Default)]
pub(crate) struct Counters {
    phase: AtomicU8,
    /// Counter and maximum (0 = none) of every item, by id; summed on demand.
    items: Mutex<Vec<Tally>>,
}

/// What an item shares with [`Counters`].
struct Tally {
    id: Id,
    counter: StepShared,
    max: StepShared,
}

/// What the counters say at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub phase: &'static str,
    pub objects: u64,
    /// Objects in the packs being received (0 until a pack's header has arrived).
    pub total_objects: u64,
    pub bytes: u64,
}

impl Counters {
    pub(crate) fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn sum(&self, id: Id) -> u64 {
        self.sum_of(id, |t| &t.counter)
    }

    fn sum_of(&self, id: Id, field: impl Fn(&Tally) -> &StepShared) -> u64 {
        self.items
            .lock()
            .iter()
            .filter(|t| t.id == id)
            .map(|t| field(t).load(Ordering::Relaxed) as u64)
            .sum()
    }

    /// Bytes of pack data read from the remote so far.
    pub(crate) fn bytes_received(&self) -> u64 {
        self.sum(READ_PACK_BYTES)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let index = usize::from(self.phase.load(Ordering::Relaxed)).min(PHASES.len() - 1);
        let objects = self.sum(RESOLVE_OBJECTS).max(self.sum(INDEX_OBJECTS));
        let total_objects = self
            .sum_of(RESOLVE_OBJECTS, |t| &t.max)
            .max(self.sum_of(INDEX_OBJECTS, |t| &t.max));
        Snapshot {
            phase: PHASES[index],
            objects,
            total_objects,
            bytes: self.bytes_received(),
        }
    }

    /// The root progress item handed to gix.
    pub(crate) fn root(self: &Arc<Self>) -> Item {
        Item::new(self.clone(), UNKNOWN)
    }
}

/// One node of the progress tree; see the module documentation.
pub(crate) struct Item {
    counters: Arc<Counters>,
    id: Id,
    counter: StepShared,
    max: Option<Step>,
    /// `max` as [`Counters`] sees it (0 = none).
    shared_max: StepShared,
    name: Option<String>,
}

impl Item {
    fn new(counters: Arc<Counters>, id: Id) -> Self {
        let counter: StepShared = Arc::new(AtomicUsize::new(0));
        let shared_max: StepShared = Arc::new(AtomicUsize::new(0));
        counters.items.lock().push(Tally {
            id,
            counter: counter.clone(),
            max: shared_max.clone(),
        });
        match id {
            READ_PACK_BYTES => counters.set_phase(PHASE_RECEIVING),
            INDEX_OBJECTS | RESOLVE_OBJECTS => counters.set_phase(PHASE_INDEXING),
            _ => {}
        }
        Self {
            counters,
            id,
            counter,
            max: None,
            shared_max,
            name: None,
        }
    }

    fn store_max(&mut self, max: Option<Step>) -> Option<Step> {
        self.shared_max.store(max.unwrap_or(0), Ordering::Relaxed);
        std::mem::replace(&mut self.max, max)
    }
}

impl gix::progress::Count for Item {
    fn set(&self, step: Step) {
        self.counter.store(step, Ordering::Relaxed);
    }

    fn step(&self) -> Step {
        self.counter.load(Ordering::Relaxed)
    }

    fn inc_by(&self, step: Step) {
        self.counter.fetch_add(step, Ordering::Relaxed);
    }

    fn counter(&self) -> StepShared {
        self.counter.clone()
    }
}

impl gix::progress::Progress for Item {
    fn init(&mut self, max: Option<Step>, _unit: Option<Unit>) {
        self.store_max(max);
    }

    fn max(&self) -> Option<Step> {
        self.max
    }

    fn set_max(&mut self, max: Option<Step>) -> Option<Step> {
        self.store_max(max)
    }

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    fn id(&self) -> Id {
        self.id
    }

    fn message(&self, level: MessageLevel, message: String) {
        tracing::trace!(
            ?level,
            item = self.name.as_deref().unwrap_or(""),
            "{message}"
        );
    }
}

impl gix::progress::NestedProgress for Item {
    type SubProgress = Item;

    fn add_child(&mut self, name: impl Into<String>) -> Self::SubProgress {
        self.add_child_with_id(name, UNKNOWN)
    }

    fn add_child_with_id(&mut self, name: impl Into<String>, id: Id) -> Self::SubProgress {
        let mut child = Item::new(self.counters.clone(), id);
        child.name = Some(name.into());
        child
    }
}
