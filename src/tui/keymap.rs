//! Every key the console knows, in one table: the key handler looks keys up
//! here, and F1 help and the footer hints are drawn from the same rows, so the
//! three can never disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Where a binding applies. Pop-ups come first, then the focused pane, then
/// the keys that work anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Anywhere,
    Prompt,
    Connections,
    Conversation,
    Received,
    /// The F1 help pop-up.
    Help,
    /// The file preview and the `/list` style reply pop-ups.
    Popup,
}

impl Scope {
    pub fn title(self) -> &'static str {
        match self {
            Scope::Anywhere => "Anywhere",
            Scope::Prompt => "Prompt",
            Scope::Connections => "Connections pane",
            Scope::Conversation => "Conversation pane",
            Scope::Received => "Received pane",
            Scope::Help => "Help",
            Scope::Popup => "Preview and replies",
        }
    }
}

/// What a key does; the app carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Quit,
    Suspend,
    OpenFind,
    FindOlder,
    FindNewer,
    Help,
    ToggleAll,
    ToggleLog,
    ToggleHex,
    /// F5..F12: the macro bound to the key in config.toml.
    Macro,
    Back,
    PageUp,
    PageDown,
    FocusNext,
    FocusPrev,
    Up,
    Down,
    First,
    Last,
    Left,
    Right,
    Enter,
    Wrap,
    Millis,
    Copy,
    InsertPath,
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

const fn key(code: KeyCode) -> Key {
    Key { code, ctrl: false }
}

const fn ch(c: char) -> Key {
    key(KeyCode::Char(c))
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: true,
    }
}

pub struct Binding {
    pub scope: Scope,
    pub keys: &'static [Key],
    /// How help names the keys.
    pub label: &'static str,
    pub act: Act,
    pub help: &'static str,
    /// The footer's word for it, when the footer shows it.
    pub hint: Option<&'static str>,
}

const fn bind(
    scope: Scope,
    keys: &'static [Key],
    label: &'static str,
    act: Act,
    help: &'static str,
    hint: Option<&'static str>,
) -> Binding {
    Binding {
        scope,
        keys,
        label,
        act,
        help,
        hint,
    }
}

use Act::*;
use KeyCode::{
    BackTab, Down as DownKey, End, Enter as EnterKey, Esc, Home, PageDown as PgDn, PageUp as PgUp, Tab,
    Up as UpKey,
};
use Scope::{Anywhere, Connections, Conversation, Popup, Prompt, Received};

const F1: Key = key(KeyCode::F(1));
const UP: Key = key(UpKey);
const DOWN: Key = key(DownKey);
const PGUP: Key = key(PgUp);
const PGDN: Key = key(PgDn);
const HOME: Key = key(Home);
const END: Key = key(End);
const ESC: Key = key(Esc);
const ENTER: Key = key(EnterKey);

