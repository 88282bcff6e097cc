//! [`MemoryThrottleStore`]: the in-process store, bounded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{ThrottleEntry, ThrottleStore};
use crate::Result;

/// Default cap on the keys a [`MemoryThrottleStore`] tracks.
const DEFAULT_CAPACITY_LIMIT: usize = 100_000;
/// The memory store caps windows at a year, so that `Instant + window` cannot overflow.
const MAX_MEMORY_WINDOW: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// How many expired windows one write may purge on its way, so that the cost of a write stays
/// bounded even after a long quiet period left many entries expired.
const PURGE_BATCH: usize = 16;

/// An in-process [`ThrottleStore`] with a hard cap on the number of keys it tracks.
///
/// Good for a single instance; several instances behind a load balancer need a shared store,
/// or each one counts only the failures it saw itself. Clones share the same counters.
///
/// # Memory cap and eviction
///
/// Spraying random usernames creates one key per name, so the store tracks at most
/// [`capacity_limit`](Self::capacity_limit) keys (default 100 000, some 200–300 bytes each, so
/// about 25 MB when full).
/// Windows are also kept in queues, one per window length, in the order they were opened (so,
/// per length, in the order they end). A write first purges a few expired windows from the
/// queue fronts; when the map is still full, it evicts the front window that ends soonest,
/// so an eviction gives away the least remaining lock time, and the year-long device
/// registrations of [`LoginThrottle`](crate::LoginThrottle) go last. Each window enters a queue once and leaves it
/// once, so a write costs O(1) amortized (times the few window lengths in use); there is no
/// scan of the map. Queue elements left behind by resets are compacted away once they
/// outnumber the live ones, which keeps the queue at about twice the map's size at most.
///
/// What an attacker gains: by opening more than `capacity_limit` new windows within one
/// window length, they can evict counters early — including an account's lock, or their own
/// address's — and so get more guesses per window than configured. Every new window costs
/// them a recorded failure, and each address gets only `max_failures_per_address` of those per
/// window (50 by default), so flushing 100 000 keys takes some 2 000 distinct addresses
/// (IPv6 counted per /64) per window, and each flush buys each target account only
/// `max_failures` more guesses. Deployments that face that scale should use a shared store or
/// raise the cap.
///
/// # Example
///
/// ```
/// use login_manager::{LoginThrottle, MemoryThrottleStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> login_manager::Result<()> {
/// let store = MemoryThrottleStore::new().with_capacity_limit(10_000);
/// let throttle = LoginThrottle::new(store.clone());
/// throttle.record_failure("alice", None).await?;
/// assert_eq!(store.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryThrottleStore {
    inner: Arc<Mutex<MemoryState>>,
}

/// One open (or expired, not yet purged) window in the memory store.
struct MemoryEntry {
    count: u32,
    ends_at: Instant,
    /// Which window of this key this is, to tell its queue entry from stale ones.
    generation: u64,
}

/// A window's place in its queue: the key and the generation it was opened with.
type Queued = (Arc<str>, u64);

struct MemoryState {
    capacity_limit: usize,
    /// `Arc<str>` keys are shared with the queues, so each key's bytes are stored once.
    map: HashMap<Arc<str>, MemoryEntry>,
    /// One queue per window length, each in the order its windows were opened — which, for
    /// one length, is also the order in which they end. An element is live while the map
    /// holds the same key with the same generation, and stale otherwise (reset or reopened).
    /// Per length, so that long windows (a year-long device registration) never sit in front
    /// of short ones and are evicted last, not first.
    queues: BTreeMap<Duration, VecDeque<Queued>>,
    /// Elements in all queues, live or stale.
    queued: usize,
    next_generation: u64,
}

impl MemoryState {
    fn new(capacity_limit: usize) -> Self {
        Self {
            capacity_limit,
            map: HashMap::new(),
            queues: BTreeMap::new(),
            queued: 0,
            next_generation: 0,
        }
    }

