//! A future that is polled only when its own waker has fired since its last
//! poll, whatever wakes the task it runs in.
//!
//! A connection's task is polled for every read and write of every request.
//! Its watchdog (shutdown and the connection cap, watch channels that every
//! connection shares, and the idle timer) beside it in a `select!` was polled
//! as often, and each poll of a watch channel's wait takes a lock that every
//! connection on every worker writes. Behind `OnWake` the watchdog is polled
//! when one of its own events fires: a few times a connection's life.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pub struct OnWake<F> {
    future: Pin<Box<F>>,
    signal: Arc<Signal>,
    /// `signal` as the waker handed to `future`.
    own_waker: Waker,
    /// The task's waker last handed to `signal`: handed again only when the
    /// task's changes (a compare, no atomic, on every poll).
    task_waker: Option<Waker>,
}

struct Signal {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<F: Future> OnWake<F> {
    pub fn new(future: F) -> Self {
        let signal = Arc::new(Signal {
            // Polled at once, to register its wakers.
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        OnWake {
            future: Box::pin(future),
            own_waker: Waker::from(signal.clone()),
            signal,
            task_waker: None,
        }
    }

    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self
            .task_waker
            .as_ref()
            .is_some_and(|known| known.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            *self.signal.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
            self.task_waker = Some(waker);
        }
        // Cleared before the poll: a wake from here on is seen by this poll
        // or sets the flag for the next.
        if !self.signal.woken.load(Ordering::Acquire)
            || !self.signal.woken.swap(false, Ordering::AcqRel)
        {
            return Poll::Pending;
        }
        self.future
            .as_mut()
            .poll(&mut Context::from_waker(&self.own_waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A task's waker that counts its wakes.
    struct CountWakes(Arc<AtomicUsize>);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Counts its polls; ready once `open` is set, and wakes its waker when told.
    struct Gate {
        polls: Arc<AtomicUsize>,
        open: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Gate {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.open.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_only_after_its_own_wake() {
        let polls = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(Mutex::new(None::<Waker>));
        let mut gate = OnWake::new(Gate {
            polls: polls.clone(),
            open: open.clone(),
            waker: waker.clone(),
        });
        let task_woken = Arc::new(AtomicUsize::new(0));
        let task = Waker::from(Arc::new(CountWakes(task_woken.clone())));
        let mut cx = Context::from_waker(&task);

        // The first poll reaches the inner future; more polls of the task
        // (its connection's reads and writes) do not.
        assert!(gate.poll(&mut cx).is_pending());
        for _ in 0..100 {
            assert!(gate.poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);

        // Its own wake wakes the task, and the next poll reaches it.
        let inner = waker.lock().unwrap().clone().unwrap();
        inner.wake_by_ref();
        assert_eq!(task_woken.load(Ordering::SeqCst), 1);
        assert!(gate.poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);

        // A wake that comes with the event it signals: ready at the next poll.
        open.store(true, Ordering::SeqCst);
        inner.wake();
        assert!(gate.poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_new_task_waker_is_the_one_woken() {
        let open = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(Mutex::new(None::<Waker>));
        let mut gate = OnWake::new(Gate {
            polls: Arc::new(AtomicUsize::new(0)),
            open,
            waker: waker.clone(),
        });
        let (first, second) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let first_waker = Waker::from(Arc::new(CountWakes(first.clone())));
        let second_waker = Waker::from(Arc::new(CountWakes(second.clone())));
        assert!(gate
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending());
        assert!(gate
            .poll(&mut Context::from_waker(&second_waker))
            .is_pending());
        waker.lock().unwrap().clone().unwrap().wake();
        assert_eq!(
            (first.load(Ordering::SeqCst), second.load(Ordering::SeqCst)),
            (0, 1)
        );
    }
}
