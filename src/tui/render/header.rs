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
    let mut first = vec![Span::styled(" benchlink ", theme.header()), Span::raw(" ")];
    for (addr, protocol) in &app.listeners {
        first.push(Span::styled(format!("{protocol} "), theme.muted()));
        first.push(Span::styled(format!("{addr}  "), theme.fg(theme.title)));
    }
    let lan = lan_addresses(app);
    if !lan.is_empty() {
        first.push(Span::styled("LAN ", theme.muted()));
        first.push(Span::styled(lan.join(" "), theme.fg(theme.foreground)));
    }
    let second = vec![
        Span::styled(" files ", theme.muted()),
        Span::styled(for_terminal(&app.dir).into_owned(), theme.fg(theme.foreground)),
        Span::styled(
            format!(
                "   {} device(s)  {} file(s)  {}  ",
                app.live_devices(),
                app.files_saved,
                human_bytes(app.bytes_saved)
            ),
            theme.muted(),
        ),
        Span::styled(
            format!("rx {}", rate(app.rate_in as f64)),
            theme.fg(theme.incoming),
        ),
    ];
    frame.render_widget(Paragraph::new(vec![Line::from(first), Line::from(second)]), area);
}

pub fn render_tiny(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let line = Line::from(vec![
        Span::styled("benchlink", theme.header()),
        Span::styled(
            format!(
                " {} dev · rx {} · F1",
                app.live_devices(),
                rate(app.rate_in as f64)
            ),
            theme.muted(),
        ),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

/// What a board's `AT+CIPSTART` needs: this machine's LAN addresses with each
/// wildcard listener's port (a listener on one address shows that address).
fn lan_addresses(app: &App) -> Vec<String> {
    let mut out = Vec::new();
    for (addr, _) in &app.listeners {
        let Some((host, port)) = addr.rsplit_once(':') else {
            continue;
        };
        if host == "0.0.0.0" || host == "[::]" {
            out.extend(app.lan.iter().map(|ip| format!("{ip}:{port}")));
        }
    }
    out.dedup();
    out
}