pub const BINDINGS: &[Binding] = &[
    bind(Anywhere, &[F1], "F1", Help, "this help", Some("help")),
    bind(
        Anywhere,
        &[key(Tab)],
        "Tab",
        FocusNext,
        "next pane (completes while typing)",
        Some("focus"),
    ),
    bind(
        Anywhere,
        &[key(BackTab)],
        "Shift-Tab",
        FocusPrev,
        "previous pane",
        None,
    ),
    bind(
        Anywhere,
        &[ESC],
        "Esc",
        Back,
        "end find; back to the prompt; close pop-ups",
        None,
    ),
    bind(
        Anywhere,
        &[key(KeyCode::F(2))],
        "F2",
        ToggleAll,
        "conversation of all devices / the selected one",
        Some("all devices"),
    ),
    bind(
        Anywhere,
        &[key(KeyCode::F(3))],
        "F3",
        ToggleLog,
        "show or hide the log",
        Some("log"),
    ),
    bind(
        Anywhere,
        &[key(KeyCode::F(4))],
        "F4",
        ToggleHex,
        "conversation as text or hex (/view)",
        None,
    ),
    bind(
        Anywhere,
        &[PGUP, PGDN],
        "PgUp/PgDn",
        PageUp,
        "scroll the conversation",
        Some("scroll"),
    ),
    bind(
        Anywhere,
        &[ctrl('f')],
        "Ctrl-F",
        OpenFind,
        "find in the conversation (/find TEXT)",
        None,
    ),
    bind(
        Anywhere,
        &[ctrl('n')],
        "Ctrl-N/P",
        FindOlder,
        "older / newer match while finding",
        None,
    ),
    bind(
        Anywhere,
        &[ctrl('p')],
        "",
        FindNewer,
        "newer match while finding",
        None,
    ),
    bind(
        Anywhere,
        &[key(KeyCode::F(5))],
        "F5 .. F12",
        Macro,
        "macros from config.toml ([macros])",
        None,
    ),
    bind(
        Anywhere,
        &[ctrl('z')],
        "Ctrl-Z",
        Suspend,
        "suspend (the shell's fg restores)",
        None,
    ),
    bind(
        Anywhere,
        &[ctrl('c'), ctrl('q')],
        "Ctrl-C",
        Quit,
        "quit (asks first while a transfer is in flight)",
        Some("quit"),
    ),
    bind(
        Prompt,
        &[ch('?')],
        "?",
        Help,
        "this help, when the prompt is empty",
        None,
    ),
    bind(
        Prompt,
        &[ENTER],
        "Enter",
        Enter,
        "send (text to the device, /commands to the console)",
        None,
    ),
    bind(Prompt, &[UP, DOWN], "↑/↓", Up, "history of sent lines", None),
    bind(
        Prompt,
        &[key(Tab)],
        "Tab",
        Complete,
        "complete /commands and device names",
        None,
    ),
    bind(
        Connections,
        &[UP, ch('k')],
        "↑/↓, k/j",
        Up,
        "previous / next device",
        None,
    ),
    bind(Connections, &[DOWN, ch('j')], "", Down, "next device", None),
    bind(
        Connections,
        &[HOME, ch('g')],
        "Home/g, End/G",
        First,
        "first / last device",
        None,
    ),
    bind(Connections, &[END, ch('G')], "", Last, "last device", None),
    bind(
        Connections,
        &[ENTER],
        "Enter",
        Enter,
        "talk to it (back to the prompt)",
        Some("talk"),
    ),
    bind(
        Conversation,
        &[UP, ch('k')],
        "↑/↓, k/j",
        Up,
        "scroll up / down a line",
        None,
    ),
    bind(
        Conversation,
        &[DOWN, ch('j')],
        "",
        Down,
        "scroll down a line",
        None,
    ),
    bind(
        Conversation,
        &[HOME, ch('g')],
        "Home/g, End/G",
        First,
        "oldest line / follow the newest again",
        None,
    ),
    bind(
        Conversation,
        &[END, ch('G')],
        "",
        Last,
        "follow the newest line",
        None,
    ),
    bind(
        Conversation,
        &[key(KeyCode::Left)],
        "←/→",
        Left,
        "scroll sideways (when not wrapping)",
        None,
    ),
    bind(
        Conversation,
        &[key(KeyCode::Right)],
        "",
        Right,
        "scroll sideways",
        None,
    ),
    bind(
        Conversation,
        &[ch('a')],
        "a",
        ToggleAll,
        "all devices / the selected one",
        None,
    ),
    bind(
        Conversation,
        &[ch('w')],
        "w",
        Wrap,
        "wrap long lines on or off",
        Some("wrap"),
    ),
    bind(
        Conversation,
        &[ch('t')],
        "t",
        Millis,
        "timestamps with milliseconds",
        Some("ms"),
    ),
    bind(
        Conversation,
        &[ch('y')],
        "y",
        Copy,
        "copy the found (else newest) line to the clipboard",
        Some("copy"),
    ),
    bind(
        Received,
        &[UP, ch('k')],
        "↑/↓, k/j",
        Up,
        "newer / older file",
        None,
    ),
    bind(Received, &[DOWN, ch('j')], "", Down, "next file", None),
    bind(
        Received,
        &[HOME, ch('g')],
        "Home/g, End/G",
        First,
        "newest / oldest file",
        None,
    ),
    bind(Received, &[END, ch('G')], "", Last, "oldest file", None),
    bind(
        Received,
        &[ENTER],
        "Enter",
        Enter,
        "preview the file (image or hex)",
        Some("preview"),
    ),
    bind(
        Received,
        &[ch('y')],
        "y",
        Copy,
        "copy its path to the clipboard (OSC 52)",
        Some("copy path"),
    ),
    bind(
        Received,
        &[ch('i')],
        "i",
        InsertPath,
        "put its path into the prompt",
        Some("path to prompt"),
    ),
    bind(Scope::Help, &[ESC, F1], "Esc, F1", Back, "close help", None),
    bind(
        Scope::Help,
        &[UP, DOWN, PGUP, PGDN],
        "↑/↓, PgUp/PgDn",
        Down,
        "scroll help",
        None,
    ),
    bind(Popup, &[ESC], "Esc", Back, "close the pop-up", None),
    bind(
        Popup,
        &[PGUP, PGDN, HOME, END],
        "PgUp/PgDn, Home/End",
        PageDown,
        "page through a file's bytes",
        None,
    ),
    bind(Popup, &[UP, DOWN], "↑/↓", Down, "(kept by the pop-up)", None),
];

