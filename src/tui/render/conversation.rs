//! The selected device's conversation (or everyone's), newest at the bottom,
//! every device text escaped so no control character reaches the terminal.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use std::collections::VecDeque;

use ratatui::style::{Modifier, Style};

use super::{hex, pane_block};
use crate::text::for_terminal;
use crate::tui::app::{App, Entry, EntryKind, Focus};
use crate::tui::find;
use crate::tui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if area.height == 0 {
        return;
    }
    let whose = if app.conversation.show_all {
        "all devices".to_string()
    } else {
        app.selected_device().map_or_else(
            || "no device selected".into(),
            |d| for_terminal(&d.name).into_owned(),
        )
    };
    let mut scrolled = if app.conversation.scroll > 0 {
        format!(" ↑{} (End follows) ", app.conversation.scroll)
    } else {
        String::new()
    };
    if app.conversation.view == crate::console::ViewMode::Hex {
        scrolled.push_str("· hex (F4 text) ");
    }
    if let Some(f) = &app.conversation.filter {
        scrolled.push_str(&format!("· filter {:?} ", for_terminal(f)));
    }
    if let Some(f) = &app.conversation.find {
        scrolled.push_str(&format!("· find {:?} (Ctrl-N/P, Esc) ", for_terminal(&f.needle)));
    }
    if !app.conversation.wrap {
        scrolled.push_str("· no wrap (w) ");
    }
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
            let hint = if app.model.devices.is_empty() {
                "No device yet. Point a board at an address above."
            } else {
                "Select a device (↑/↓ in Connections), or F2 for all."
            };
            frame.render_widget(Paragraph::new(Span::styled(hint, theme.muted())), inner);
        }
        return;
    };
    if app.conversation.view == crate::console::ViewMode::Hex {
        let shown = hex::render_rows(app, inner.height as usize, inner.width as usize, theme);
        frame.render_widget(Paragraph::new(shown), inner);
        return;
    }
    let rows = visible_rows(app, entries, inner.height as usize, inner.width as usize, theme);
    frame.render_widget(Paragraph::new(rows), inner);
}

/// The rows that fit, newest at the bottom: only the entries that show are
/// wrapped and styled, so 100,000 lines of history cost no more than a screen.
fn visible_rows<'a>(
    app: &App,
    entries: &VecDeque<Entry>,
    height: usize,
    width: usize,
    theme: &Theme,
) -> Vec<Line<'a>> {
    if height == 0 {
        return Vec::new();
    }
    let needle = app.conversation.find.as_ref().map(|f| f.needle.as_str());
    let keep = |e: &Entry| {
        app.conversation
            .filter
            .as_ref()
            .is_none_or(|f| find::contains(&e.text, f))
    };
    if let Some(current) = app
        .conversation
        .find
        .as_ref()
        .and_then(|f| f.current)
        .filter(|&c| c < entries.len())
    {
        return found_rows(app, entries, current, height, width, theme);
    }
    // The tail, minus the entries scrolled back; only what fits is built.
    let mut rows: Vec<Line> = Vec::new();
    for e in entries
        .iter()
        .rev()
        .filter(|e| keep(e))
        .skip(app.conversation.scroll)
    {
        let mut lines = entry_rows(e, app, width, needle, false, theme);
        lines.reverse();
        rows.extend(lines);
        if rows.len() >= height {
            break;
        }
    }
    rows.truncate(height);
    rows.reverse();
    rows
}

