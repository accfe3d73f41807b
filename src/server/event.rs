//! Shard-local wake-ups for tasks that wait on each other: [`LocalNotify`] (something changed;
//! wake every waiter) and [`LocalEvent`] (a one-way switch, e.g. "this shard is draining").
//!
//! Waiters register in a slab, so a waiter polled many times holds one slot, and a dropped waiter
//! frees its slot: the list is bounded by the number of live waiters.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// Wakes every task waiting in [`LocalNotify::notified`] each time it is notified.
#[derive(Debug, Default)]
pub struct LocalNotify {
    generation: Cell<u64>,
    /// Each waiter's waker, with the generation it waits on: a slot freed by `notify_all` and
    /// reused by a newer waiter is never mistaken for an older waiter's.
    waiters: RefCell<Slab<(u64, Waker)>>,
}

impl LocalNotify {
    /// Wakes every current waiter.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        for (_, waker) in self.waiters.borrow_mut().drain() {
            waker.wake();
        }
    }

    /// Completes at the next [`LocalNotify::notify_all`] after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
            slot: None,
        }
    }
}

/// Future returned by [`LocalNotify::notified`].
#[derive(Debug)]
pub struct Notified<'a> {
    notify: &'a LocalNotify,
    generation: u64,
    slot: Option<usize>,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            self.slot = None;
            return Poll::Ready(());
        }
        let generation = self.generation;
        let mut waiters = self.notify.waiters.borrow_mut();
        match self.slot.and_then(|slot| waiters.get_mut(slot)) {
            Some((owner, waker)) if *owner == generation => waker.clone_from(context.waker()),
            _ => {
                let slot = waiters.insert((generation, context.waker().clone()));
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut waiters = self.notify.waiters.borrow_mut();
            if waiters
                .get(slot)
                .is_some_and(|(owner, _)| *owner == self.generation)
            {
                waiters.remove(slot);
            }
        }
    }
}

/// An event that is set once and stays set.
#[derive(Debug, Default)]
pub struct LocalEvent {
    set: Cell<bool>,
    notify: LocalNotify,
}

impl LocalEvent {
    /// Sets the event and wakes every waiter.
    pub fn set(&self) {
        self.set.set(true);
        self.notify.notify_all();
    }

    /// Has the event been set?
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Completes once the event is set.
    pub async fn wait(&self) {
        // Bounded: the event is set once; each round is a wake-up by `set`.
        while !self.is_set() {
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn poll_once(future: Pin<&mut impl Future<Output = ()>>) -> (bool, Arc<Flag>) {
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let ready = future.poll(&mut Context::from_waker(&waker)).is_ready();
        (ready, flag)
    }

    #[test]
    fn notify_wakes_waiters_and_stale_slots_are_not_removed_by_old_waiters() {
        let notify = LocalNotify::default();
        let mut first = Box::pin(notify.notified());
        let (ready, woken) = poll_once(first.as_mut());
        assert!(!ready);
        notify.notify_all();
        assert!(woken.0.load(std::sync::atomic::Ordering::Relaxed));
        // A newer waiter takes the freed slot; dropping the old one must not unregister it.
        let mut second = Box::pin(notify.notified());
        let (ready, second_woken) = poll_once(second.as_mut());
        assert!(!ready);
        drop(first);
        notify.notify_all();
        assert!(second_woken.0.load(std::sync::atomic::Ordering::Relaxed));
        assert!(poll_once(second.as_mut()).0);
        assert!(notify.waiters.borrow().is_empty());
    }
}