    /// Whether a queue element still stands for the window the map holds.
    fn is_live(map: &HashMap<Arc<str>, MemoryEntry>, key: &str, generation: u64) -> bool {
        map.get(key).is_some_and(|e| e.generation == generation)
    }

    /// Pops stale elements off the queue fronts, and up to `PURGE_BATCH` expired windows.
    fn purge_front(&mut self, now: Instant) {
        let mut purged = 0;
        for queue in self.queues.values_mut() {
            while let Some((key, generation)) = queue.front() {
                match self.map.get(&**key) {
                    Some(e) if e.generation == *generation => {
                        if e.ends_at > now || purged == PURGE_BATCH {
                            break;
                        }
                        self.map.remove(&**key);
                        purged += 1;
                    }
                    // Stale: this window was reset or replaced; dropping it is free.
                    _ => {}
                }
                queue.pop_front();
                self.queued -= 1;
            }
        }
        self.queues.retain(|_, queue| !queue.is_empty());
    }

    /// Evicts the live window that ends soonest (the earliest-ending front of the queues);
    /// false when there is none.
    fn evict_one(&mut self) -> bool {
        let mut soonest: Option<(Duration, Instant)> = None;
        for (length, queue) in &mut self.queues {
            while let Some((key, generation)) = queue.front() {
                if let Some(e) = self.map.get(&**key).filter(|e| e.generation == *generation) {
                    if soonest.is_none_or(|(_, ends_at)| e.ends_at < ends_at) {
                        soonest = Some((*length, e.ends_at));
                    }
                    break;
                }
                queue.pop_front();
                self.queued -= 1;
            }
        }
        let Some((length, _)) = soonest else {
            return false;
        };
        if let Some((key, _)) = self.queues.get_mut(&length).and_then(VecDeque::pop_front) {
            self.queued -= 1;
            self.map.remove(&*key);
        }
        true
    }

    /// Drops stale queue elements once they outnumber the live ones. Runs after at least
    /// `map.len()` stale elements accumulated, so it costs O(1) amortized per write.
    fn compact_if_needed(&mut self) {
        if self.queued > 2 * self.map.len() + 64 {
            let map = &self.map;
            for queue in self.queues.values_mut() {
                queue.retain(|(key, generation)| Self::is_live(map, key, *generation));
            }
            self.queues.retain(|_, queue| !queue.is_empty());
            self.queued = self.queues.values().map(VecDeque::len).sum();
        }
    }

    fn record_failure(&mut self, key: &str, window: Duration, now: Instant) -> ThrottleEntry {
        let window = window.min(MAX_MEMORY_WINDOW);
        self.purge_front(now);
        if let Some(e) = self.map.get_mut(key) {
            if e.ends_at > now {
                e.count = e.count.saturating_add(1);
                return ThrottleEntry {
                    count: e.count,
                    expires_in: e.ends_at - now,
                };
            }
        }
        // Open a new window. An expired entry for this key is replaced in place (its queue
        // element becomes stale); a new key may need room. A loop, not one eviction: the
        // limit may have been lowered below the current size.
        if !self.map.contains_key(key) {
            while self.map.len() >= self.capacity_limit && self.evict_one() {}
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let key: Arc<str> = Arc::from(key);
        self.map.insert(
            Arc::clone(&key),
            MemoryEntry {
                count: 1,
                ends_at: now + window,
                generation,
            },
        );
        self.queues
            .entry(window)
            .or_default()
            .push_back((key, generation));
        self.queued += 1;
        self.compact_if_needed();
        ThrottleEntry {
            count: 1,
            expires_in: window,
        }
    }
}

impl MemoryThrottleStore {
    /// An empty store tracking at most 100 000 keys.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(MemoryState::new(DEFAULT_CAPACITY_LIMIT))),
        }
    }

    /// Sets the maximum number of keys tracked at once (default 100 000). Applies to every
    /// clone of this store; when lowered below the current size, the excess is evicted on the
    /// next writes.
    ///
    /// # Panics
    ///
    /// If `limit` is 0: such a store could never lock anything.
    pub fn with_capacity_limit(self, limit: usize) -> Self {
        assert!(
            limit > 0,
            "MemoryThrottleStore capacity limit must be at least 1"
        );
        self.state().capacity_limit = limit;
        self
    }

    /// The maximum number of keys tracked at once.
    pub fn capacity_limit(&self) -> usize {
        self.state().capacity_limit
    }

    /// The number of keys currently tracked, including expired windows not yet purged.
    /// Never more than [`capacity_limit`](Self::capacity_limit) after a write.
    pub fn len(&self) -> usize {
        self.state().map.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.state().map.is_empty()
    }

    fn state(&self) -> MutexGuard<'_, MemoryState> {
        // Nothing inside the lock can panic halfway through an update that matters for
        // security, so a poisoned lock still holds usable state: keep throttling.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryThrottleStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryThrottleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryThrottleStore")
            .field("len", &state.map.len())
            .field("capacity_limit", &state.capacity_limit)
            .finish()
    }
}