/// The rows help shows. A pair of keys with two acts (↑ and ↓) has two rows;
/// the second has no label and help folds it into the first.
pub fn help_rows() -> impl Iterator<Item = &'static Binding> {
    BINDINGS.iter().filter(|b| !b.label.is_empty())
}

/// The binding of `key` in `scope`, if any.
pub fn lookup(scope: Scope, key: KeyEvent) -> Option<&'static Binding> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let code = match key.code {
        // Shift-letters arrive as the capital, with or without SHIFT.
        KeyCode::Char(c) => KeyCode::Char(c),
        // F5..F12 share one row.
        KeyCode::F(n) if (5..=12).contains(&n) => KeyCode::F(5),
        other => other,
    };
    BINDINGS
        .iter()
        .find(|b| b.scope == scope && b.keys.iter().any(|k| k.code == code && k.ctrl == ctrl))
}

/// The act of `key` in `scope`, resolving the rows that share one act for two
/// directions (PgUp/PgDn, ↑/↓ in the prompt and pop-ups).
pub fn act(scope: Scope, key: KeyEvent) -> Option<Act> {
    let b = lookup(scope, key)?;
    Some(match (b.act, key.code) {
        (PageUp, KeyCode::PageDown) => PageDown,
        (Up, KeyCode::Down) => Down,
        (Down, KeyCode::Up) => Up,
        (Down, KeyCode::PageUp) | (PageDown, KeyCode::PageUp) => PageUp,
        (Down, KeyCode::PageDown) => PageDown,
        (PageDown, KeyCode::Home) => First,
        (PageDown, KeyCode::End) => Last,
        (act, _) => act,
    })
}

/// Footer hints for the focused pane, then the ones that hold anywhere.
pub fn hints(focus: Scope) -> impl Iterator<Item = &'static Binding> {
    let focused = BINDINGS
        .iter()
        .filter(move |b| b.scope == focus && focus != Anywhere);
    let anywhere = BINDINGS.iter().filter(|b| b.scope == Anywhere);
    focused.chain(anywhere).filter(|b| b.hint.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn no_key_is_bound_twice_in_one_scope() {
        for (i, a) in BINDINGS.iter().enumerate() {
            for b in &BINDINGS[i + 1..] {
                if a.scope != b.scope {
                    continue;
                }
                for key in a.keys {
                    assert!(
                        !b.keys.contains(key),
                        "{:?} is bound twice in {:?} ({} and {})",
                        key,
                        a.scope,
                        a.label,
                        b.label
                    );
                }
            }
        }
    }

    #[test]
    fn pairs_resolve_to_their_direction() {
        assert_eq!(act(Anywhere, k(KeyCode::PageDown)), Some(PageDown));
        assert_eq!(act(Anywhere, k(KeyCode::PageUp)), Some(PageUp));
        assert_eq!(act(Prompt, k(KeyCode::Down)), Some(Down));
        assert_eq!(act(Scope::Help, k(KeyCode::Up)), Some(Up));
        assert_eq!(act(Popup, k(KeyCode::End)), Some(Last));
        assert_eq!(act(Anywhere, k(KeyCode::F(9))), Some(Macro));
        assert_eq!(
            act(Anywhere, KeyEvent::new(KeyCode::Char('f'), KeyModifiers::CONTROL)),
            Some(OpenFind)
        );
        assert_eq!(act(Conversation, k(KeyCode::Char('f'))), None);
    }

    #[test]
    fn help_folds_the_second_half_of_a_pair() {
        let labels: Vec<_> = help_rows()
            .filter(|b| b.scope == Conversation)
            .map(|b| b.label)
            .collect();
        assert!(labels.contains(&"↑/↓, k/j"));
        assert!(labels.contains(&"Home/g, End/G"));
        assert!(!labels.contains(&""));
    }
}
