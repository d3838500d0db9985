//! The queue from the engine to a front end, bounded by bytes, never by waiting.
//!
//! A front end can be slow or stopped (a stalled pipe, an SSH link that froze);
//! the engine must not wait for it, and memory must not follow the backlog. So
//! sending never blocks: past the byte cap, texts, progress and stats are dropped
//! and counted (texts are in each device's conversation.log all the same), and the
//! receiver hands out one `dropped` event once there is room again. Lifecycle
//! events (connected, file_saved, error, ...) are small and matter, so they get a
//! headroom of their own above the cap; only past that are they dropped too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::event::{Event, EventKind, TextBatch};

/// Extra room kept for lifecycle events above the cap.
const LIFECYCLE_HEADROOM: usize = 16 * 1024 * 1024;

struct Counters {
    cap: usize,
    queued: AtomicUsize,
    dropped_events: AtomicU64,
    dropped_bytes: AtomicU64,
}

#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::UnboundedSender<(Event, usize)>,
    counters: Arc<Counters>,
}

pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<(Event, usize)>,
    counters: Arc<Counters>,
    /// An event received while a `dropped` report went out first.
    held: Option<Event>,
    /// Gathered texts being handed out one `Text` event at a time: the batch's
    /// time, the batch, and the next line.
    expanding: Option<(chrono::DateTime<chrono::Local>, Arc<TextBatch>, usize)>,
}

/// How full a queue is, readable from elsewhere (the metrics).
#[derive(Clone)]
pub struct QueueDepth(Arc<Counters>);

impl QueueDepth {
    /// Bytes of events waiting.
    pub fn bytes(&self) -> usize {
        self.0.queued.load(Ordering::Relaxed)
    }
}

impl EventReceiver {
    pub fn depth(&self) -> QueueDepth {
        QueueDepth(self.counters.clone())
    }
}

/// A queue of at most `cap` bytes of droppable events (plus the lifecycle headroom).
pub fn channel(cap: usize) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters {
        cap,
        queued: AtomicUsize::new(0),
        dropped_events: AtomicU64::new(0),
        dropped_bytes: AtomicU64::new(0),
    });
    (
        EventSender {
            tx,
            counters: counters.clone(),
        },
        EventReceiver {
            rx,
            counters,
            held: None,
            expanding: None,
        },
    )
}

/// Roughly the memory an event holds while queued.
fn cost(kind: &EventKind) -> usize {
    const BASE: usize = 160;
    BASE + match kind {
        EventKind::Text {
            device, text, raw, ..
        } => device.len() + text.len() + raw.as_ref().map_or(0, |r| r.len()),
        EventKind::Texts(batch) => batch.device.len() + batch.text_len() + batch.raw_len() + batch.len() * 4,
        EventKind::Reply {
            command,
            text,
            devices,
            ..
        } => command.len() + text.len() + devices.as_ref().map_or(0, |d| d.len() * 96),
        EventKind::Stats { devices } => devices.len() * 24,
        EventKind::Error { message } => message.len(),
        EventKind::FileFailed { reason, name, .. } => reason.len() + name.len(),
        _ => 0,
    }
}

fn droppable(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Text { .. }
            | EventKind::Texts(_)
            | EventKind::FileProgress { .. }
            | EventKind::Stats { .. }
    )
}

/// Events an event stands for: a gathered batch is one per line.
fn events_in(kind: &EventKind) -> u64 {
    match kind {
        EventKind::Texts(batch) => batch.len() as u64,
        _ => 1,
    }
}

