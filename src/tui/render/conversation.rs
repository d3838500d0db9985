//! The selected device's conversation (or everyone's), newest at the bottom,
//! every device text escaped so no control character reaches the terminal.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{fit, pane_block};
use crate::text::for_terminal;
use crate::tui::app::{App, Entry, EntryKind, Focus};
use crate::tui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if area.height == 0 {
        return;
    }
    let whose = if app.show_all {
        "all devices".to_string()
    } else {
        app.selected_device().map_or_else(
            || "no device selected".into(),
            |d| for_terminal(&d.name).into_owned(),
        )
    };
    let scrolled = if app.scroll > 0 {
        format!(" ↑{} (End follows) ", app.scroll)
    } else {
        String::new()
    };
    let (inner, bordered) = if area.height >= 3 && area.width >= 10 {
        let block = pane_block(
            format!(" Conversation · {whose} {scrolled}"),
            app.focus == Focus::Conversation,
            theme,
        );
        let inner = block.inner(area);
        frame.render_widget(block, area);
        (inner, true)
    } else {
        (area, false)
    };
    let Some(entries) = app.visible_conversation() else {
        if bordered {
            let hint = if app.devices.is_empty() {
                "No device yet. Point a board at an address above."
            } else {
                "Select a device (↑/↓ in Connections), or F2 for all."
            };
            frame.render_widget(Paragraph::new(Span::styled(hint, theme.muted())), inner);
        }
        return;
    };
    // Only the rows that fit are built, however long the history.
    let height = inner.height as usize;
    let end = entries.len().saturating_sub(app.scroll);
    let start = end.saturating_sub(height);
    let width = inner.width as usize;
    let lines: Vec<Line> = entries
        .range(start..end)
        .map(|e| line(e, app.show_all, width, theme))
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn line<'a>(e: &Entry, show_device: bool, width: usize, theme: &Theme) -> Line<'a> {
    let ts = e.ts.format("%H:%M:%S ").to_string();
    let device = for_terminal(&e.device);
    let (marker, style) = match e.kind {
        EntryKind::In if show_device => (format!("{device}: "), theme.fg(theme.incoming)),
        EntryKind::In => ("◂ ".to_string(), theme.fg(theme.incoming)),
        EntryKind::Out if show_device => (format!("▸ {device}: "), theme.fg(theme.outgoing)),
        EntryKind::Out => ("▸ ".to_string(), theme.fg(theme.outgoing)),
        EntryKind::System if show_device => (format!("* {device} "), theme.fg(theme.system)),
        EntryKind::System => ("* ".to_string(), theme.fg(theme.system)),
        EntryKind::Error if show_device => (format!("! {device}: "), theme.fg(theme.error)),
        EntryKind::Error => ("! ".to_string(), theme.fg(theme.error)),
    };
    let room = width.saturating_sub(ts.chars().count() + marker.chars().count());
    Line::from(vec![
        Span::styled(ts, theme.muted()),
        Span::styled(marker, style),
        Span::styled(fit(&for_terminal(&e.text), room), style),
    ])
}
