//! Each pane's own state: what it scrolled to, selected or is finding. Engine
//! events never touch these; keys and the mouse do, through [`super::App`].

use std::collections::VecDeque;

use chrono::{DateTime, Local};
use tui_input::Input;

use super::model::{DeviceRow, Entry, Model};
use crate::console::{COMMANDS, ViewMode};
use crate::engine::ConnId;

/// The text being found and the match shown (an index into the visible conversation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Find {
    pub needle: String,
    pub current: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ConversationPane {
    /// Every device's lines (F2, `a`), else the selected device's.
    pub show_all: bool,
    /// Entries scrolled back from the tail; 0 follows the tail.
    pub scroll: usize,
    /// Long lines wrap (with a hanging indent); off, Left/Right scroll sideways.
    pub wrap: bool,
    /// Characters scrolled sideways when not wrapping.
    pub hscroll: usize,
    /// Timestamps with milliseconds.
    pub millis: bool,
    /// `/find`: the text and the entry shown.
    pub find: Option<Find>,
    /// `/filter`: only entries containing this text are shown.
    pub filter: Option<String>,
    /// `/view text|hex` (F4).
    pub view: ViewMode,
}

impl Default for ConversationPane {
    fn default() -> Self {
        Self {
            show_all: false,
            scroll: 0,
            wrap: true,
            hscroll: 0,
            millis: false,
            find: None,
            filter: None,
            view: ViewMode::Text,
        }
    }
}

impl ConversationPane {
    pub fn scroll_by(&mut self, lines: isize, len: usize) {
        let wanted = self.scroll as isize + lines;
        self.scroll = wanted.clamp(0, len.saturating_sub(1) as isize) as usize;
    }

    pub fn toggle_all(&mut self) {
        self.show_all = !self.show_all;
        self.scroll = 0;
    }

    pub fn toggle_view(&mut self) {
        self.view = match self.view {
            ViewMode::Text => ViewMode::Hex,
            ViewMode::Hex => ViewMode::Text,
        };
    }

