//! The hex view of the conversation pane (F4, `/view hex`): the selected
//! device's received bytes as they were on the wire, 16 to a row with their
//! offset and their text form, newest at the bottom.

use ratatui::text::{Line, Span};

use crate::tui::app::App;
use crate::tui::theme::Theme;

pub fn render_rows<'a>(app: &App, height: usize, width: usize, theme: &Theme) -> Vec<Line<'a>> {
    let Some(raw) = app.connections.selected.and_then(|c| app.model.raw_in.get(&c)) else {
        let hint = if app.conversation.show_all {
            "The hex view shows one device: select it (F2 for one device)."
        } else {
            "No bytes from this device yet."
        };
        return vec![Line::from(Span::styled(hint, theme.muted()))];
    };
    // 16 bytes a row need 77 columns; narrower panes get 8.
    let per_row = if width >= 77 { 16 } else { 8 };
    let total_rows = raw.bytes.len().div_ceil(per_row);
    let end = total_rows.saturating_sub(app.conversation.scroll);
    let start = end.saturating_sub(height);
    (start..end)
        .map(|row| {
            let from = row * per_row;
            let to = (from + per_row).min(raw.bytes.len());
            let bytes: Vec<u8> = raw.bytes.range(from..to).copied().collect();
            let mut hex = String::with_capacity(per_row * 3);
            for i in 0..per_row {
                match bytes.get(i) {
                    Some(b) => hex.push_str(&format!("{b:02x} ")),
                    None => hex.push_str("   "),
                }
                if i == 7 && per_row == 16 {
                    hex.push(' ');
                }
            }
            let text: String = bytes
                .iter()
                .map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' })
                .collect();
            Line::from(vec![
                Span::styled(format!("{:08x}  ", raw.first + from as u64), theme.muted()),
                Span::styled(hex, theme.fg(theme.incoming)),
                Span::styled(format!(" {text}"), theme.base()),
            ])
        })
        .collect()
}
