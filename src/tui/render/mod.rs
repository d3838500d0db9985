//! Drawing: a pure function of the app state and the theme. One file per pane;
//! each has `render(frame, area, &app, &theme)`.

mod connections;
mod conversation;
mod header;
mod help;
mod hex;
mod log;
mod overlay;
mod prompt;
mod received;
mod transfers;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};
use ratatui_image::protocol::Protocol;

pub use overlay::preview_area;

use super::app::App;
use super::layout::Panes;
use super::theme::Theme;

/// The whole screen. `image` is the preview's terminal-specific encoding, if any.
pub fn draw(frame: &mut Frame, app: &App, theme: &Theme, image: Option<&Protocol>) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    frame.render_widget(Block::new().style(theme.base()), area);
    let panes = Panes::compute(area, app.show_log);
    if panes.tiny {
        header::render_tiny(frame, panes.header, app, theme);
        conversation::render(frame, panes.conversation, app, theme);
        // The last answer takes the conversation's bottom row: errors stay visible.
        if app.prompt.notice.is_some() && panes.conversation.height > 0 {
            let c = panes.conversation;
            prompt::render_notice(frame, Rect::new(c.x, c.bottom() - 1, c.width, 1), app, theme);
        }
        prompt::render_prompt(frame, panes.prompt, app, theme);
        render_overlays(frame, area, app, theme, image);
        return;
    }
    header::render(frame, panes.header, app, theme);
    connections::render(frame, panes.connections, app, theme);
    conversation::render(frame, panes.conversation, app, theme);
    transfers::render(frame, panes.transfers, app, theme);
    received::render(frame, panes.received, app, theme);
    if app.show_log {
        log::render(frame, panes.log, app, theme);
    }
    prompt::render_notice(frame, panes.notice, app, theme);
    prompt::render_prompt(frame, panes.prompt, app, theme);
    prompt::render_hints(frame, panes.hints, app, theme);
    render_overlays(frame, area, app, theme, image);
}

/// Overlays capture keys, so they are drawn at every size, clipped if need be.
fn render_overlays(frame: &mut Frame, area: Rect, app: &App, theme: &Theme, image: Option<&Protocol>) {
    if app.preview.is_some() {
        overlay::render_preview(frame, area, app, theme, image);
    } else if app.overlay.is_some() {
        overlay::render_reply(frame, area, app, theme);
    }
    if app.help.open {
        help::render(frame, area, app, theme);
    }
}

/// A pane's frame: focused panes stand out.
fn pane_block<'a>(title: impl Into<Line<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    Block::new()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(theme.border(focused))
        .title(title.into().style(theme.title(focused)))
}

/// Shortens text to `width` columns (by characters), marking the cut with `…`.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut s: String = text.chars().take(width - 1).collect();
    s.push('…');
    s
}

fn key_hint<'a>(key: &'a str, what: &'a str, theme: &Theme) -> Vec<Span<'a>> {
    vec![
        Span::styled(key, theme.key()),
        Span::styled(format!(" {what}  "), theme.muted()),
    ]
}

/// A centered rectangle of at most `width` x `height` inside `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn duration_short(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", super::app::human_bytes(bytes_per_sec.max(0.0) as u64))
}

#[cfg(test)]
mod tests;
