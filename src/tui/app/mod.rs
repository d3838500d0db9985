//! The TUI's state: the [`Model`] that engine events update, and each pane's own
//! view state. It changes only through [`App::on_event`] (engine events),
//! [`App::on_key`] / [`App::on_mouse`] (the operator) and [`App::tick`] (the
//! clock), so it is unit-tested without a terminal; rendering only reads it.

mod model;
mod panes;

use std::collections::VecDeque;

use chrono::{DateTime, Local};
use crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};
use tui_input::Input;
use tui_input::backend::crossterm::EventHandler;

pub use model::*;
pub use panes::*;

use super::keymap::{self, Act, Scope};
use super::layout::{Pane, Panes};
use crate::console::Request;
use crate::engine::journal::ReceivedRecord;
use crate::engine::{Command, ConnId, Event, EventKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Prompt,
    Connections,
    Conversation,
    Transfers,
    Received,
}

impl Focus {
    const ORDER: [Focus; 5] = [
        Focus::Prompt,
        Focus::Connections,
        Focus::Conversation,
        Focus::Transfers,
        Focus::Received,
    ];

    fn step(self, forward: bool) -> Focus {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        let n = Self::ORDER.len();
        Self::ORDER[if forward { (i + 1) % n } else { (i + n - 1) % n }]
    }

    /// The keymap's scope for keys typed while this has the focus.
    pub fn scope(self) -> Scope {
        match self {
            Focus::Prompt => Scope::Prompt,
            Focus::Connections => Scope::Connections,
            Focus::Conversation => Scope::Conversation,
            // Transfers has no keys of its own: typing goes to the prompt.
            Focus::Transfers => Scope::Anywhere,
            Focus::Received => Scope::Received,
        }
    }
}

/// What the event loop must do for the app (the app itself does no I/O).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Engine(Command),
    /// Show this received file (image or hex) in the preview overlay.
    Preview(String),
    /// Put this text on the operator's clipboard (OSC 52: works over SSH and in
    /// tmux with `set-clipboard on`).
    Copy(String),
    /// Ctrl-Z: give the terminal back and stop, until the shell's `fg`.
    Suspend,
    /// Read the previewed file's bytes from this offset (hex preview paging).
    PreviewAt(String, u64),
    Quit,
}

#[derive(Debug, Clone)]
pub struct App {
    pub model: Model,
    pub focus: Focus,
    pub connections: ConnectionsPane,
    pub conversation: ConversationPane,
    pub received: ReceivedPane,
    pub prompt: PromptPane,
    pub help: HelpPane,
    pub preview: Option<Preview>,
    /// A multi-line reply (/list) shown in a pop-up.
    pub overlay: Option<(String, String)>,
    /// Function keys bound to macros in config.toml, with their first line.
    pub macro_keys: Vec<(String, String)>,
    pub show_log: bool,
    pub confirm_quit: bool,
    /// The screen size of the last draw, so mouse positions map to panes.
    pub screen: Rect,
    /// Lines in the log pane (tracing's, counted as they are logged).
    pub log_lines: u64,
}

impl App {
    pub fn new(now: DateTime<Local>) -> Self {
        Self {
            model: Model::new(now),
            focus: Focus::Prompt,
            connections: ConnectionsPane::default(),
            conversation: ConversationPane::default(),
            received: ReceivedPane::default(),
            prompt: PromptPane::default(),
            help: HelpPane::default(),
            preview: None,
            overlay: None,
            macro_keys: Vec::new(),
            show_log: false,
            confirm_quit: false,
            screen: Rect::default(),
            log_lines: 0,
        }
    }

    /// Received files from earlier runs (oldest first, as in received.jsonl).
    pub fn load_received(&mut self, records: impl IntoIterator<Item = ReceivedRecord>) {
        let added = self.model.load_received(records);
        self.received.follow(added, self.model.received.len());
    }

    pub fn selected_device(&self) -> Option<&DeviceRow> {
        self.connections.selected.and_then(|c| self.model.device(c))
    }

    /// The conversation the pane shows: the selected device's, or everyone's.
    pub fn visible_conversation(&self) -> Option<&VecDeque<Entry>> {
        if self.conversation.show_all {
            return Some(&self.model.all);
        }
        self.connections
            .selected
            .and_then(|c| self.model.conversations.get(&c))
    }

