//! Restart delays: exponential, capped, with jitter so sidecars that died together do not
//! all come back in the same instant.

use std::time::Duration;

use super::spec::RestartPolicy;

/// A small xorshift generator; jitter needs spread, not cryptographic quality.
#[derive(Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and the process id.
    pub(crate) fn new() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    /// A number in [0, 1).
    fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The delay before restart number `attempt` (1 for the first).
pub(crate) fn delay(policy: &RestartPolicy, attempt: u32, jitter: &mut Jitter) -> Duration {
    let exp = attempt.saturating_sub(1).min(30) as i32;
    let base = policy.initial.as_secs_f64() * 2f64.powi(exp);
    let capped = base.min(policy.max.as_secs_f64());
    let spread = policy.jitter.clamp(0.0, 1.0);
    let factor = 1.0 + spread * (2.0 * jitter.next() - 1.0);
    Duration::from_secs_f64((capped * factor).min(policy.max.as_secs_f64()).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_jittered() {
        let p = RestartPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            jitter: 0.2,
            ..RestartPolicy::default()
        };
        let mut j = Jitter::new();
        for _ in 0..200 {
            let d1 = delay(&p, 1, &mut j).as_secs_f64();
            assert!((0.08..=0.12).contains(&d1), "{d1}");
            let d3 = delay(&p, 3, &mut j).as_secs_f64();
            assert!((0.32..=0.48).contains(&d3), "{d3}");
            let d20 = delay(&p, 20, &mut j).as_secs_f64();
            assert!((1.6..=2.0).contains(&d20), "{d20}");
        }
        let no_jitter = RestartPolicy { jitter: 0.0, ..p };
        assert_eq!(delay(&no_jitter, 2, &mut j), Duration::from_millis(200));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.insert(delay(&p, 1, &mut j).as_micros());
        }
        assert!(seen.len() > 10, "jitter spreads the delays");
    }
}
