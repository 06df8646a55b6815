//! A client connection and its owned upstream connection, polled in one task, each with a
//! waker of its own (as `FuturesUnordered` does for its futures), so a poll of the task polls
//! only the side that was woken. The two wake each other all the time: a request handed to
//! the upstream connection wakes it, an answer handed back wakes the client side. Woken
//! through the task's own waker, each of those would cost a round of polls of both sides that
//! finds nothing to do, about one per request. Here a wake that comes while the task is
//! polling is only noted, and the side is polled again in the same poll of the task.
//!
//! The order is fixed: upstream, client, upstream. An answer that came reaches its request,
//! and a request just handed over goes out, in the poll that made them ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Rounds one poll of the task may take while wakes keep coming in during it. A side that
/// wakes itself each time it is polled (a future that yields) is then left to the scheduler:
/// the task is woken and yields. (tokio's cooperative budget defers its wakes until the poll
/// ends, so they reach the task's waker.)
const MAX_ROUNDS: usize = 4;

/// What the task and both sides' wakers share.
#[derive(Debug, Default)]
struct Task {
    /// The task is polling: a wake now is seen by its loop, and it need not be scheduled.
    polling: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// One side's waker: notes that the side is to be polled, and wakes the task unless the task
/// is polling already.
#[derive(Debug)]
struct Side {
    woken: AtomicBool,
    task: Arc<Task>,
}

impl Wake for Side {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst on both sides: either the task's loop sees `woken`, or this sees that the
        // task stopped polling and wakes it.
        self.woken.store(true, Ordering::SeqCst);
        if !self.task.polling.load(Ordering::SeqCst) {
            let waker = self
                .task
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(waker) = waker.as_ref() {
                waker.wake_by_ref();
            }
        }
    }
}

/// The two sides of a client connection's task. Both start woken.
#[derive(Debug)]
pub struct Pair {
    task: Arc<Task>,
    upstream: (Arc<Side>, Waker),
    client: (Arc<Side>, Waker),
}

impl Default for Pair {
    fn default() -> Self {
        let task = Arc::new(Task::default());
        let side = || {
            let side = Arc::new(Side {
                woken: AtomicBool::new(true),
                task: task.clone(),
            });
            let waker = Waker::from(side.clone());
            (side, waker)
        };
        Pair {
            upstream: side(),
            client: side(),
            task,
        }
    }
}

impl Pair {
    /// Polls the woken sides, upstream, client, upstream, with their own wakers, again while
    /// a wake came in meanwhile; ready once `client` is.
    pub fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut upstream: impl FnMut(&mut Context<'_>),
        mut client: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        {
            let mut waker = self
                .task
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        let (up, up_waker) = &self.upstream;
        let (down, down_waker) = &self.client;
        let mut poll_upstream = || {
            if up.woken.swap(false, Ordering::SeqCst) {
                upstream(&mut Context::from_waker(up_waker));
            }
        };
        for _ in 0..MAX_ROUNDS {
            self.task.polling.store(true, Ordering::SeqCst);
            poll_upstream();
            if down.woken.swap(false, Ordering::SeqCst)
                && let Poll::Ready(done) = client(&mut Context::from_waker(down_waker))
            {
                self.task.polling.store(false, Ordering::SeqCst);
                return Poll::Ready(done);
            }
            poll_upstream();
            self.task.polling.store(false, Ordering::SeqCst);
            if !up.woken.load(Ordering::SeqCst) && !down.woken.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        // Still being woken: let the scheduler run the others first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A task waker that counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    #[test]
    fn only_woken_sides_are_polled_and_an_outside_wake_schedules_the_task() {
        let pair = Pair::default();
        let (wakes, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let (mut ups, mut clients) = (0, 0);
        let mut held: Option<Waker> = None;
        // The first poll polls both (both start woken): upstream twice at most, once here.
        let polled = pair.poll(
            &mut cx,
            |cx| {
                ups += 1;
                held = Some(cx.waker().clone());
            },
            |_| {
                clients += 1;
                Poll::<()>::Pending
            },
        );
        assert!(polled.is_pending());
        assert_eq!((ups, clients), (1, 1));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);

        // The upstream side's waker fires from outside (its socket became readable): the task
        // is scheduled, and its next poll polls that side only.
        held.take().unwrap().wake();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        let polled = pair.poll(
            &mut cx,
            |_| ups += 1,
            |_| {
                clients += 1;
                Poll::<()>::Pending
            },
        );
        assert!(polled.is_pending());
        assert_eq!((ups, clients), (2, 1));
        // Nothing woken: nothing polled.
        let _ = pair.poll(
            &mut cx,
            |_| ups += 1,
            |_| {
                clients += 1;
                Poll::<()>::Pending
            },
        );
        assert_eq!((ups, clients), (2, 1));
    }

    #[test]
    fn a_wake_during_the_poll_is_served_in_it_without_scheduling_the_task() {
        let pair = Pair::default();
        let (wakes, waker) = task();
        let mut cx = Context::from_waker(&waker);
        // Let the first poll register each side's waker.
        let mut up_waker = None;
        let mut client_waker = None;
        let _ = pair.poll(
            &mut cx,
            |cx| up_waker = Some(cx.waker().clone()),
            |cx| {
                client_waker = Some(cx.waker().clone());
                Poll::<()>::Pending
            },
        );
        let (up_waker, client_waker) = (up_waker.unwrap(), client_waker.unwrap());

        // The client side hands a request over (waking the upstream side), which the second
        // upstream poll sends; the upstream side's answer wakes the client side, which the
        // next round serves.
        client_waker.wake_by_ref();
        let before = wakes.0.load(Ordering::SeqCst);
        let order = std::cell::RefCell::new(Vec::new());
        let mut answered = false;
        let polled = pair.poll(
            &mut cx,
            |_| {
                order.borrow_mut().push("upstream");
                if order.borrow().len() == 2 && !answered {
                    answered = true;
                    client_waker.wake_by_ref();
                }
            },
            |_| {
                order.borrow_mut().push("client");
                if order.borrow().len() == 1 {
                    up_waker.wake_by_ref();
                    Poll::Pending
                } else {
                    Poll::Ready("done")
                }
            },
        );
        assert_eq!(polled, Poll::Ready("done"));
        assert_eq!(*order.borrow(), ["client", "upstream", "client"]);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            before,
            "the wakes within the poll scheduled nothing"
        );
    }

    #[test]
    fn a_side_that_keeps_waking_itself_yields_to_the_scheduler() {
        let pair = Pair::default();
        let (wakes, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let mut polls = 0;
        let polled = pair.poll(
            &mut cx,
            |cx| {
                polls += 1;
                cx.waker().wake_by_ref();
            },
            |_| Poll::<()>::Pending,
        );
        assert!(polled.is_pending());
        assert_eq!(polls, MAX_ROUNDS * 2);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the task yields, woken");
    }
}
