//! Active transfers as bars (bytes, %, rate, ETA; an indeterminate bar when the
//! size is unknown, as in cf) and the last minute's throughput.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, Sparkline};

use super::{duration_short, fit, pane_block, rate};
use crate::text::for_terminal;
use crate::tui::app::{App, Focus, TransferRow, human_bytes};
use crate::tui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let title = format!(" Transfers ({}) ", app.model.transfers.len());
    let block = pane_block(title, app.focus == Focus::Transfers, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    let chart_height = if inner.height >= 8 {
        4
    } else if inner.height >= 4 {
        2
    } else {
        0
    };
    let [bars, chart] = Layout::vertical([Constraint::Min(0), Constraint::Length(chart_height)]).areas(inner);
    if app.model.transfers.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled("no transfer in progress", theme.muted())),
            bars,
        );
    } else {
        let slots = (bars.height / 2).max(1) as usize;
        for (i, t) in app.model.transfers.iter().take(slots).enumerate() {
            let y = bars.y + (i as u16) * 2;
            if y >= bars.y + bars.height {
                break;
            }
            let label_area = Rect::new(bars.x, y, bars.width, 1);
            let bar_area = Rect::new(bars.x, y + 1, bars.width, 1).intersection(bars);
            frame.render_widget(Paragraph::new(label(t, bars.width as usize, theme)), label_area);
            render_bar(frame, bar_area, t, app, theme);
        }
    }
    if chart_height > 0 {
        render_history(frame, chart, app, theme);
    }
}

fn label<'a>(t: &TransferRow, width: usize, theme: &Theme) -> Line<'a> {
    let amount = match t.size {
        Some(size) => format!("{}/{}", human_bytes(t.bytes), human_bytes(size)),
        None => human_bytes(t.bytes),
    };
    let eta = t
        .eta_secs()
        .map_or(String::new(), |s| format!(" ETA {}", duration_short(s as i64)));
    let resumed = t
        .resumed_from
        .map_or_else(String::new, |r| format!(" (resumed at {})", human_bytes(r)));
    // Files the console sends are marked ↑ (to the device); received ones, the
    // usual case, are not.
    let arrow = if t.outgoing { "↑ " } else { "" };
    let name = format!(
        "{arrow}{} {}{resumed}",
        for_terminal(&t.device),
        for_terminal(&t.name)
    );
    // The name comes first: what is shown after it shrinks to leave it room.
    let full = format!(" {amount} {}{eta}", rate(t.rate()));
    let tail = if width.saturating_sub(full.chars().count()) >= 16 {
        full
    } else {
        format!(" {amount}")
    };
    let room = width.saturating_sub(tail.chars().count());
    Line::from(vec![
        Span::styled(fit(&name, room), theme.fg(theme.foreground)),
        Span::styled(tail, theme.muted()),
    ])
}

fn render_bar(frame: &mut Frame, area: Rect, t: &TransferRow, app: &App, theme: &Theme) {
    if area.height == 0 {
        return;
    }
    match t.size {
        Some(size) if size > 0 => {
            let ratio = (t.bytes as f64 / size as f64).clamp(0.0, 1.0);
            let gauge = Gauge::default()
                .ratio(ratio)
                .label(format!("{:.0}%", ratio * 100.0))
                .gauge_style(theme.fg(theme.gauge).bg(theme.gauge_track));
            frame.render_widget(gauge, area);
        }
        _ => {
            // Size unknown: a block that moves with the clock says "still arriving".
            let width = area.width as usize;
            let block = (width / 6).max(1);
            let pos = (app.model.now.timestamp() as usize * 3) % width.max(1);
            let bar: String = (0..width)
                .map(|i| {
                    if (i + width - pos) % width < block {
                        '█'
                    } else {
                        '░'
                    }
                })
                .collect();
            frame.render_widget(Paragraph::new(Span::styled(bar, theme.fg(theme.gauge))), area);
        }
    }
}

/// The last `width` samples, padded with zeros on the left, so every sparkline
/// ends at the same column: the same second is in the same column in all of them
/// (a device seen for 10 s must not start where the console's history starts).
fn right_aligned(data: &[u64], width: usize) -> Vec<u64> {
    let shown = &data[data.len().saturating_sub(width)..];
    let mut out = vec![0; width - shown.len()];
    out.extend_from_slice(shown);
    out
}

fn render_history(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let selected = app.selected_device();
    let rows = if selected.is_some() && area.height >= 4 {
        2
    } else {
        1
    };
    let parts = Layout::vertical(vec![Constraint::Ratio(1, rows); rows as usize]).split(area);
    let mut draw = |area: Rect, title: String, data: Vec<u64>| {
        let [label, spark] = Layout::horizontal([Constraint::Length(20), Constraint::Min(1)]).areas(area);
        frame.render_widget(
            Paragraph::new(Span::styled(fit(&title, 19), theme.muted())),
            label,
        );
        let data = right_aligned(&data, spark.width as usize);
        frame.render_widget(
            Sparkline::default().data(&data).style(theme.fg(theme.sparkline)),
            spark,
        );
    };
    draw(
        parts[0],
        format!("all {}", rate(app.model.rate_in as f64)),
        app.model.history_all.iter().copied().collect(),
    );
    if rows == 2
        && let Some(d) = selected
    {
        let history = app
            .model
            .history_device
            .get(&d.conn)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        draw(
            parts[1],
            format!("{} {}", for_terminal(&d.name), rate(d.rate_in as f64)),
            history,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::right_aligned;

    #[test]
    fn sparklines_share_one_time_axis() {
        // The console's 6 seconds and a device seen for the last 2 of them.
        let all = right_aligned(&[1, 2, 3, 4, 5, 9], 8);
        let device = right_aligned(&[4, 9], 8);
        assert_eq!(all, [0, 0, 1, 2, 3, 4, 5, 9]);
        assert_eq!(device, [0, 0, 0, 0, 0, 0, 4, 9]);
        assert_eq!(
            all.iter().position(|&v| v == 9),
            device.iter().position(|&v| v == 9)
        );
        assert_eq!(right_aligned(&[1, 2, 3], 2), [2, 3]);
    }
}
