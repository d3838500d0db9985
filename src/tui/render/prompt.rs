//! The last answer, the `TARGET> ` prompt, and the key hints.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{fit, key_hint, pane_block};
use crate::text::for_terminal;
use crate::tui::app::{App, Focus};
use crate::tui::theme::Theme;

pub fn render_notice(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if let Some(notice) = &app.notice {
        let style = if notice.ok {
            theme.fg(theme.ok)
        } else {
            theme.fg(theme.error)
        };
        let text = fit(&for_terminal(&notice.text), area.width as usize);
        frame.render_widget(Paragraph::new(Span::styled(text, style)), area);
    } else if let Some(reason) = &app.stopped {
        let text = format!("stopped: {}", for_terminal(reason));
        frame.render_widget(Paragraph::new(Span::styled(text, theme.fg(theme.warning))), area);
    }
}

pub fn render_prompt(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let focused = app.focus == Focus::Prompt;
    let inner = if area.height >= 3 {
        let block = pane_block("", focused, theme);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        inner
    } else {
        area
    };
    let label = format!("{}> ", for_terminal(&app.target_label()));
    let label_width = label.chars().count().min(inner.width as usize / 2);
    let label = fit(&label, label_width);
    let room = (inner.width as usize).saturating_sub(label_width + 1);
    let scroll = app.input.visual_scroll(room);
    let value: String = for_terminal(app.input.value())
        .chars()
        .skip(scroll)
        .take(room)
        .collect();
    let line = Line::from(vec![
        Span::styled(label, theme.fg(theme.prompt)),
        Span::styled(value, theme.fg(theme.foreground)),
    ]);
    frame.render_widget(Paragraph::new(line), inner);
    if focused && !app.show_help && app.preview.is_none() && app.overlay.is_none() {
        let x = inner.x + (label_width + app.input.visual_cursor().saturating_sub(scroll)) as u16;
        frame.set_cursor_position(Position::new(x.min(inner.right().saturating_sub(1)), inner.y));
    }
}

pub fn render_hints(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut spans = Vec::new();
    spans.extend(key_hint("F1", "help", theme));
    spans.extend(key_hint("Tab", "focus", theme));
    spans.extend(key_hint(
        "F2",
        if app.show_all { "one device" } else { "all devices" },
        theme,
    ));
    spans.extend(key_hint("F3", "log", theme));
    for (key, first_line) in &app.macro_keys {
        let shown: String = for_terminal(first_line).chars().take(12).collect();
        spans.push(Span::styled(key.as_str(), theme.key()));
        spans.push(Span::styled(format!(" {shown}  "), theme.muted()));
    }
    spans.extend(key_hint("PgUp/PgDn", "scroll", theme));
    spans.extend(key_hint("Ctrl-C", "quit", theme));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
