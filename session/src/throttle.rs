//! Warnings a client can cause at will (a cookie that does not open, one
//! too large) would flood the logs under attack: each such warning goes out
//! at most once a second, saying how many like it were held back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One kind of warning's budget.
pub(crate) struct Throttle {
    /// The second in which a warning last went out.
    last: AtomicU64,
    /// Warnings held back since then.
    held: AtomicU64,
}

impl Throttle {
    pub(crate) const fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Whether a warning may go out now; if so, how many were held back
    /// before it.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        self.allow_at(now)
    }

    fn allow_at(&self, second: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if last != second
            && self
                .last
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `tracing::warn!` at most once a second for this call site, with a
/// `held_back` count of the warnings it did not log.
macro_rules! throttled_warn {
    ($($fields:tt)+) => {{
        static THROTTLE: $crate::throttle::Throttle = $crate::throttle::Throttle::new();
        if let Some(held_back) = THROTTLE.allow() {
            tracing::warn!(held_back, $($fields)+);
        }
    }};
}
pub(crate) use throttled_warn;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_a_second_and_a_count_of_the_rest() {
        let throttle = Throttle::new();
        assert_eq!(throttle.allow_at(10), Some(0));
        for _ in 0..999 {
            assert_eq!(throttle.allow_at(10), None);
        }
        assert_eq!(throttle.allow_at(11), Some(999));
        assert_eq!(throttle.allow_at(11), None);
        assert_eq!(throttle.allow_at(12), Some(1));
    }
}
