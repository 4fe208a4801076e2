//! Retry policy: exponential backoff with full jitter and a cap; errors are retryable unless
//! they carry [`Fatal`] (bad configuration, authentication, unsupported schema, ...).

use std::time::Duration;

use rand::Rng;

/// Marks an error that retrying cannot fix.
#[derive(Debug)]
pub struct Fatal(pub String);
impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Fatal {}

pub fn fatal(msg: impl Into<String>) -> anyhow::Error {
    Fatal(msg.into()).into()
}

pub fn is_fatal(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Fatal>())
}

pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }
    /// Next delay: uniform in [base/2, min(cap, base * 2^attempt)].
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        let hi = exp.min(self.cap);
        let lo = (self.base / 2).min(hi);
        self.attempt = self.attempt.saturating_add(1);
        let span = hi.as_secs_f64() - lo.as_secs_f64();
        Duration::from_secs_f64(lo.as_secs_f64() + rand::thread_rng().gen::<f64>() * span)
    }
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        let e = fatal("x").context("y");
        assert!(is_fatal(&e));
        assert!(!is_fatal(&anyhow::anyhow!("z")));
    }
}
