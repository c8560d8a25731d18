//! The response-time floor of the login form: a refused attempt answers no sooner than
//! a typical password check, whatever the reason (wrong password, unknown user,
//! missing fields, throttled), so the timing tells nothing that the page does not
//! (after rauthy's `login_delay`).
//!
//! The floor follows the measured time of recent credential checks (a moving average),
//! so it adapts to the hardware and the load without a setting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A ceiling on the floor: one pathological sample (a stalled database) must not keep
/// every refusal waiting.
const MAX_FLOOR: Duration = Duration::from_secs(3);

/// The moving average of credential checks, in nanoseconds (0 before the first).
#[derive(Debug, Default)]
pub struct LoginDelay {
    typical_check_nanos: AtomicU64,
}

impl LoginDelay {
    /// Records how long one credential check took (lookup and password hash).
    pub fn record_check(&self, took: Duration) {
        let sample = u64::try_from(took.min(MAX_FLOOR).as_nanos()).unwrap_or(u64::MAX);
        // An exponential moving average with weight 1/8: quick to follow the load,
        // steady against a single outlier.
        let _ =
            self.typical_check_nanos
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some(if old == 0 {
                        sample
                    } else {
                        old - old / 8 + sample / 8
                    })
                });
    }

    /// How long a refused attempt takes at least.
    pub fn floor(&self) -> Duration {
        Duration::from_nanos(self.typical_check_nanos.load(Ordering::Relaxed)).min(MAX_FLOOR)
    }

    /// Waits until an attempt that started at `started` has taken at least the floor.
    pub async fn pad(&self, started: Instant) {
        if let Some(rest) = self.floor().checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_follows_recent_checks_and_is_bounded() {
        let delay = LoginDelay::default();
        assert_eq!(delay.floor(), Duration::ZERO);
        delay.record_check(Duration::from_millis(80));
        assert_eq!(delay.floor(), Duration::from_millis(80));
        delay.record_check(Duration::from_millis(160));
        assert_eq!(delay.floor(), Duration::from_millis(90));
        delay.record_check(Duration::from_secs(600));
        assert!(delay.floor() <= MAX_FLOOR);
    }

    #[tokio::test]
    async fn padding_waits_out_the_rest_of_the_floor() {
        let delay = LoginDelay::default();
        delay.record_check(Duration::from_millis(60));
        let started = Instant::now();
        delay.pad(started).await;
        assert!(started.elapsed() >= Duration::from_millis(60));
        // An attempt that already took longer does not wait again.
        let late = Instant::now() - Duration::from_millis(100);
        let before = Instant::now();
        delay.pad(late).await;
        assert!(before.elapsed() < Duration::from_millis(50));
    }
}