/// The rows around a `/find` match: the row with the match in the middle of the
/// pane (even inside a line that wraps over many rows), older lines above it,
/// newer below.
fn found_rows<'a>(
    app: &App,
    entries: &VecDeque<Entry>,
    current: usize,
    height: usize,
    width: usize,
    theme: &Theme,
) -> Vec<Line<'a>> {
    let needle = app.conversation.find.as_ref().map(|f| f.needle.as_str());
    let keep = |e: &Entry| {
        app.conversation
            .filter
            .as_ref()
            .is_none_or(|f| find::contains(&e.text, f))
    };
    let found = entry_rows(&entries[current], app, width, needle, true, theme);
    // The first row that holds part of the match (drawn in the selection style).
    let first_match = found
        .iter()
        .position(|line| line.spans.iter().any(|span| span.style == theme.selection()))
        .unwrap_or(0);
    let (before, from_match) = found.split_at(first_match);
    let mut below: Vec<Line> = from_match.to_vec();
    for e in entries.range(current + 1..).filter(|e| keep(e)) {
        if below.len() >= height - height / 2 {
            break;
        }
        below.extend(entry_rows(e, app, width, needle, false, theme));
    }
    let mut above: Vec<Line> = before.iter().rev().cloned().collect();
    let wanted_above = height.saturating_sub(below.len().min(height - height / 2));
    for e in entries.range(..current).rev().filter(|e| keep(e)) {
        if above.len() >= wanted_above {
            break;
        }
        let mut lines = entry_rows(e, app, width, needle, false, theme);
        lines.reverse();
        above.extend(lines);
    }
    above.truncate(wanted_above);
    above.reverse();
    above.extend(below);
    above.truncate(height);
    above
}

/// One entry as rows: time and marker, then the text, wrapped under itself (a
/// hanging indent) or cut, with `/find` matches highlighted.
fn entry_rows<'a>(
    e: &Entry,
    app: &App,
    width: usize,
    needle: Option<&str>,
    current: bool,
    theme: &Theme,
) -> Vec<Line<'a>> {
    let ts = if app.conversation.millis {
        e.ts.format("%H:%M:%S%.3f ").to_string()
    } else {
        e.ts.format("%H:%M:%S ").to_string()
    };
    let device = for_terminal(&e.device);
    let show_device = app.conversation.show_all;
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
    let indent = ts.chars().count() + marker.chars().count();
    let text: Vec<char> = for_terminal(&e.text).chars().collect();
    let matches = needle.map_or_else(Vec::new, |n| find::match_ranges(&text, n));
    let highlight = if current {
        theme.selection()
    } else {
        theme.fg(theme.system).add_modifier(Modifier::REVERSED)
    };
    let room = width.saturating_sub(indent).max(1);
    let chunks: Vec<(usize, usize)> = if app.conversation.wrap {
        (0..text.len().max(1))
            .step_by(room)
            .map(|a| (a, (a + room).min(text.len())))
            .collect()
    } else {
        let a = app.conversation.hscroll.min(text.len());
        vec![(a, (a + room).min(text.len()))]
    };
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, (a, b))| {
            let mut spans = if i == 0 {
                vec![
                    Span::styled(ts.clone(), theme.muted()),
                    Span::styled(marker.clone(), style),
                ]
            } else {
                vec![Span::raw(" ".repeat(indent))]
            };
            spans.extend(styled(&text, a, b, &matches, style, highlight));
            Line::from(spans)
        })
        .collect()
}

/// `text[a..b]` as spans, the parts inside a match in `highlight`.
fn styled<'a>(
    text: &[char],
    a: usize,
    b: usize,
    matches: &[(usize, usize)],
    style: Style,
    highlight: Style,
) -> Vec<Span<'a>> {
    let mut spans = Vec::new();
    let mut at = a;
    for &(m0, m1) in matches.iter().filter(|(m0, m1)| *m1 > a && *m0 < b) {
        let (m0, m1) = (m0.max(a), m1.min(b));
        if m0 > at {
            spans.push(Span::styled(text[at..m0].iter().collect::<String>(), style));
        }
        spans.push(Span::styled(text[m0..m1].iter().collect::<String>(), highlight));
        at = m1;
    }
    if at < b {
        spans.push(Span::styled(text[at..b].iter().collect::<String>(), style));
    }
    spans
}
