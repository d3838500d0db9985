//! Where each pane goes, computed from the screen size alone: rendering and mouse
//! handling use the same function, so a click always lands on what is shown.

use ratatui::layout::{Constraint, Layout, Position, Rect};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Header,
    Connections,
    Conversation,
    Transfers,
    Received,
    Log,
    Prompt,
}

/// The screen below this is too small for panes: only a summary and the prompt.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Panes {
    pub tiny: bool,
    pub header: Rect,
    pub connections: Rect,
    pub conversation: Rect,
    pub transfers: Rect,
    pub received: Rect,
    pub log: Rect,
    pub notice: Rect,
    pub prompt: Rect,
    pub hints: Rect,
}

impl Panes {
    pub fn compute(area: Rect, show_log: bool) -> Panes {
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            let [header, conversation, prompt] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)])
                    .areas(area);
            return Panes {
                tiny: true,
                header,
                conversation,
                prompt,
                ..Panes::default()
            };
        }
        let [header, body, notice, prompt, hints] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Min(4),
            Constraint::Length(1),
            Constraint::Length(3),
            Constraint::Length(1),
        ])
        .areas(area);
        let (main, log) = if show_log {
            let log_height = (body.height / 3).clamp(3, 10);
            let [main, log] =
                Layout::vertical([Constraint::Min(3), Constraint::Length(log_height)]).areas(body);
            (main, log)
        } else {
            (body, Rect::default())
        };
        let left_share = if area.width >= 120 { 42 } else { 45 };
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(left_share), Constraint::Min(10)]).areas(main);
        let [connections, transfers] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Min(3)]).areas(left);
        let [conversation, received] =
            Layout::vertical([Constraint::Percentage(62), Constraint::Min(3)]).areas(right);
        Panes {
            tiny: false,
            header,
            connections,
            conversation,
            transfers,
            received,
            log,
            notice,
            prompt,
            hints,
        }
    }

    /// The pane under a screen position.
    pub fn at(&self, at: Position) -> Option<(Pane, Rect)> {
        [
            (Pane::Header, self.header),
            (Pane::Connections, self.connections),
            (Pane::Conversation, self.conversation),
            (Pane::Transfers, self.transfers),
            (Pane::Received, self.received),
            (Pane::Log, self.log),
            (Pane::Prompt, self.prompt),
        ]
        .into_iter()
        .find(|(_, r)| r.contains(at))
    }
}

/// The first row shown in a list of `visible` rows so that `selected` is in view.
pub fn list_offset(selected: usize, visible: usize) -> usize {
    selected.saturating_sub(visible.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_gives_panes_inside_the_screen() {
        for (w, h) in [(0, 0), (1, 1), (20, 5), (39, 30), (80, 24), (140, 42), (400, 120)] {
            let area = Rect::new(0, 0, w, h);
            for log in [false, true] {
                let p = Panes::compute(area, log);
                for r in [
                    p.header,
                    p.connections,
                    p.conversation,
                    p.transfers,
                    p.received,
                    p.log,
                    p.prompt,
                    p.hints,
                ] {
                    assert!(area.union(r) == area || r.area() == 0, "{w}x{h}: {r:?}");
                }
                assert_eq!(p.tiny, w < MIN_WIDTH || h < MIN_HEIGHT);
            }
        }
    }

    #[test]
    fn clicks_find_their_pane() {
        let p = Panes::compute(Rect::new(0, 0, 80, 24), false);
        let inside = |r: Rect| Position::new(r.x + 1, r.y + 1);
        assert_eq!(p.at(inside(p.connections)).map(|x| x.0), Some(Pane::Connections));
        assert_eq!(p.at(inside(p.received)).map(|x| x.0), Some(Pane::Received));
        assert_eq!(p.at(inside(p.prompt)).map(|x| x.0), Some(Pane::Prompt));
    }

    #[test]
    fn list_offset_keeps_selection_visible() {
        assert_eq!(list_offset(0, 5), 0);
        assert_eq!(list_offset(4, 5), 0);
        assert_eq!(list_offset(5, 5), 1);
        assert_eq!(list_offset(3, 0), 3);
    }
}
