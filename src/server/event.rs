//! A one-shot, shard-local event that any number of tasks can wait for (used for "this shard is
//! draining"). Waiters register in a slab, so a waiter polled many times holds one slot, and a
//! dropped waiter frees its slot: the list is bounded by the number of live waiters.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// An event that is set once and stays set.
#[derive(Debug, Default)]
pub struct LocalEvent {
    set: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl LocalEvent {
    /// Sets the event and wakes every waiter.
    pub fn set(&self) {
        self.set.set(true);
        for waker in self.waiters.borrow_mut().drain() {
            waker.wake();
        }
    }

    /// Has the event been set?
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Completes once the event is set.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            event: self,
            slot: None,
        }
    }
}

/// Future returned by [`LocalEvent::wait`].
#[derive(Debug)]
pub struct Wait<'a> {
    event: &'a LocalEvent,
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.event.is_set() {
            self.slot = None;
            return Poll::Ready(());
        }
        let mut waiters = self.event.waiters.borrow_mut();
        match self.slot {
            Some(slot) if waiters.contains(slot) => waiters[slot].clone_from(context.waker()),
            _ => {
                let slot = waiters.insert(context.waker().clone());
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.event.waiters.borrow_mut().try_remove(slot);
        }
    }
}
