//! Counts the tracing events the log pane shows, so an empty pane can say it is
//! empty (tui-logger does not tell).

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

static LOGGED: AtomicU64 = AtomicU64::new(0);

/// Lines logged since the start.
pub fn logged() -> u64 {
    LOGGED.load(Ordering::Relaxed)
}

/// Sits beside tui-logger's layer, with the same level (info and above).
pub struct LogCounter;

impl<S: Subscriber> Layer<S> for LogCounter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::INFO {
            LOGGED.fetch_add(1, Ordering::Relaxed);
        }
    }
}
