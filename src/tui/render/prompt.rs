//! The last answer, the `TARGET> ` prompt, and the key hints.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{fit, key_hint, pane_block};
use crate::console::ViewMode;
use crate::text::for_terminal;
use crate::tui::app::{App, Focus};
use crate::tui::keymap::{self, Act, Scope};
use crate::tui::theme::Theme;

pub fn render_notice(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if let Some(notice) = &app.prompt.notice {
        let style = if notice.ok {
            theme.fg(theme.ok)
        } else {
            theme.fg(theme.error)
        };
        let text = fit(&for_terminal(&notice.text), area.width as usize);
        frame.render_widget(Paragraph::new(Span::styled(text, style)), area);
    } else if let Some(reason) = &app.model.stopped {
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
    let scroll = app.prompt.input.visual_scroll(room);
    let value: String = for_terminal(app.prompt.input.value())
        .chars()
        .skip(scroll)
        .take(room)
        .collect();
    let line = Line::from(vec![
        Span::styled(label, theme.fg(theme.prompt)),
        Span::styled(value, theme.fg(theme.foreground)),
    ]);
    frame.render_widget(Paragraph::new(line), inner);
    if focused && !app.help.open && app.preview.is_none() && app.overlay.is_none() {
        let x = inner.x + (label_width + app.prompt.input.visual_cursor().saturating_sub(scroll)) as u16;
        frame.set_cursor_position(Position::new(x.min(inner.right().saturating_sub(1)), inner.y));
    }
}

pub fn render_hints(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    // From the keymap: F1 first, the focused pane's keys, the keys that work
    // anywhere, the macros bound in config.toml, and quit last. What does not fit
    // goes from the middle, so help and quit always show.
    let mut hints: Vec<(u8, String, String)> = keymap::hints(app.focus.scope())
        .filter_map(|b| {
            let hint = match b.act {
                Act::ToggleAll if app.conversation.show_all => "one device",
                Act::ToggleHex if app.conversation.view == ViewMode::Hex => "text",
                Act::Wrap if app.conversation.wrap => "no wrap",
                _ => b.hint?,
            };
            let rank = match (b.act, b.scope) {
                (Act::Help, _) => 0,
                (Act::Quit, _) => 4,
                (_, Scope::Anywhere) => 3,
                _ => 1,
            };
            Some((rank, b.label.to_string(), hint.to_string()))
        })
        .collect();
    for (key, first_line) in &app.macro_keys {
        let shown: String = for_terminal(first_line).chars().take(12).collect();
        hints.push((2, key.clone(), shown));
    }
    // Stable: the keymap's order within a rank.
    hints.sort_by_key(|h| h.0);
    let width = |h: &[(u8, String, String)]| {
        h.iter()
            .map(|(_, k, w)| k.chars().count() + w.chars().count() + 3)
            .sum::<usize>()
    };
    while width(&hints) > area.width as usize && hints.len() > 2 {
        let drop = hints.len() - 2;
        hints.remove(drop);
    }
    let mut spans = Vec::new();
    for (_, key, what) in &hints {
        spans.extend(key_hint(key, what, theme));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
