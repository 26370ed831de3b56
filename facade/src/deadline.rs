//! A lazily re-armed deadline for the fast path: moving the deadline later costs no timer
//! operation (the timer, when it fires early, re-arms itself for the new deadline), so a
//! connection pays for its timer about once per timeout period rather than once per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// One connection's deadline.
#[derive(Debug)]
pub(crate) struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
    /// When the sleep is set to fire.
    armed: Instant,
    /// The deadline itself.
    at: Instant,
}

impl Default for Deadline {
    fn default() -> Self {
        let now = Instant::now();
        Deadline {
            sleep: None,
            armed: now,
            at: now,
        }
    }
}

impl Deadline {
    /// Sets the deadline (re-arming the timer only when it moves earlier).
    pub(crate) fn set(&mut self, at: Instant) {
        self.at = at;
        if let Some(s) = &mut self.sleep {
            if at < self.armed {
                s.as_mut().reset(at);
                self.armed = at;
            }
        }
    }

    /// Sets the deadline `after` from now.
    pub(crate) fn after(&mut self, after: std::time::Duration) {
        self.set(Instant::now() + after);
    }

    /// Ready once the deadline has passed.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let at = self.at;
            let sleep = match &mut self.sleep {
                Some(s) => s,
                None => {
                    self.armed = at;
                    self.sleep.insert(Box::pin(tokio::time::sleep_until(at)))
                }
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.armed >= self.at {
                return Poll::Ready(());
            }
            // The deadline moved later since the timer was armed.
            self.armed = self.at;
            sleep.as_mut().reset(self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_latest_deadline() {
        let mut d = Deadline::default();
        d.after(Duration::from_millis(100));
        let start = Instant::now();
        // Poll once to arm, then move the deadline later twice.
        assert!(std::future::poll_fn(|cx| Poll::Ready(d.poll_expired(cx)))
            .await
            .is_pending());
        d.set(start + Duration::from_millis(300));
        d.set(start + Duration::from_millis(500));
        std::future::poll_fn(|cx| d.poll_expired(cx)).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(500));
        // Moving it earlier than armed takes effect too.
        d.set(Instant::now() + Duration::from_secs(60));
        assert!(std::future::poll_fn(|cx| Poll::Ready(d.poll_expired(cx)))
            .await
            .is_pending());
        let t = Instant::now();
        d.set(t + Duration::from_millis(10));
        std::future::poll_fn(|cx| d.poll_expired(cx)).await;
        assert_eq!(Instant::now() - t, Duration::from_millis(10));
    }
}
