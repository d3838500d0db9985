//! Received files, newest first, including earlier runs' (from received.jsonl).

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Paragraph, Row, Table};

use super::{fit, pane_block};
use crate::text::for_terminal;
use crate::tui::app::{App, Focus, human_bytes};
use crate::tui::keymap::{self, Scope};
use crate::tui::layout::list_offset;
use crate::tui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let focused = app.focus == Focus::Received;
    // The pane's own keys, from the keymap (the footer shows them too).
    let hint = if focused {
        let keys: Vec<String> = keymap::hints(Scope::Received)
            .filter(|b| b.scope == Scope::Received)
            .filter_map(|b| Some(format!("{} {}", b.label, b.hint?)))
            .collect();
        format!(" {} ", keys.join(" · "))
    } else {
        " ".into()
    };
    let block = pane_block(
        format!(" Received ({}){hint}", app.model.received.len()),
        focused,
        theme,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.model.received.is_empty() {
        frame.render_widget(Paragraph::new(Span::styled("no files yet", theme.muted())), inner);
        return;
    }
    let wide = inner.width >= 60;
    // Wide: the status column takes what the name leaves, so a failure says why.
    let status_width = if wide {
        (inner.width.saturating_sub(11 + 12 + 10 + 4) / 3).max(7)
    } else {
        7
    };
    let fixed = if wide {
        11 + 12 + 10 + status_width + 4
    } else {
        10 + 7 + 2
    };
    let name_width = inner.width.saturating_sub(fixed).max(6);
    let widths: Vec<Constraint> = if wide {
        vec![
            Constraint::Length(11),
            Constraint::Length(12),
            Constraint::Length(name_width),
            Constraint::Length(10),
            Constraint::Length(status_width),
        ]
    } else {
        vec![
            Constraint::Length(name_width),
            Constraint::Length(10),
            Constraint::Length(7),
        ]
    };
    let visible = inner.height.saturating_sub(1) as usize;
    let selected = app
        .received
        .selected
        .min(app.model.received.len().saturating_sub(1));
    let offset = list_offset(selected, visible);
    let rows = app
        .model
        .received
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, r)| {
            let (status, status_style) = match &r.failure {
                _ if r.superseded => ("superseded by a resume".to_string(), theme.muted()),
                None => ("saved".to_string(), theme.fg(theme.ok)),
                Some(why) if wide => (
                    fit(&format!("failed: {}", for_terminal(why)), status_width as usize),
                    theme.fg(theme.error),
                ),
                Some(_) => ("failed".to_string(), theme.fg(theme.error)),
            };
            let name = fit(&for_terminal(&r.name), name_width as usize);
            let mut cells = vec![];
            if wide {
                cells.push(Span::raw(r.time.clone()));
                cells.push(Span::raw(fit(&for_terminal(&r.device), 12)));
            }
            cells.push(Span::raw(name));
            cells.push(Span::raw(human_bytes(r.size)));
            cells.push(Span::styled(status, status_style));
            let row = Row::new(cells);
            if focused && i == selected {
                row.style(theme.selection())
            } else if i == selected {
                row.style(theme.border(false))
            } else {
                row.style(theme.fg(theme.foreground))
            }
        });
    let header: Vec<&str> = if wide {
        vec!["Time", "Device", "Name", "Size", "Status"]
    } else {
        vec!["Name", "Size", "Status"]
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.title(false)))
        .column_spacing(1);
    frame.render_widget(table, inner);
}