    fn visible_len(&self) -> usize {
        self.visible_conversation().map_or(0, VecDeque::len)
    }

    /// Applies one engine event. Returns actions for the loop (e.g. the first device
    /// to connect becomes the target).
    pub fn on_event(&mut self, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        // What the panes follow, read before the model takes the event.
        match &event.kind {
            EventKind::Connected { conn, .. } => {
                let target_gone = self.selected_device().is_none_or(|d| d.gone_at.is_some());
                if target_gone {
                    self.connections.selected = Some(*conn);
                    actions.push(Action::Engine(Command::Select(Some(*conn))));
                }
            }
            EventKind::Error { message } => self.prompt.say(false, message.clone()),
            EventKind::Reply {
                command,
                ok,
                text,
                devices,
                ..
            } => {
                if *ok
                    && command.to_ascii_lowercase().starts_with("/to ")
                    && let Some([device]) = devices.as_deref()
                {
                    self.connections.selected = Some(device.conn);
                }
                if text.contains('\n') {
                    self.overlay = Some((command.clone(), text.clone()));
                } else if !ok || command.starts_with('/') {
                    self.prompt.say(*ok, text.clone());
                } else {
                    self.prompt.notice = None;
                }
            }
            EventKind::Stopped { .. } => actions.push(Action::Quit),
            _ => {}
        }
        let applied = self.model.apply(event);
        self.received
            .follow(applied.received_added, self.model.received.len());
        actions
    }

    /// Once a second: rates and their history, clocks, forgetting old devices.
    /// Returns actions: when the selected device is forgotten, the next live one is
    /// selected (the engine must not fall back to "the only device" unseen).
    pub fn tick(&mut self, now: DateTime<Local>) -> Vec<Action> {
        self.prompt.expire_notice(now, self.confirm_quit);
        let expired = self.model.tick(now);
        if expired.is_empty() {
            return Vec::new();
        }
        if self.connections.selected.is_some_and(|c| expired.contains(&c)) {
            self.connections.selected = None;
        }
        if self.connections.selected.is_none()
            && let Some(next) = self
                .model
                .devices
                .iter()
                .find(|d| d.gone_at.is_none())
                .map(|d| d.conn)
        {
            self.connections.selected = Some(next);
            return vec![Action::Engine(Command::Select(Some(next)))];
        }
        Vec::new()
    }

