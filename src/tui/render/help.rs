//! The help overlay (F1, or `?` on an empty prompt): every key and command.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::{centered, pane_block};
use crate::console::COMMANDS;
use crate::tui::app::App;
use crate::tui::theme::Theme;

pub const KEYS: &[(&str, &str)] = &[
    ("F1, ?", "this help (? when the prompt is empty)"),
    ("Tab / Shift-Tab", "move focus between the prompt and the panes"),
    ("Esc", "back to the prompt; close overlays"),
    (
        "↑/↓, j/k",
        "move in lists; scroll the conversation; prompt history",
    ),
    (
        "Home/End, g/G",
        "first / last; End follows the conversation again",
    ),
    ("PgUp/PgDn, wheel", "scroll the conversation"),
    ("Enter", "prompt: send; received: preview the file"),
    ("y / i", "copy a path or line (clipboard) / path into the prompt"),
    ("Tab (typing)", "complete /commands and device names"),
    ("F2, a", "conversation of all devices / the selected one"),
    ("F3, F4", "show or hide the log; conversation as text or hex"),
    ("w, t", "conversation: wrap long lines; milliseconds"),
    ("Ctrl-F, Ctrl-N/P", "find (/find TEXT), next older / newer match"),
    ("F5 .. F12", "macros from config.toml"),
    ("mouse", "click to focus and select, wheel to scroll"),
    ("Ctrl-C", "quit (asks first while a transfer is in flight)"),
];

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut lines = vec![Line::from(Span::styled("Keys", theme.title(true)))];
    for (key, what) in KEYS {
        lines.push(Line::from(vec![
            Span::styled(format!("  {key:<18}"), theme.key()),
            Span::styled(*what, theme.fg(theme.foreground)),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled(
        "Commands (plain text goes to the selected device; // sends a leading /)",
        theme.title(true),
    )));
    for (name, args, what) in COMMANDS {
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<18}", format!("{name} {args}")), theme.key()),
            Span::styled(*what, theme.fg(theme.foreground)),
        ]));
    }
    let height = lines.len() as u16 + 2;
    let popup = centered(area, 90, height);
    frame.render_widget(Clear, popup);
    // Taller than the screen: ↑/↓ and PgUp/PgDn scroll it.
    let room = popup.height.saturating_sub(2);
    let most = (lines.len() as u16).saturating_sub(room);
    let scroll = app.help_scroll.min(most);
    let title = if most > 0 {
        format!(" Help · Esc closes · ↑/↓ PgUp/PgDn scroll ({}/{}) ", scroll, most)
    } else {
        " Help · Esc closes ".to_string()
    };
    let block = pane_block(title, true, theme).style(theme.base());
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), popup);
}
