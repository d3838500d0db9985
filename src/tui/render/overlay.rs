//! Overlays: a multi-line reply (such as /list) and the file preview.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui_image::Image;
use ratatui_image::protocol::Protocol;

use super::{centered, pane_block};
use crate::text::for_terminal;
use crate::tui::app::{App, PreviewContent};
use crate::tui::theme::Theme;

pub fn render_reply(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let Some((command, text)) = &app.overlay else {
        return;
    };
    let lines: Vec<Line> = text
        .lines()
        .map(|l| {
            Line::from(Span::styled(
                for_terminal(l).into_owned(),
                theme.fg(theme.foreground),
            ))
        })
        .collect();
    let width = text.lines().map(|l| l.chars().count()).max().unwrap_or(20) as u16 + 4;
    let popup = centered(area, width.max(30), lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    let block =
        pane_block(format!(" {} · Esc closes ", for_terminal(command)), true, theme).style(theme.base());
    frame.render_widget(Paragraph::new(lines).block(block), popup);
}

pub fn render_preview(frame: &mut Frame, area: Rect, app: &App, theme: &Theme, image: Option<&Protocol>) {
    let Some(preview) = &app.preview else {
        return;
    };
    let popup = preview_area(area);
    frame.render_widget(Clear, popup);
    let window = match &preview.content {
        PreviewContent::Hex(bytes) if preview.total > 0 => {
            let rows = popup.height.saturating_sub(2) as u64;
            let per_line = if popup.width.saturating_sub(2) >= 78 {
                16
            } else {
                8
            };
            let shown = (bytes.len() as u64).min(rows * per_line);
            format!(
                "· bytes {}-{} of {} (PgUp/PgDn) ",
                preview.offset,
                (preview.offset + shown).saturating_sub(1),
                preview.total
            )
        }
        _ => String::new(),
    };
    let title = format!(" {} · Esc closes {window}", for_terminal(&preview.path));
    let block = pane_block(title, true, theme).style(theme.base());
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    match &preview.content {
        PreviewContent::Loading => {
            frame.render_widget(Paragraph::new(Span::styled("loading…", theme.muted())), inner);
        }
        PreviewContent::Image { width, height } => match image {
            Some(protocol) => {
                // Centred in the pop-up (the scaling keeps the aspect ratio, so one
                // side has room to spare).
                let size = protocol.size();
                let width = size.width.min(inner.width);
                let height = size.height.min(inner.height);
                let at = Rect::new(
                    inner.x + (inner.width - width) / 2,
                    inner.y + (inner.height - height) / 2,
                    width,
                    height,
                );
                frame.render_widget(Image::new(protocol), at);
            }
            None => {
                let text = format!("{width}x{height} image");
                frame.render_widget(Paragraph::new(Span::styled(text, theme.muted())), inner);
            }
        },
        PreviewContent::Hex(bytes) => {
            let per_line = if inner.width >= 78 { 16 } else { 8 };
            let lines: Vec<Line> = bytes
                .chunks(per_line)
                .take(inner.height as usize)
                .enumerate()
                .map(|(i, chunk)| hex_line(preview.offset as usize + i * per_line, chunk, per_line, theme))
                .collect();
            frame.render_widget(Paragraph::new(lines), inner);
        }
        PreviewContent::Failed(why) => {
            let text = format!("cannot preview: {}", for_terminal(why));
            frame.render_widget(Paragraph::new(Span::styled(text, theme.fg(theme.error))), inner);
        }
    }
}

/// The preview's area, so the loop can size the image for it.
pub fn preview_area(area: Rect) -> Rect {
    centered(area, area.width.saturating_sub(4), area.height.saturating_sub(2))
}

fn hex_line<'a>(offset: usize, chunk: &[u8], per_line: usize, theme: &Theme) -> Line<'a> {
    let hex: String = chunk.iter().map(|b| format!("{b:02x} ")).collect();
    let text: String = chunk
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    Line::from(vec![
        Span::styled(format!("{offset:08x}  "), theme.muted()),
        Span::styled(
            format!("{hex:<width$} ", width = per_line * 3),
            theme.fg(theme.foreground),
        ),
        Span::styled(text, theme.fg(theme.system)),
    ])
}