impl EventSender {
    /// Queues an event, or drops and counts it when the queue is full. Never waits.
    pub fn send(&self, event: Event) {
        let c = &self.counters;
        let cost = cost(&event.kind);
        let limit = if droppable(&event.kind) {
            c.cap
        } else {
            c.cap + LIFECYCLE_HEADROOM
        };
        let queued = c.queued.fetch_add(cost, Ordering::AcqRel) + cost;
        if queued > limit {
            c.queued.fetch_sub(cost, Ordering::AcqRel);
            c.dropped_events
                .fetch_add(events_in(&event.kind), Ordering::Relaxed);
            c.dropped_bytes.fetch_add(cost as u64, Ordering::Relaxed);
            return;
        }
        if self.tx.send((event, cost)).is_err() {
            // No front end any more: nothing waits for these bytes.
            c.queued.fetch_sub(cost, Ordering::AcqRel);
        }
    }
}

/// The engine's events to the front end and to any other consumer (the MQTT
/// publisher): each gets its own byte-bounded queue, so a slow or absent broker
/// never costs the screen anything, nor the screen the broker.
#[derive(Clone)]
pub struct Fanout {
    main: EventSender,
    taps: Vec<EventSender>,
}

impl Fanout {
    pub fn new(main: EventSender, taps: Vec<EventSender>) -> Self {
        Self { main, taps }
    }

    pub fn send(&self, event: Event) {
        for tap in &self.taps {
            tap.send(event.clone());
        }
        self.main.send(event);
    }
}

