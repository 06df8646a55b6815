//! A deadline moved on every request (the idle and header timeouts of a keep-alive
//! connection, a read's wait) without an operation on tokio's timer wheel each time.
//!
//! The wheel holds one entry per alarm, due no later than the deadline. Moving the deadline
//! later, which is what a new request or a new read does, only notes it; the entry, when it
//! comes due before the deadline, is moved to the deadline then. So a connection serving
//! requests pays a clock read per deadline, and the wheel an insert and a removal once per
//! limit's length instead of once per request (both showed in the gateway's profile: a
//! tenth of its user time went to timers). Moving the deadline earlier moves the entry at
//! once; the entry is made on the first wait (one allocation per connection, none per
//! request).
//!
//! An entry that comes due while nothing waits on the alarm wakes its task once, for
//! nothing; that is the price, at most once per limit's length.
//!
//! What it may touch: its own timer.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use tokio::time::{Instant, Sleep};

/// A deadline, or none, and the timer that watches it.
#[derive(Debug, Default)]
pub struct Alarm {
    at: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

/// The alarm's deadline passed before the future was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired;

impl Alarm {
    pub fn new() -> Alarm {
        Alarm::default()
    }

    /// Goes off at `at` (and not at the deadline before).
    pub fn set(&mut self, at: Instant) {
        self.at = Some(at);
        if let Some(timer) = &mut self.timer
            && timer.deadline() > at
        {
            timer.as_mut().reset(at);
        }
    }

    /// Goes off at no time.
    pub fn clear(&mut self) {
        self.at = None;
    }

    /// The deadline it goes off at.
    pub fn deadline(&self) -> Option<Instant> {
        self.at
    }

    /// `Ready` once the deadline has passed (then the alarm is cleared); never without one.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(at) = self.at else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        loop {
            ready!(timer.as_mut().poll(cx));
            if timer.deadline() >= at {
                self.at = None;
                return Poll::Ready(());
            }
            // Due for an earlier deadline: on to this one.
            timer.as_mut().reset(at);
        }
    }

    /// Waits until the deadline has passed (forever without one).
    pub async fn expired(&mut self) {
        poll_fn(|cx| self.poll_expired(cx)).await
    }

    /// `fut`'s output, unless `at` passes first.
    pub async fn within<F: Future>(&mut self, at: Instant, fut: F) -> Result<F::Output, Expired> {
        self.set(at);
        let mut fut = pin!(fut);
        let done = poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            self.poll_expired(cx).map(|()| Err(Expired))
        })
        .await;
        self.clear();
        done
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn goes_off_at_the_last_deadline_set_when_it_moved_later() {
        let start = Instant::now();
        let mut alarm = Alarm::new();
        alarm.set(start + SECOND);
        // The timer is made, due at 1 s, by a wait that does not reach it.
        let quick = alarm.within(start + SECOND, tokio::time::sleep(SECOND / 2));
        assert_eq!(quick.await, Ok(()));
        alarm.set(start + 3 * SECOND);
        alarm.expired().await;
        assert_eq!(Instant::now() - start, 3 * SECOND);
        assert_eq!(alarm.deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn goes_off_at_once_at_a_deadline_moved_earlier() {
        let start = Instant::now();
        let mut alarm = Alarm::new();
        alarm.set(start + 10 * SECOND);
        let waited = tokio::time::timeout(SECOND, alarm.expired()).await;
        assert!(waited.is_err(), "not due yet");
        alarm.set(start + 2 * SECOND);
        alarm.expired().await;
        assert_eq!(Instant::now() - start, 2 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cleared_alarm_does_not_go_off() {
        let mut alarm = Alarm::new();
        alarm.set(Instant::now() + SECOND);
        alarm.clear();
        let waited = tokio::time::timeout(5 * SECOND, alarm.expired()).await;
        assert!(waited.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn within_gives_the_output_or_expired() {
        let start = Instant::now();
        let mut alarm = Alarm::new();
        let quick = alarm
            .within(start + SECOND, tokio::time::sleep(SECOND / 2))
            .await;
        assert_eq!(quick, Ok(()));
        assert_eq!(alarm.deadline(), None, "cleared after");
        // Many requests, each moving the deadline later: it holds for the last one only.
        for i in 1..=100u32 {
            let at = Instant::now() + SECOND;
            let quick = alarm.within(at, tokio::time::sleep(SECOND / 10)).await;
            assert_eq!(quick, Ok(()), "request {i}");
        }
        let at = Instant::now() + SECOND;
        let slow = alarm.within(at, std::future::pending::<()>()).await;
        assert_eq!(slow, Err(Expired));
        assert_eq!(Instant::now(), at);
    }
}
