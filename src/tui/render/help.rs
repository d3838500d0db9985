//! The help overlay (F1, or `?` on an empty prompt): every key (from the
//! keymap) and every command.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::{centered, pane_block};
use crate::console::COMMANDS;
use crate::tui::app::App;
use crate::tui::keymap;
use crate::tui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut lines = vec![Line::from(Span::styled("Keys", theme.title(true)))];
    // From the keymap, grouped by where the keys work.
    let mut scope = None;
    for binding in keymap::help_rows() {
        if scope != Some(binding.scope) {
            scope = Some(binding.scope);
            lines.push(Line::from(Span::styled(
                format!(" {}", binding.scope.title()),
                theme.fg(theme.system),
            )));
        }
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<20}", binding.label), theme.key()),
            Span::styled(binding.help, theme.fg(theme.foreground)),
        ]));
    }
    lines.push(Line::from(vec![
        Span::styled(format!("  {:<20}", "mouse"), theme.key()),
        Span::styled(
            "click to focus and select, wheel to scroll",
            theme.fg(theme.foreground),
        ),
    ]));
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
    let scroll = app.help.scroll.min(most);
    let title = if most > 0 {
        format!(" Help · Esc closes · ↑/↓ PgUp/PgDn scroll ({}/{}) ", scroll, most)
    } else {
        " Help · Esc closes ".to_string()
    };
    let block = pane_block(title, true, theme).style(theme.base());
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), popup);
}
