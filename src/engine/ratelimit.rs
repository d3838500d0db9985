//! "At most one per interval": for warnings and events a device can trigger as
//! often as it likes (a bad frame, a wrong token, a refused connection), so the
//! operator's screen and stderr get one line a second with a count, not a flood.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when one may be reported now, `n` being how many were held back
    /// since the last report; `None` (and counted) otherwise.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// " (N more since the last report)", or nothing.
pub fn more(suppressed: u64) -> String {
    match suppressed {
        0 => String::new(),
        n => format!(" ({n} more since the last report)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_with_the_count_of_the_rest() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(Duration::from_secs(1));
        assert_eq!(limit.allow(t0), Some(0));
        for i in 1..=99 {
            assert_eq!(limit.allow(t0 + Duration::from_millis(i * 10 - 5)), None);
        }
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), Some(99));
        assert_eq!(limit.allow(t0 + Duration::from_secs(5)), Some(0));
        assert_eq!(more(0), "");
        assert_eq!(more(3), " (3 more since the last report)");
    }
}
