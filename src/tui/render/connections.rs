//! One row per device: name, protocol, peer, connected-for, bytes, rate, state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};

use super::{duration_short, fit, pane_block, rate};
use crate::text::for_terminal;
use crate::tui::app::{App, DeviceRow, DeviceState, Focus, human_bytes};
use crate::tui::layout::list_offset;
use crate::tui::theme::Theme;

/// Columns by priority: the narrowest pane shows the first ones only.
const COLUMNS: &[(&str, u16)] = &[
    ("Device", 14),
    ("State", 12),
    ("Rate", 11),
    ("Proto", 6),
    ("Up", 7),
    ("Rx", 10),
    ("Tx", 10),
    ("Peer", 21),
];

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let focused = app.focus == Focus::Connections;
    let title = format!(" Connections ({}) ", app.model.live_devices());
    let block = pane_block(title, focused, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.model.devices.is_empty() {
        let hint = Line::from(Span::styled("waiting for devices…", theme.muted()));
        frame.render_widget(Paragraph::new(hint), inner);
        return;
    }
    // Fit as many columns as the width allows; Device and State share the rest.
    let mut used = 0u16;
    let mut shown = 0;
    for (_, width) in COLUMNS {
        if used + width + 1 > inner.width && shown >= 2 {
            break;
        }
        used += width + 1;
        shown += 1;
    }
    let spare = inner.width.saturating_sub(used);
    let widths: Vec<Constraint> = COLUMNS[..shown]
        .iter()
        .enumerate()
        .map(|(i, (_, w))| match i {
            0 => Constraint::Length(w + spare / 2),
            1 => Constraint::Length(w + spare - spare / 2),
            _ => Constraint::Length(*w),
        })
        .collect();
    let lengths: Vec<u16> = widths
        .iter()
        .map(|w| match w {
            Constraint::Length(n) => *n,
            _ => 0,
        })
        .collect();
    let visible = inner.height.saturating_sub(1) as usize;
    let selected = app
        .connections
        .selected
        .and_then(|c| app.model.device_position(c));
    let offset = list_offset(selected.unwrap_or(0), visible);
    let rows = app
        .model
        .devices
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, d)| {
            let cells: Vec<String> = cells(d, app)
                .into_iter()
                .take(shown)
                .zip(&lengths)
                .map(|(text, n)| fit(&text, *n as usize))
                .collect();
            let style = if Some(i) == selected {
                theme.selection()
            } else if d.gone_at.is_some() || matches!(d.state, DeviceState::Reconnecting { .. }) {
                theme.muted()
            } else {
                theme.fg(theme.foreground)
            };
            Row::new(cells).style(style)
        });
    let header = Row::new(COLUMNS[..shown].iter().map(|(name, _)| *name)).style(theme.title(false));
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), inner);
}

fn cells(d: &DeviceRow, app: &App) -> Vec<String> {
    let state = match (&d.state, d.gone_at) {
        (_, Some(t)) => format!("gone {}", duration_short((app.model.now - t).num_seconds())),
        (DeviceState::Idle, None) => "idle".into(),
        // When the next attempt is: the port or the device may be back by then.
        (DeviceState::Reconnecting { at }, None) => {
            let left = (*at - app.model.now).num_seconds();
            if left > 0 {
                format!("reconnecting {}", duration_short(left))
            } else {
                "reconnecting".into()
            }
        }
        (DeviceState::Receiving { name, bytes, size }, None) => match size {
            // The number first: a narrow column cuts the name, not the progress.
            Some(s) if *s > 0 => format!("{}% {}", bytes * 100 / s, for_terminal(name)),
            _ => format!("{} {}", human_bytes(*bytes), for_terminal(name)),
        },
    };
    let up = d.gone_at.unwrap_or(app.model.now) - d.since;
    vec![
        for_terminal(&d.name).into_owned(),
        state,
        rate(d.rate_in as f64),
        match &d.eol {
            Some(eol) => format!("{} {eol}", d.protocol),
            None => d.protocol.clone(),
        },
        duration_short(up.num_seconds()),
        human_bytes(d.bytes_in),
        human_bytes(d.bytes_out),
        d.peer.clone(),
    ]
}
