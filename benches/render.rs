//! The TUI's cost per frame and per event with a busy console: 10,000 devices
//! connected, conversations, transfers under way, at 140x45.
//! `cargo bench --bench render`.

use std::hint::black_box;

use chrono::Local;
use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use benchlink::engine::{Direction, Event, EventKind};
use benchlink::tui::app::App;
use benchlink::tui::theme::Theme;

const DEVICES: u64 = 10_000;

fn text(conn: u64, i: u64) -> Event {
    Event::now(EventKind::Text {
        conn,
        device: format!("board-{conn}"),
        direction: Direction::In,
        text: format!("{i:08} temp=21.5 hum=40 v=3.300 status=ok"),
        raw: None,
    })
}

fn busy_app() -> App {
    let mut app = App::new(Local::now());
    app.on_event(Event::now(EventKind::Listening {
        addr: "0.0.0.0:9999".into(),
        protocol: "auto".into(),
        dir: "/srv/received".into(),
    }));
    for conn in 1..=DEVICES {
        app.on_event(Event::now(EventKind::Connected {
            conn,
            device: format!("board-{conn}"),
            peer: format!("10.0.{}.{}:40000", conn / 250, conn % 250),
            protocol: "lines".into(),
        }));
    }
    for i in 0..20_000 {
        app.on_event(text(1 + i % 50, i));
    }
    for conn in 1..=20 {
        app.on_event(Event::now(EventKind::FileStarted {
            conn,
            device: format!("board-{conn}"),
            name: format!("shot-{conn}.jpg"),
            size: Some(4 << 20),
            resumed_from: None,
        }));
        app.on_event(Event::now(EventKind::FileProgress {
            conn,
            device: format!("board-{conn}"),
            name: format!("shot-{conn}.jpg"),
            bytes: 1 << 20,
        }));
    }
    app
}

fn render(c: &mut Criterion) {
    let mut app = busy_app();
    let theme = Theme::default_theme();
    let mut terminal = match Terminal::new(TestBackend::new(140, 45)) {
        Ok(t) => t,
        Err(e) => panic!("test backend: {e}"),
    };
    let mut g = c.benchmark_group("tui");
    g.bench_function("draw 140x45, 10,000 devices, 20 transfers", |b| {
        b.iter(|| {
            let drawn = terminal.draw(|f| benchlink::tui::render::draw(f, &app, &theme, None));
            black_box(drawn.is_ok())
        })
    });
    let mut i = 0u64;
    g.bench_function("one text event into a 10,000-device app", |b| {
        b.iter(|| {
            i += 1;
            black_box(app.on_event(text(1 + i % DEVICES, i)).len())
        })
    });
    g.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
