//! Colours. Built-in themes live in `themes/*.toml` and are compiled in; a user's
//! `themes/NAME.toml` in the config folder, or `--theme PATH`, overrides them. Every
//! colour the UI uses comes from here, so NO_COLOR and themes cover the whole screen.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};

use crate::config::ConfigError;

pub const BUILT_IN: &[(&str, &str)] = &[
    ("default", include_str!("../../themes/default.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("high-contrast", include_str!("../../themes/high-contrast.toml")),
];

macro_rules! theme_keys {
    ($($key:ident),* $(,)?) => {
        /// Every colour of the UI, by role.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Theme {
            $(pub $key: Color,)*
            /// NO_COLOR: styles use only bold, reverse and underline.
            pub monochrome: bool,
        }

        const KEYS: &[&str] = &[$(stringify!($key)),*];

        impl Theme {
            fn set(&mut self, key: &str, color: Color) -> bool {
                match key {
                    $(stringify!($key) => self.$key = color,)*
                    _ => return false,
                }
                true
            }

            fn blank() -> Self {
                Self { $($key: Color::Reset,)* monochrome: false }
            }
        }
    };
}

theme_keys!(
    foreground,
    background,
    muted,
    border,
    border_focused,
    title,
    header_fg,
    header_bg,
    incoming,
    outgoing,
    system,
    ok,
    warning,
    error,
    selection_fg,
    selection_bg,
    gauge,
    gauge_track,
    sparkline,
    prompt,
    key,
);

impl Theme {
    /// The built-in default; cannot fail (its file is tested).
    pub fn default_theme() -> Self {
        Self::parse(BUILT_IN[0].1, "themes/default.toml", None).unwrap_or_else(|_| Self::blank())
    }

    /// Parses a theme file. Keys it leaves out come from `base` (the default theme
    /// for user themes); unknown keys and bad colours are errors naming the key.
    pub fn parse(text: &str, origin: &str, base: Option<&Theme>) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError(format!("bad theme {origin}: {}", e.to_string().trim_end())))?;
        let mut theme = base.cloned().unwrap_or_else(Self::blank);
        for (key, value) in &table {
            let text = value.as_str().ok_or_else(|| {
                ConfigError(format!(
                    "bad theme {origin}: key `{key}` must be a colour in quotes, like \"cyan\""
                ))
            })?;
            let color = parse_color(text).ok_or_else(|| {
                ConfigError(format!(
                    "bad theme {origin}: key `{key}`: {text:?} is not a colour (use a name like \"cyan\", \"#rrggbb\" or an index 0-255)"
                ))
            })?;
            if !theme.set(key, color) {
                return Err(ConfigError(format!(
                    "bad theme {origin}: unknown key `{key}`; the keys are {}",
                    KEYS.join(", ")
                )));
            }
        }
        if base.is_none()
            && let Some(missing) = KEYS.iter().find(|k| !table.contains_key(**k))
        {
            return Err(ConfigError(format!(
                "bad theme {origin}: missing key `{missing}`"
            )));
        }
        Ok(theme)
    }

    /// `--theme NAME|PATH`: a path, a user theme in `user_dir`, or a built-in.
    pub fn load(name: &str, user_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let default = Self::default_theme();
        let looks_like_path = name.contains('/') || name.contains('\\') || name.ends_with(".toml");
        let file: Option<PathBuf> = if looks_like_path {
            Some(PathBuf::from(name))
        } else {
            user_dir
                .map(|d| d.join(format!("{name}.toml")))
                .filter(|p| p.exists())
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("cannot read theme {}: {e}", path.display())))?;
            return Self::parse(&text, &path.display().to_string(), Some(&default));
        }
        // Built-in names are case-insensitive (`--theme Light`).
        match BUILT_IN.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((n, text)) => Self::parse(text, &format!("themes/{n}.toml"), None),
            None => Err(ConfigError(format!(
                "no theme called {name:?}; built in: {}{}",
                BUILT_IN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                user_dir.map_or(String::new(), |d| format!(
                    " (or put {name}.toml in {})",
                    d.display()
                ))
            ))),
        }
    }

    /// Honours NO_COLOR (https://no-color.org): all colours become the terminal's own.
    pub fn without_colors(mut self) -> Self {
        for key in KEYS {
            self.set(key, Color::Reset);
        }
        self.monochrome = true;
        self
    }

    // Styles by role, so panes never pick colours themselves.

    pub fn base(&self) -> Style {
        Style::default().fg(self.foreground).bg(self.background)
    }

    pub fn fg(&self, color: Color) -> Style {
        Style::default().fg(color)
    }

    pub fn muted(&self) -> Style {
        if self.monochrome {
            Style::default().add_modifier(Modifier::DIM)
        } else {
            Style::default().fg(self.muted)
        }
    }

    pub fn border(&self, focused: bool) -> Style {
        match (focused, self.monochrome) {
            (true, true) => Style::default().add_modifier(Modifier::BOLD),
            (true, false) => Style::default().fg(self.border_focused),
            (false, _) => Style::default().fg(self.border),
        }
    }

    pub fn title(&self, focused: bool) -> Style {
        let style = Style::default().fg(self.title);
        if focused {
            style.add_modifier(Modifier::BOLD)
        } else {
            style
        }
    }

    pub fn header(&self) -> Style {
        if self.monochrome {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default().fg(self.header_fg).bg(self.header_bg)
        }
    }

    pub fn selection(&self) -> Style {
        if self.monochrome {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default().fg(self.selection_fg).bg(self.selection_bg)
        }
    }

    pub fn key(&self) -> Style {
        Style::default().fg(self.key).add_modifier(Modifier::BOLD)
    }
}

