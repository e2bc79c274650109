//! Per-key request counting in fixed one-minute windows.
//!
//! The table has a fixed size and no heap, so the extension can keep it in shared memory: the
//! counters of a request survive that request's rollback (a 429 rolls its transaction back), and
//! every backend sees the same counts. Keys are 128-bit ids (API key UUIDs); 0 marks a free slot.

/// The outcome of one request against its key's limit; everything the response headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// `X-RateLimit-Limit`
    pub limit: u32,
    /// `X-RateLimit-Remaining` after this request
    pub remaining: u32,
    /// `X-RateLimit-Reset`: Unix time (seconds) when the window ends
    pub reset_at: i64,
    /// `Retry-After` in seconds (meaningful when not allowed)
    pub retry_after: i64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Slot {
    pub key: u128,
    pub window_start: i64,
    pub count: u32,
    /// Unix time of the key's last request (the `last_used_at` of `api_keys`).
    pub last_used: i64,
}

pub const WINDOW_SECONDS: i64 = 60;
/// How many slots past its home slot a key may land (and how far eviction looks).
const PROBE: usize = 32;

#[derive(Debug, Clone, Copy)]
pub struct RateTable<const N: usize> {
    slots: [Slot; N],
}

impl<const N: usize> Default for RateTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RateTable<N> {
    pub const fn new() -> Self {
        RateTable {
            slots: [Slot { key: 0, window_start: 0, count: 0, last_used: 0 }; N],
        }
    }

    fn home(key: u128) -> usize {
        // keys are UUIDs; mix all bits (v7 UUIDs share their leading time bits)
        let h = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
        (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize % N
    }

    /// The slot of `key`, claiming a free one or evicting the least recently used of its probe
    /// range when the key is new.
    fn slot_mut(&mut self, key: u128) -> &mut Slot {
        let home = Self::home(key);
        let mut victim = home;
        for i in 0..PROBE.min(N) {
            let at = (home + i) % N;
            let s = self.slots[at];
            if s.key == key {
                return &mut self.slots[at];
            }
            if s.key == 0 {
                victim = at;
                break;
            }
            if s.last_used < self.slots[victim].last_used {
                victim = at;
            }
        }
        self.slots[victim] = Slot { key, ..Slot::default() };
        &mut self.slots[victim]
    }

    /// Counts one request of `key` at Unix time `now` against `limit` requests per minute.
    /// A refused request is not counted.
    pub fn hit(&mut self, key: u128, now: i64, limit: u32) -> Decision {
        let slot = self.slot_mut(key);
        let window_start = now - now.rem_euclid(WINDOW_SECONDS);
        if slot.window_start != window_start {
            slot.window_start = window_start;
            slot.count = 0;
        }
        slot.last_used = now;
        let reset_at = window_start + WINDOW_SECONDS;
        let allowed = slot.count < limit;
        if allowed {
            slot.count += 1;
        }
        Decision {
            allowed,
            limit,
            remaining: limit.saturating_sub(slot.count),
            reset_at,
            retry_after: (reset_at - now).max(1),
        }
    }

    /// `(key, last_used)` of every key seen since the table was created (or its slot reused).
    pub fn last_used(&self) -> impl Iterator<Item = (u128, i64)> + '_ {
        self.slots.iter().filter(|s| s.key != 0).map(|s| (s.key, s.last_used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hundred_and_first_request_is_refused_until_the_window_ends() {
        let mut t = RateTable::<64>::new();
        let now = 1_699_999_990; // 10 s into the minute that starts at 1_699_999_980
        for i in 1..=100 {
            let d = t.hit(7, now, 100);
            assert!(d.allowed);
            assert_eq!(d.remaining, 100 - i);
            assert_eq!(d.reset_at, 1_700_000_040);
        }
        let d = t.hit(7, now + 5, 100);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, 45);
        // the refused request did not count; the next window starts fresh
        let d = t.hit(7, 1_700_000_040, 100);
        assert!(d.allowed);
        assert_eq!(d.remaining, 99);
        assert_eq!(d.reset_at, 1_700_000_100);
    }

    #[test]
    fn keys_are_counted_apart() {
        let mut t = RateTable::<64>::new();
        for _ in 0..3 {
            t.hit(1, 0, 3);
        }
        assert!(!t.hit(1, 0, 3).allowed);
        assert!(t.hit(2, 0, 3).allowed);
        assert_eq!(t.last_used().count(), 2);
    }

    #[test]
    fn full_table_evicts_the_least_recently_used() {
        let mut t = RateTable::<4>::new();
        for k in 1..=4u128 {
            t.hit(k, k as i64, 10);
        }
        t.hit(5, 10, 10); // evicts key 1 (last used at 1)
        let keys: Vec<u128> = t.last_used().map(|(k, _)| k).collect();
        assert!(!keys.contains(&1));
        assert!(keys.contains(&5));
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn many_uuid_like_keys_keep_exact_counts() {
        let mut t = RateTable::<1024>::new();
        let keys: Vec<u128> = (0..500u128).map(|i| (0x0190_0000_0000_7000u128 << 64) | (i * 7919 + 1)).collect();
        for _ in 0..3 {
            for &k in &keys {
                t.hit(k, 100, 1000);
            }
        }
        for &k in &keys {
            assert_eq!(t.hit(k, 100, 1000).remaining, 1000 - 4);
        }
    }
}
