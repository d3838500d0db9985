//! A session's command queue: bounded, many senders, one receiver, and small.
//! tokio's mpsc costs about 1 KB a channel (cache-padded halves and a first
//! block of 32 slots); 10,000 idle devices each hold one, so this one is a
//! mutex-guarded deque and two `Notify`s, about 150 bytes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

struct Inner<T> {
    queue: Mutex<VecDeque<T>>,
    capacity: usize,
    /// Something to receive, or the last sender is gone.
    to_receiver: Notify,
    /// Room in the queue, or the receiver is gone.
    to_senders: Notify,
    senders: AtomicUsize,
    receiver_gone: AtomicBool,
}

impl<T> Inner<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        // A panic while holding the lock leaves a deque that is still whole.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct Sender<T>(Arc<Inner<T>>);
pub struct Receiver<T>(Arc<Inner<T>>);

/// The receiver is gone (or, for `try_send`, the queue is full); the value comes back.
#[derive(Debug)]
pub struct NotSent<T>(pub T);

pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        queue: Mutex::new(VecDeque::new()),
        capacity: capacity.max(1),
        to_receiver: Notify::new(),
        to_senders: Notify::new(),
        senders: AtomicUsize::new(1),
        receiver_gone: AtomicBool::new(false),
    });
    (Sender(inner.clone()), Receiver(inner))
}

impl<T> Sender<T> {
    /// Queues `value`, waiting while the queue is full.
    pub async fn send(&self, value: T) -> Result<(), NotSent<T>> {
        let mut value = value;
        loop {
            let room = self.0.to_senders.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(NotSent(back)) if self.is_closed() => return Err(NotSent(back)),
                Err(NotSent(back)) => value = back,
            }
            room.await;
        }
    }

    /// Queues `value` if there is room now.
    pub fn try_send(&self, value: T) -> Result<(), NotSent<T>> {
        if self.is_closed() {
            return Err(NotSent(value));
        }
        let mut queue = self.0.lock();
        if queue.len() >= self.0.capacity {
            return Err(NotSent(value));
        }
        queue.push_back(value);
        drop(queue);
        self.0.to_receiver.notify_one();
        Ok(())
    }

    /// The receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.0.receiver_gone.load(Ordering::Acquire)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::AcqRel);
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.to_receiver.notify_one();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("command_queue::Sender")
    }
}

impl<T> Receiver<T> {
    /// The next value; `None` once every sender is gone and the queue is empty.
    /// Cancel-safe: dropped before it completes, nothing is lost.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            let wake = self.0.to_receiver.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            if let Some(value) = self.0.lock().pop_front() {
                self.0.to_senders.notify_waiters();
                return Some(value);
            }
            if self.0.senders.load(Ordering::Acquire) == 0 {
                return None;
            }
            wake.await;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.receiver_gone.store(true, Ordering::Release);
        self.0.to_senders.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn values_arrive_in_order_and_none_after_the_last_sender() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        tx.send(1).await.unwrap();
        tx2.try_send(2).unwrap();
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        drop(tx);
        tx2.send(3).await.unwrap();
        drop(tx2);
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_full_queue_makes_send_wait_and_try_send_fail() {
        let (tx, mut rx) = channel(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(tx.try_send(3).is_err());
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(3).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no room: the sender waits");
        assert_eq!(rx.recv().await, Some(1));
        assert!(waiting.await.unwrap());
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
    }

    #[tokio::test]
    async fn a_gone_receiver_refuses_and_wakes_waiting_senders() {
        let (tx, rx) = channel(1);
        tx.try_send(1).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await.is_err() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert!(
            waiting.await.unwrap(),
            "the waiting send fails once the receiver is gone"
        );
        assert!(tx.is_closed());
        assert!(tx.try_send(3).is_err());
    }

    #[tokio::test]
    async fn a_recv_dropped_in_a_select_loses_nothing() {
        let (tx, mut rx) = channel(4);
        for round in 0..100 {
            tokio::select! {
                biased;
                _ = std::future::ready(()), if round % 2 == 0 => {}
                v = rx.recv() => assert_eq!(v, Some(round)),
            }
            if round % 2 == 0 {
                tx.try_send(round + 1).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_receiver_waiting_wakes_for_a_value_from_another_task() {
        let (tx, mut rx) = channel(4);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send("hi").await.unwrap();
        });
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap(),
            Some("hi")
        );
        sender.await.unwrap();
    }
}