fn parse_color(text: &str) -> Option<Color> {
    let t = text.trim();
    if let Ok(index) = t.parse::<u8>() {
        return Some(Color::Indexed(index));
    }
    if t.starts_with('#') && t.len() != 7 {
        return None;
    }
    Color::from_str(t).ok()
}

#[cfg(test)]
mod tests {

    /// WCAG relative luminance of an RGB colour.
    fn luminance(c: Color) -> Option<f64> {
        let Color::Rgb(r, g, b) = c else {
            return None;
        };
        let lin = |v: u8| {
            let v = f64::from(v) / 255.0;
            if v <= 0.03928 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        Some(0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b))
    }

    fn contrast(a: Color, b: Color) -> Option<f64> {
        let (la, lb) = (luminance(a)?, luminance(b)?);
        Some((la.max(lb) + 0.05) / (la.min(lb) + 0.05))
    }

    #[test]
    fn every_text_colour_meets_wcag_aa_where_a_theme_sets_its_background() {
        let mut checked = 0;
        for (name, text) in BUILT_IN {
            let t = Theme::parse(text, name, None).expect("built-in theme");
            if t.background == Color::Reset {
                // The terminal's own background: nothing to compute against.
                continue;
            }
            let text_colours = [
                ("foreground", t.foreground, t.background),
                ("muted", t.muted, t.background),
                ("border", t.border, t.background),
                ("border_focused", t.border_focused, t.background),
                ("title", t.title, t.background),
                ("incoming", t.incoming, t.background),
                ("outgoing", t.outgoing, t.background),
                ("system", t.system, t.background),
                ("ok", t.ok, t.background),
                ("warning", t.warning, t.background),
                ("error", t.error, t.background),
                ("sparkline", t.sparkline, t.background),
                ("prompt", t.prompt, t.background),
                ("key", t.key, t.background),
                ("gauge", t.gauge, t.background),
                ("header_fg", t.header_fg, t.header_bg),
                ("selection_fg", t.selection_fg, t.selection_bg),
            ];
            for (key, fg, bg) in text_colours {
                let ratio = contrast(fg, bg)
                    .unwrap_or_else(|| panic!("{name}: {key} and its background must be RGB to be checked"));
                assert!(
                    ratio >= 4.5,
                    "{name}: {key} has contrast {ratio:.2}:1, below 4.5:1"
                );
            }
            checked += 1;
        }
        assert!(checked >= 2, "light and high-contrast set their background");
    }

    use super::*;

    #[test]
    fn built_in_themes_are_complete_and_valid() {
        for (name, text) in BUILT_IN {
            let theme = Theme::parse(text, name, None).unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(theme.incoming, theme.outgoing, "{name}: directions must differ");
        }
        assert_eq!(
            Theme::load("Light", None).expect("light").title,
            Color::Rgb(0, 0, 192)
        );
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let e = Theme::parse("incoming = \"bluish\"", "my.toml", Some(&Theme::default_theme()))
            .expect_err("bad colour");
        assert!(
            e.0.contains("my.toml") && e.0.contains("`incoming`") && e.0.contains("bluish"),
            "{e}"
        );
        let e =
            Theme::parse("incomming = \"red\"", "my.toml", Some(&Theme::default_theme())).expect_err("typo");
        assert!(e.0.contains("unknown key `incomming`"), "{e}");
        let e = Theme::parse("incoming = 3", "my.toml", Some(&Theme::default_theme())).expect_err("number");
        assert!(e.0.contains("`incoming`"), "{e}");
        let e = Theme::parse("incoming = \"red\"", "themes/x.toml", None).expect_err("incomplete built-in");
        assert!(e.0.contains("missing key"), "{e}");
        let e = Theme::load("nope", None).expect_err("unknown theme");
        assert!(e.0.contains("high-contrast"), "{e}");
    }

    #[test]
    fn user_themes_override_and_inherit() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("mine.toml"), "incoming = \"#112233\"\n").expect("write");
        let theme = Theme::load("mine", Some(dir.path())).expect("loads");
        assert_eq!(theme.incoming, Color::Rgb(0x11, 0x22, 0x33));
        assert_eq!(theme.outgoing, Theme::default_theme().outgoing);
        let path = dir.path().join("mine.toml");
        assert!(Theme::load(&path.display().to_string(), None).is_ok());
    }

    #[test]
    fn no_color_leaves_no_colour() {
        let theme = Theme::default_theme().without_colors();
        assert_eq!(theme.incoming, Color::Reset);
        assert_eq!(theme.selection().bg, None);
    }
}