#[async_trait]
impl ThrottleStore for MemoryThrottleStore {
    async fn failures(&self, key: &str) -> Result<Option<ThrottleEntry>> {
        let now = Instant::now();
        let state = self.state();
        Ok(state
            .map
            .get(key)
            .filter(|e| e.ends_at > now)
            .map(|e| ThrottleEntry {
                count: e.count,
                expires_in: e.ends_at - now,
            }))
    }

    async fn record_failure(&self, key: &str, window: Duration) -> Result<ThrottleEntry> {
        let now = Instant::now();
        Ok(self.state().record_failure(key, window, now))
    }

    async fn reset(&self, key: &str) -> Result<()> {
        let mut state = self.state();
        if state.map.remove(key).is_some() {
            state.compact_if_needed();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_stays_bounded_under_reset_churn() {
        let mut state = MemoryState::new(10);
        let now = Instant::now();
        for i in 0..10_000 {
            state.record_failure(&format!("k{}", i % 3), Duration::from_secs(60), now);
            state.map.remove(format!("k{}", i % 3).as_str());
            state.compact_if_needed();
            assert!(state.queued <= 2 * state.map.len() + 65);
        }
    }

    #[test]
    fn expired_windows_are_purged_before_live_ones_are_evicted() {
        let mut state = MemoryState::new(3);
        let t0 = Instant::now();
        state.record_failure("short", Duration::from_secs(1), t0);
        state.record_failure("a", Duration::from_secs(60), t0);
        state.record_failure("b", Duration::from_secs(60), t0);
        state.record_failure("c", Duration::from_secs(60), t0 + Duration::from_secs(2));
        assert!(!state.map.contains_key("short"));
        assert!(["a", "b", "c"].iter().all(|k| state.map.contains_key(*k)));
    }

    /// Device registrations live a year; a spray of short windows must evict other short
    /// windows first, never a long one opened earlier (one queue would evict it first).
    #[test]
    fn long_windows_are_evicted_after_the_short_ones_that_end_sooner() {
        let mut state = MemoryState::new(3);
        let t0 = Instant::now();
        let year = Duration::from_secs(365 * 24 * 60 * 60);
        state.record_failure("device", year, t0);
        for i in 0..100 {
            let key = format!("spray{i}");
            state.record_failure(&key, Duration::from_secs(900), t0 + Duration::from_secs(i));
            assert!(
                state.map.contains_key("device"),
                "evicted after {i} sprayed keys"
            );
            assert!(state.map.len() <= 3);
        }
        // Expired short windows behind a live long one are still purged.
        state.record_failure(
            "late",
            Duration::from_secs(900),
            t0 + Duration::from_secs(5000),
        );
        assert!(state.map.contains_key("device") && state.map.contains_key("late"));
    }
}