impl EventReceiver {
    /// The next event; gathered texts come out as one `Text` event per line.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending() {
                return Some(event);
            }
            let got = self.rx.recv().await;
            let event = self.take(got)?;
            if let Some(event) = self.expand(event) {
                return Some(event);
            }
        }
    }

    /// For a front end on a plain thread.
    pub fn blocking_recv(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending() {
                return Some(event);
            }
            let got = self.rx.blocking_recv();
            let event = self.take(got)?;
            if let Some(event) = self.expand(event) {
                return Some(event);
            }
        }
    }

    /// For a front end on a plain thread that takes gathered texts as they
    /// are ([`EventKind::Texts`]): a printer writes a batch's lines in one go.
    pub fn blocking_recv_gathered(&mut self) -> Option<Event> {
        if let Some(line) = self.next_line() {
            return Some(line);
        }
        if let Some(event) = self.held.take() {
            return Some(event);
        }
        let got = self.rx.blocking_recv();
        self.take(got)
    }

    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending() {
                return Some(event);
            }
            let got = self.rx.try_recv().ok();
            let event = self.take(got)?;
            if let Some(event) = self.expand(event) {
                return Some(event);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.expanding.is_none() && self.held.is_none() && self.rx.is_empty()
    }

    /// A line of the batch being handed out, else the event held back.
    fn pending(&mut self) -> Option<Event> {
        if let Some(line) = self.next_line() {
            return Some(line);
        }
        let held = self.held.take()?;
        self.expand(held)
    }

    /// The next line of the batch being handed out.
    fn next_line(&mut self) -> Option<Event> {
        let (ts, batch, next) = self.expanding.as_mut()?;
        match batch.event(*next) {
            Some(kind) => {
                *next += 1;
                Some(Event { ts: *ts, kind })
            }
            None => {
                self.expanding = None;
                None
            }
        }
    }

    /// A batch becomes its first line (the rest follow from [`Self::pending`]).
    fn expand(&mut self, event: Event) -> Option<Event> {
        match event.kind {
            EventKind::Texts(batch) => {
                let first = batch.event(0)?;
                self.expanding = Some((event.ts, batch, 1));
                Some(Event {
                    ts: event.ts,
                    kind: first,
                })
            }
            _ => Some(event),
        }
    }

    fn take(&mut self, got: Option<(Event, usize)>) -> Option<Event> {
        let (event, cost) = got?;
        let c = &self.counters;
        let queued = c.queued.fetch_sub(cost, Ordering::AcqRel) - cost;
        // Reported once the backlog has drained to half: then it is news, not noise.
        if queued <= c.cap / 2 && c.dropped_events.load(Ordering::Relaxed) > 0 {
            let events = c.dropped_events.swap(0, Ordering::AcqRel);
            let bytes = c.dropped_bytes.swap(0, Ordering::AcqRel);
            self.held = Some(event);
            return Some(Event::now(EventKind::Dropped { events, bytes }));
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::Direction;

    fn text(n: usize) -> Event {
        Event::now(EventKind::Text {
            conn: 1,
            device: "cam".into(),
            direction: Direction::In,
            text: "x".repeat(n),
            raw: None,
        })
    }

    fn error() -> Event {
        Event::now(EventKind::Error {
            message: "disk".into(),
        })
    }

    #[test]
    fn past_the_cap_texts_are_dropped_counted_and_reported_once() {
        let (tx, mut rx) = channel(10_000);
        for _ in 0..100 {
            tx.send(text(1000));
        }
        tx.send(error()); // lifecycle: has headroom
        let mut got = Vec::new();
        while let Some(e) = rx.try_recv() {
            got.push(e.kind);
        }
        let texts = got.iter().filter(|k| matches!(k, EventKind::Text { .. })).count();
        assert!((5..=10).contains(&texts), "{texts} texts kept under a 10 kB cap");
        assert!(matches!(got.last(), Some(EventKind::Error { .. })));
        let dropped: Vec<_> = got
            .iter()
            .filter_map(|k| match k {
                EventKind::Dropped { events, .. } => Some(*events),
                _ => None,
            })
            .collect();
        assert_eq!(dropped.iter().sum::<u64>() as usize, 100 - texts, "{dropped:?}");
        assert_eq!(dropped.len(), 1, "one report: {dropped:?}");
        assert_eq!(rx.counters.queued.load(Ordering::Relaxed), 0);
    }

    fn batch(lines: &[&str]) -> Event {
        let mut batch = TextBatch::new(3, "cam".into(), Direction::In);
        for line in lines {
            batch.push_from_device(line.as_bytes());
        }
        batch.set_raw(Some(bytes::Bytes::from_static(b"raw bytes")));
        Event::now(EventKind::Texts(Arc::new(batch)))
    }

    fn texts(got: &[Event]) -> Vec<(String, bool)> {
        got.iter()
            .map(|e| match &e.kind {
                EventKind::Text { text, raw, .. } => (text.clone(), raw.is_some()),
                other => panic!("not a text: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_batch_comes_out_as_one_text_event_per_line_in_order() {
        let (tx, mut rx) = channel(1 << 20);
        tx.send(batch(&["one", "two", "three"]));
        tx.send(text(2));
        let mut got = Vec::new();
        while let Some(e) = rx.try_recv() {
            got.push(e);
        }
        assert_eq!(
            texts(&got),
            [
                ("one".to_string(), true), // the raw bytes go with the first line
                ("two".to_string(), false),
                ("three".to_string(), false),
                ("xx".to_string(), false),
            ]
        );
        assert!(rx.is_empty());
        assert_eq!(rx.counters.queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dropped_batch_counts_its_lines_and_one_held_back_is_still_split() {
        let (tx, mut rx) = channel(1_000);
        tx.send(batch(&["a"; 400])); // over the cap: dropped, 400 events
        tx.send(batch(&["b", "c"]));
        let mut got = Vec::new();
        while let Some(e) = rx.try_recv() {
            got.push(e);
        }
        match &got[0].kind {
            EventKind::Dropped { events, .. } => assert_eq!(*events, 400),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            texts(&got[1..]),
            [("b".to_string(), true), ("c".to_string(), false)]
        );
    }

    #[test]
    fn nothing_is_dropped_under_the_cap() {
        let (tx, mut rx) = channel(1 << 20);
        for _ in 0..100 {
            tx.send(text(100));
        }
        let mut n = 0;
        while let Some(e) = rx.try_recv() {
            assert!(matches!(e.kind, EventKind::Text { .. }));
            n += 1;
        }
        assert_eq!(n, 100);
    }
}