    /// Moves to the next match of `/find` in `entries`: `older` goes up the
    /// history (the first search starts at the newest line), otherwise down toward
    /// the newest. Err says why nothing was found.
    pub fn find_step(&mut self, entries: &VecDeque<Entry>, older: bool) -> Result<(), String> {
        let Some(find) = &mut self.find else {
            return Ok(());
        };
        let filter = self.filter.as_deref();
        let hit = |i: &usize| {
            let text = &entries[*i].text;
            crate::tui::find::contains(text, &find.needle)
                && filter.is_none_or(|f| crate::tui::find::contains(text, f))
        };
        let found = if older {
            let below = find.current.unwrap_or(entries.len());
            (0..below).rev().find(hit)
        } else {
            let above = find.current.map_or(entries.len(), |c| c + 1);
            (above..entries.len()).find(hit)
        };
        match found {
            Some(i) => {
                find.current = Some(i);
                Ok(())
            }
            None if find.current.is_some() => Err(format!(
                "no more matches for {:?} that way; Ctrl-N older, Ctrl-P newer, Esc ends",
                find.needle
            )),
            None => Err(format!("{:?} is not in this conversation", find.needle)),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConnectionsPane {
    /// The selected device: the prompt's target.
    pub selected: Option<ConnId>,
}

impl ConnectionsPane {
    /// The device `step` rows from the selected one (clamped to the list).
    pub fn by_offset(&self, model: &Model, step: isize) -> Option<ConnId> {
        if model.devices.is_empty() {
            return None;
        }
        let current = self.selected.and_then(|c| model.device_position(c)).unwrap_or(0) as isize;
        let next = (current + step).clamp(0, model.devices.len() as isize - 1) as usize;
        model.devices.get(next).map(|d| d.conn)
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReceivedPane {
    /// The row selected (0 is the newest file).
    pub selected: usize,
}

impl ReceivedPane {
    pub fn step(&mut self, down: bool, len: usize) {
        let last = len.saturating_sub(1);
        self.selected = if down {
            (self.selected + 1).min(last)
        } else {
            self.selected.saturating_sub(1)
        };
    }

    /// Rows were added on top: the selection stays on the same file, unless it was
    /// on the newest, which it then follows.
    pub fn follow(&mut self, added: usize, len: usize) {
        if self.selected > 0 && added > 0 {
            self.selected = (self.selected + added).min(len.saturating_sub(1));
        }
    }
}

/// A one-line answer shown above the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub ok: bool,
    pub text: String,
}

/// How long a reply stays under the prompt.
const NOTICE_SECS: i64 = 10;
/// Prompt history entries kept.
pub const KEEP_HISTORY: usize = 500;

#[derive(Debug, Clone, Default)]
pub struct PromptPane {
    pub input: Input,
    pub history: Vec<String>,
    history_pos: Option<usize>,
    pub notice: Option<Notice>,
    /// The notice shown and since when: replies expire after 10 s.
    notice_seen: Option<(String, DateTime<Local>)>,
}

impl PromptPane {
    pub fn say(&mut self, ok: bool, text: impl Into<String>) {
        self.notice = Some(Notice {
            ok,
            text: text.into(),
        });
    }

    /// A reply stays until the next command or 10 s (`hold` keeps it, e.g. while
    /// the quit question waits for its answer).
    pub fn expire_notice(&mut self, now: DateTime<Local>, hold: bool) {
        match (&self.notice, &self.notice_seen) {
            (Some(n), Some((text, since))) if *text == n.text => {
                if (now - *since).num_seconds() >= NOTICE_SECS && !hold {
                    self.notice = None;
                    self.notice_seen = None;
                }
            }
            (Some(n), _) => self.notice_seen = Some((n.text.clone(), now)),
            (None, _) => self.notice_seen = None,
        }
    }

    /// Enter: takes the line (kept in the history), or None when it is blank.
    pub fn submit(&mut self) -> Option<String> {
        let line = self.input.value().to_string();
        self.input.reset();
        self.history_pos = None;
        if line.trim().is_empty() {
            return None;
        }
        if self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if self.history.len() > KEEP_HISTORY {
                self.history.remove(0);
            }
        }
        Some(line)
    }

    pub fn history_step(&mut self, step: isize) {
        if self.history.is_empty() {
            return;
        }
        let last = self.history.len() as isize - 1;
        let pos = match self.history_pos {
            None if step < 0 => last,
            None => return,
            Some(p) => p as isize + step,
        };
        if pos > last {
            self.history_pos = None;
            self.input.reset();
            return;
        }
        let pos = pos.clamp(0, last) as usize;
        self.history_pos = Some(pos);
        self.input = Input::new(self.history[pos].clone());
    }

    /// Appends `text` to the input, with a space between.
    pub fn append(&mut self, text: &str) {
        let mut value = self.input.value().to_string();
        if !value.is_empty() && !value.ends_with(' ') {
            value.push(' ');
        }
        value.push_str(text);
        self.input = Input::new(value);
    }

    /// Tab: complete a `/command`, or a device name after `/to ` or `/kick `.
    pub fn complete(&mut self, devices: &[DeviceRow]) {
        let value = self.input.value().to_string();
        let candidates: Vec<String> = match value.split_once(' ') {
            None if value.starts_with('/') => COMMANDS
                .iter()
                .map(|c| c.0.to_string())
                .filter(|c| c.starts_with(&value))
                .map(|c| format!("{c} "))
                .collect(),
            Some(("/serial", partial)) => serial_paths(partial)
                .into_iter()
                .map(|p| format!("/serial {p}"))
                .collect(),
            Some((cmd, partial)) if matches!(cmd, "/to" | "/kick" | "/close") => devices
                .iter()
                .filter(|d| d.gone_at.is_none() && d.name.starts_with(partial))
                .map(|d| format!("{cmd} {}", d.name))
                .collect(),
            _ => Vec::new(),
        };
        match candidates.as_slice() {
            [] => {}
            [only] => self.input = Input::new(only.clone()),
            many => {
                let common = common_prefix(many);
                if common.len() > value.len() {
                    self.input = Input::new(common);
                } else {
                    self.say(true, many.iter().map(|s| s.trim()).collect::<Vec<_>>().join("  "));
                }
            }
        }
    }
}

/// Serial ports for `/serial PARTIAL`: the entries of PARTIAL's folder that start
/// with its last part (folders end in `/`); with nothing typed, the usual USB
/// and on-board ports in /dev. A `frames://` style prefix is kept.
pub fn serial_paths(partial: &str) -> Vec<String> {
    let (proto, path) = match partial.split_once("://") {
        Some((proto, path)) => (format!("{proto}://"), path),
        None => (String::new(), partial),
    };
    let (folder, start) = match path.rsplit_once('/') {
        Some((folder, start)) => (format!("{folder}/"), start),
        None => ("/dev/".to_string(), path),
    };
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let usual = ["ttyUSB", "ttyACM", "ttyAMA", "ttyS", "rfcomm", "serial", "cu."];
    let mut found: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let wanted = if start.is_empty() && folder == "/dev/" {
                usual.iter().any(|u| name.starts_with(u))
            } else {
                name.starts_with(start) && (!name.starts_with('.') || start.starts_with('.'))
            };
            if !wanted {
                return None;
            }
            let slash = if e.path().is_dir() { "/" } else { "" };
            Some(format!("{proto}{folder}{name}{slash}"))
        })
        .collect();
    found.sort();
    found
}

fn common_prefix(items: &[String]) -> String {
    let first = items.first().map(String::as_str).unwrap_or("");
    let mut len = first.len();
    for item in items {
        len = len.min(
            first
                .bytes()
                .zip(item.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    first[..len].to_string()
}

#[derive(Debug, Clone, Default)]
pub struct HelpPane {
    pub open: bool,
    /// Lines scrolled down (help may be taller than the screen).
    pub scroll: u16,
}

/// Bytes the hex preview moves on PgUp/PgDn.
pub const PREVIEW_PAGE: u64 = 512;

/// What the preview pop-up shows.
#[derive(Debug, Clone, PartialEq)]
pub enum PreviewContent {
    Loading,
    /// The image is decoded; the event loop holds the terminal-specific encoding.
    Image {
        width: u32,
        height: u32,
    },
    /// Not an image (or not decodable): hex and text of the bytes at `offset`.
    Hex(Vec<u8>),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub path: String,
    pub content: PreviewContent,
    /// The hex window: where it starts in the file, and the file's size.
    pub offset: u64,
    pub total: u64,
}

impl Preview {
    pub fn loading(path: String) -> Self {
        Self {
            path,
            content: PreviewContent::Loading,
            offset: 0,
            total: 0,
        }
    }

    /// Where PgUp/PgDn/Home/End move the hex window; None when it stays.
    pub fn page(&self, act: crate::tui::keymap::Act) -> Option<u64> {
        use crate::tui::keymap::Act;
        if !matches!(self.content, PreviewContent::Hex(_)) {
            return None;
        }
        let last = self.total.saturating_sub(1) / 16 * 16;
        let offset = match act {
            Act::PageDown => (self.offset + PREVIEW_PAGE).min(last),
            Act::PageUp => self.offset.saturating_sub(PREVIEW_PAGE),
            Act::First => 0,
            Act::Last => last.saturating_sub(PREVIEW_PAGE - 16),
            _ => return None,
        };
        (offset != self.offset).then_some(offset)
    }
}
