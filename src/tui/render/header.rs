//! The top two lines: where devices connect, where files go, totals and the rate.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::rate;
use crate::text::for_terminal;
use crate::tui::app::{App, human_bytes};
use crate::tui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    // First what a board's AT+CIPSTART needs: each listener's protocol and the
    // addresses to reach it (LAN addresses for a wildcard listener).
    let mut first = vec![Span::styled(" benchlink ", theme.header()), Span::raw(" ")];
    for (addr, protocol) in &app.model.listeners {
        first.push(Span::styled(format!("{protocol} "), theme.muted()));
        first.push(Span::styled(
            format!("{}  ", reachable_at(addr, app).join(" ")),
            theme.fg(theme.title),
        ));
    }
    let second = vec![
        Span::styled(" files ", theme.muted()),
        Span::styled(
            for_terminal(&app.model.dir).into_owned(),
            theme.fg(theme.foreground),
        ),
        Span::styled(
            format!(
                "   {} device(s)  {} file(s)  {}  ",
                app.model.live_devices(),
                app.model.files_saved,
                human_bytes(app.model.bytes_saved)
            ),
            theme.muted(),
        ),
        Span::styled(
            format!("rx {}", rate(app.model.rate_in as f64)),
            theme.fg(theme.incoming),
        ),
    ];
    let mut second = second;
    // The broker link, when events are published (--mqtt).
    match &app.model.broker {
        Some((true, _)) => second.push(Span::styled("  mqtt ok", theme.fg(theme.system))),
        Some((false, _)) => second.push(Span::styled("  mqtt down", theme.fg(theme.error))),
        None => {}
    }
    frame.render_widget(Paragraph::new(vec![Line::from(first), Line::from(second)]), area);
}

pub fn render_tiny(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let line = Line::from(vec![
        Span::styled("benchlink", theme.header()),
        Span::styled(
            format!(
                " {} dev · rx {} · F1",
                app.model.live_devices(),
                rate(app.model.rate_in as f64)
            ),
            theme.muted(),
        ),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

/// Where a board reaches a listener: this machine's LAN addresses with the port for
/// a wildcard listener (the first two, then a count), else its own address.
fn reachable_at(addr: &str, app: &App) -> Vec<String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return vec![addr.to_string()];
    };
    if !(host == "0.0.0.0" || host == "[::]") || app.model.lan.is_empty() {
        return vec![addr.to_string()];
    }
    let mut out: Vec<String> = app
        .model
        .lan
        .iter()
        .take(2)
        .map(|ip| format!("{ip}:{port}"))
        .collect();
    if app.model.lan.len() > 2 {
        out.push(format!("(+{})", app.model.lan.len() - 2));
    }
    out
}