    /// Terminal input: keys, mouse, paste, resize.
    pub fn on_terminal(&mut self, event: &TermEvent, panes: &Panes) -> Vec<Action> {
        match event {
            TermEvent::Key(key) if key.kind != KeyEventKind::Release => self.on_key(*key),
            TermEvent::Mouse(mouse) => self.on_mouse(*mouse, panes),
            TermEvent::Paste(text) => {
                for c in text.chars().filter(|c| !c.is_control()) {
                    self.prompt.input.handle(tui_input::InputRequest::InsertChar(c));
                }
                self.focus = Focus::Prompt;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Keys go, in this order, to an open pop-up, the focused pane, the keys that
    /// work anywhere, and finally the prompt: all of them through the keymap.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        if self.confirm_quit {
            self.confirm_quit = false;
            self.prompt.notice = None;
            if key.code == KeyCode::Esc {
                return Vec::new();
            }
            if keymap::act(Scope::Anywhere, key) == Some(Act::Quit) {
                return vec![Action::Quit];
            }
        }
        // Pop-ups own their keys (Esc, arrows, PgUp/PgDn). A printable key or Enter
        // closes them and then does what it would have done without them, so
        // nothing typed is ever lost; Ctrl keys and F-keys work as anywhere.
        let typed = matches!(key.code, KeyCode::Char(_) | KeyCode::Enter)
            && !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        if let Some(scope) = self.popup_scope() {
            if let Some(act) = keymap::act(scope, key) {
                return self.popup_act(act);
            }
            if typed {
                self.close_popups();
            } else if keymap::act(Scope::Anywhere, key).is_none() {
                return Vec::new();
            }
        }
        if let Some(act) = keymap::act(self.focus.scope(), key)
            && let Some(actions) = self.pane_act(act, key)
        {
            return actions;
        }
        if let Some(act) = keymap::act(Scope::Anywhere, key)
            && let Some(actions) = self.anywhere_act(act, key)
        {
            return actions;
        }
        if let KeyCode::Char(_) = key.code
            && self.focus != Focus::Prompt
        {
            // A printable key in a list pane goes to the prompt.
            self.focus = Focus::Prompt;
        }
        if self.focus == Focus::Prompt {
            self.prompt.input.handle_event(&TermEvent::Key(key));
        }
        Vec::new()
    }

    fn popup_scope(&self) -> Option<Scope> {
        if self.help.open {
            Some(Scope::Help)
        } else if self.preview.is_some() || self.overlay.is_some() {
            Some(Scope::Popup)
        } else {
            None
        }
    }

    fn close_popups(&mut self) {
        self.help.open = false;
        self.preview = None;
        self.overlay = None;
    }

    fn popup_act(&mut self, act: Act) -> Vec<Action> {
        if self.help.open {
            let scroll = &mut self.help.scroll;
            match act {
                Act::Back => self.help.open = false,
                Act::Down => *scroll = scroll.saturating_add(1),
                Act::Up => *scroll = scroll.saturating_sub(1),
                Act::PageDown => *scroll = scroll.saturating_add(10),
                Act::PageUp => *scroll = scroll.saturating_sub(10),
                _ => {}
            }
            return Vec::new();
        }
        if act == Act::Back {
            self.preview = None;
            self.overlay = None;
            return Vec::new();
        }
        // The hex preview pages through the whole file, reading only what shows.
        if let Some(preview) = &mut self.preview
            && let Some(offset) = preview.page(act)
        {
            preview.offset = offset;
            return vec![Action::PreviewAt(preview.path.clone(), offset)];
        }
        Vec::new()
    }

    /// The focused pane's keys; None passes the key on.
    fn pane_act(&mut self, act: Act, key: KeyEvent) -> Option<Vec<Action>> {
        match (self.focus, act) {
            (Focus::Prompt, Act::Enter) => return Some(self.submit()),
            (Focus::Prompt, Act::Help) if self.prompt.input.value().is_empty() => self.open_help(),
            (Focus::Prompt, Act::Help) => return None,
            (Focus::Prompt, Act::Up) => self.prompt.history_step(-1),
            (Focus::Prompt, Act::Down) => self.prompt.history_step(1),
            (Focus::Prompt, Act::Complete) if self.prompt.input.value().is_empty() => return None,
            (Focus::Prompt, Act::Complete) => self.prompt.complete(&self.model.devices),
            (Focus::Connections, Act::Up | Act::Down) => {
                let step = if act == Act::Up { -1 } else { 1 };
                return Some(self.select(self.connections.by_offset(&self.model, step)));
            }
            (Focus::Connections, Act::First) => {
                return Some(self.select(self.model.devices.first().map(|d| d.conn)));
            }
            (Focus::Connections, Act::Last) => {
                return Some(self.select(self.model.devices.last().map(|d| d.conn)));
            }
            (Focus::Connections, Act::Enter) => self.focus = Focus::Prompt,
            (Focus::Conversation, _) => return self.conversation_act(act, key),
            (Focus::Received, _) => return self.received_act(act),
            _ => return None,
        }
        Some(Vec::new())
    }

    fn conversation_act(&mut self, act: Act, _key: KeyEvent) -> Option<Vec<Action>> {
        let len = self.visible_len();
        let pane = &mut self.conversation;
        match act {
            Act::Up => pane.scroll_by(1, len),
            Act::Down => pane.scroll_by(-1, len),
            Act::First => pane.scroll_by(isize::MAX / 2, len),
            Act::Last => pane.scroll = 0,
            Act::ToggleAll => pane.toggle_all(),
            Act::Wrap => {
                pane.wrap = !pane.wrap;
                pane.hscroll = 0;
            }
            Act::Millis => pane.millis = !pane.millis,
            Act::Left if !pane.wrap => pane.hscroll = pane.hscroll.saturating_sub(8),
            Act::Right if !pane.wrap => pane.hscroll += 8,
            Act::Left | Act::Right => {}
            Act::Copy => {
                // The line found, else the newest line shown.
                let scroll = self.conversation.scroll;
                let found = self.conversation.find.as_ref().and_then(|f| f.current);
                let entries = self.visible_conversation();
                let index = found.or_else(|| entries.and_then(|e| e.len().checked_sub(1 + scroll)));
                let Some(text) = entries
                    .zip(index)
                    .and_then(|(e, i)| e.get(i))
                    .map(|e| e.text.clone())
                else {
                    return Some(Vec::new());
                };
                self.prompt.say(true, "copied the line to the clipboard");
                return Some(vec![Action::Copy(text)]);
            }
            _ => return None,
        }
        Some(Vec::new())
    }

    fn received_act(&mut self, act: Act) -> Option<Vec<Action>> {
        let len = self.model.received.len();
        let path = self
            .model
            .received
            .get(self.received.selected)
            .and_then(|r| r.path.clone());
        match act {
            Act::Up => self.received.step(false, len),
            Act::Down => self.received.step(true, len),
            Act::First => self.received.selected = 0,
            Act::Last => self.received.selected = len.saturating_sub(1),
            Act::Enter | Act::Copy | Act::InsertPath if path.is_none() => {}
            Act::Enter => {
                let path = path?;
                self.preview = Some(Preview::loading(path.clone()));
                return Some(vec![Action::Preview(path)]);
            }
            Act::Copy => {
                let path = path?;
                self.prompt.say(
                    true,
                    format!("copied {path} to the clipboard (i puts it in the prompt)"),
                );
                return Some(vec![Action::Copy(path)]);
            }
            Act::InsertPath => {
                let path = path?;
                self.prompt.append(&path);
                self.focus = Focus::Prompt;
                self.prompt.say(true, path);
            }
            _ => return None,
        }
        Some(Vec::new())
    }

    /// Keys that work anywhere; None passes the key on to the prompt.
    fn anywhere_act(&mut self, act: Act, key: KeyEvent) -> Option<Vec<Action>> {
        match act {
            Act::Quit if self.model.transfer_in_flight() => {
                self.confirm_quit = true;
                self.prompt.say(
                    false,
                    format!(
                        "{} transfer(s) in flight: press Ctrl-C again to quit (they are kept as .part), Esc to stay",
                        self.model.transfers.len()
                    ),
                );
            }
            Act::Quit => return Some(vec![Action::Quit]),
            Act::Suspend => return Some(vec![Action::Suspend]),
            Act::OpenFind => {
                self.focus = Focus::Prompt;
                self.prompt.input = Input::new("/find ".into());
            }
            Act::FindOlder | Act::FindNewer if self.conversation.find.is_some() => {
                self.find_step(act == Act::FindOlder);
            }
            Act::FindOlder | Act::FindNewer => return None,
            Act::Help => self.open_help(),
            Act::ToggleAll => self.conversation.toggle_all(),
            Act::ToggleLog => self.show_log = !self.show_log,
            Act::ToggleHex => self.conversation.toggle_view(),
            Act::Macro => {
                let KeyCode::F(n) = key.code else {
                    return None;
                };
                let name = format!("F{n}");
                if self.macro_keys.iter().any(|(k, _)| *k == name) {
                    return Some(vec![Action::Engine(Command::Line(format!("/macro {name}")))]);
                }
                self.prompt.say(
                    false,
                    format!("{name} has no macro; bind one under [macros] in config.toml"),
                );
            }
            Act::Back if self.conversation.find.is_some() => {
                self.conversation.find = None;
                self.conversation.scroll = 0;
            }
            Act::Back => {
                self.focus = Focus::Prompt;
                self.prompt.notice = None;
            }
            Act::PageUp | Act::PageDown => {
                let lines = if act == Act::PageUp { 10 } else { -10 };
                let len = self.visible_len();
                self.conversation.scroll_by(lines, len);
            }
            Act::FocusNext => self.focus = self.focus.step(true),
            Act::FocusPrev => self.focus = self.focus.step(false),
            _ => return None,
        }
        Some(Vec::new())
    }

    fn open_help(&mut self) {
        self.help.open = true;
        self.help.scroll = 0;
    }

    fn find_step(&mut self, older: bool) {
        // Spelled out (not visible_conversation) so the pane can change while the
        // model's entries are borrowed.
        let entries = if self.conversation.show_all {
            Some(&self.model.all)
        } else {
            self.connections
                .selected
                .and_then(|c| self.model.conversations.get(&c))
        };
        let Some(entries) = entries else {
            return;
        };
        match self.conversation.find_step(entries, older) {
            Ok(()) => self.prompt.notice = None,
            Err(why) => self.prompt.say(false, why),
        }
    }

    /// Selects `conn` (if it is not already): the prompt talks to it.
    fn select(&mut self, conn: Option<ConnId>) -> Vec<Action> {
        let Some(conn) = conn else {
            return Vec::new();
        };
        if self.connections.selected == Some(conn) {
            return Vec::new();
        }
        self.connections.selected = Some(conn);
        self.conversation.scroll = 0;
        vec![Action::Engine(Command::Select(Some(conn)))]
    }

    /// Enter in the prompt: the pane's own commands are handled here, the rest goes
    /// to the engine.
    fn submit(&mut self) -> Vec<Action> {
        let Some(line) = self.prompt.submit() else {
            return Vec::new();
        };
        self.conversation.scroll = 0;
        match crate::console::parse(&line) {
            Ok(Request::Help) => self.open_help(),
            Ok(Request::Find(needle)) => {
                self.conversation.find = Some(Find {
                    needle,
                    current: None,
                });
                self.find_step(true);
            }
            Ok(Request::Filter(filter)) => {
                let text = match &filter {
                    Some(f) => format!("showing only lines with {f:?}; /filter alone shows all"),
                    None => "showing every line".into(),
                };
                self.prompt.say(true, text);
                self.conversation.filter = filter;
            }
            Ok(Request::View(mode)) => self.conversation.view = mode,
            _ => return vec![Action::Engine(Command::Line(line))],
        }
        Vec::new()
    }

    pub fn on_mouse(&mut self, mouse: MouseEvent, panes: &Panes) -> Vec<Action> {
        let at = Position::new(mouse.column, mouse.row);
        let Some((pane, area)) = panes.at(at) else {
            return Vec::new();
        };
        match mouse.kind {
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let up = mouse.kind == MouseEventKind::ScrollUp;
                match pane {
                    Pane::Conversation => {
                        let len = self.visible_len();
                        self.conversation.scroll_by(if up { 3 } else { -3 }, len);
                    }
                    Pane::Connections => {
                        let next = self.connections.by_offset(&self.model, if up { -1 } else { 1 });
                        return self.select(next);
                    }
                    Pane::Received => self.received.step(!up, self.model.received.len()),
                    _ => {}
                }
                Vec::new()
            }
            MouseEventKind::Down(_) => {
                self.focus = match pane {
                    Pane::Connections => Focus::Connections,
                    Pane::Conversation => Focus::Conversation,
                    Pane::Transfers => Focus::Transfers,
                    Pane::Received => Focus::Received,
                    Pane::Prompt | Pane::Header | Pane::Log => Focus::Prompt,
                };
                // Rows start below the border and the column titles.
                let on_a_row = mouse.row >= area.y + 2 && mouse.row + 1 < area.bottom();
                let row = mouse.row.saturating_sub(area.y + 2) as usize;
                let visible = area.height.saturating_sub(3) as usize;
                match pane {
                    Pane::Connections if on_a_row => {
                        let selected = self
                            .connections
                            .selected
                            .and_then(|c| self.model.device_position(c))
                            .unwrap_or(0);
                        let offset = super::layout::list_offset(selected, visible);
                        let conn = self.model.devices.get(offset + row).map(|d| d.conn);
                        return self.select(conn);
                    }
                    Pane::Received if on_a_row => {
                        let offset = super::layout::list_offset(self.received.selected, visible);
                        self.received.selected =
                            (offset + row).min(self.model.received.len().saturating_sub(1));
                    }
                    _ => {}
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The prompt's label: who plain text goes to.
    pub fn target_label(&self) -> String {
        match self.selected_device() {
            Some(d) if d.gone_at.is_none() => d.name.clone(),
            Some(d) => format!("{} (gone)", d.name),
            None if self.model.live_devices() == 0 => "no device".into(),
            None => "choose a device".into(),
        }
    }
}

#[cfg(test)]
mod tests;
