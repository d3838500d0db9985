//! The command language every front end shares (stdin in `--no-tui`, the TUI's
//! prompt): one parser, here.

/// One operator line, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Plain text for the current target.
    Send(String),
    /// `/to NAME|CONN`
    Target(String),
    /// `/all TEXT`
    All(String),
    List,
    /// `/kick NAME|CONN`
    Kick(String),
    Help,
    Quit,
    /// An empty line: nothing to do.
    Nothing,
}

/// `/command`, its argument form and what it does: the help text and the TUI's
/// completion both come from here.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("/to", "NAME|CONN", "choose the device plain text is sent to"),
    ("/all", "TEXT", "send TEXT to every connected device"),
    ("/list", "", "list connected devices"),
    ("/kick", "NAME|CONN", "disconnect a device"),
    ("/help", "", "show this help"),
    ("/quit", "", "stop the console"),
];

pub fn help_text() -> String {
    let mut text = String::from(
        "Type text to send it to the current device (the only one connected, or the one chosen with /to). \
Start a line with // to send text that begins with /.",
    );
    for (name, args, what) in COMMANDS {
        text.push_str(&format!("\n  {:<18} {what}", format!("{name} {args}")));
    }
    text
}

/// Parses one line. An `Err` is a sentence telling the operator what to type instead.
pub fn parse(line: &str) -> Result<Request, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(Request::Nothing);
    }
    if let Some(literal) = line.strip_prefix("//") {
        return Ok(Request::Send(format!("/{literal}")));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Request::Send(line.to_string()));
    };
    let (word, rest) = match command.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (command, ""),
    };
    let needs = |what: &str| -> Result<String, String> {
        if rest.is_empty() {
            Err(format!("/{word} needs {what}: /{word} {what}"))
        } else {
            Ok(rest.to_string())
        }
    };
    match word.to_ascii_lowercase().as_str() {
        "to" => needs("NAME|CONN").map(Request::Target),
        "all" => needs("TEXT").map(Request::All),
        "list" | "ls" => Ok(Request::List),
        "kick" => needs("NAME|CONN").map(Request::Kick),
        "help" | "h" | "?" => Ok(Request::Help),
        "quit" | "q" | "exit" => Ok(Request::Quit),
        _ => Err(format!(
            "unknown command /{word}; commands are {} (start with // to send text beginning with /)",
            COMMANDS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_and_commands() {
        assert_eq!(parse("capture\n"), Ok(Request::Send("capture".into())));
        assert_eq!(parse("  spaced  "), Ok(Request::Send("  spaced  ".into())));
        assert_eq!(parse("/to cam-1"), Ok(Request::Target("cam-1".into())));
        assert_eq!(parse("/TO 3"), Ok(Request::Target("3".into())));
        assert_eq!(parse("/all reboot now"), Ok(Request::All("reboot now".into())));
        assert_eq!(parse("/list"), Ok(Request::List));
        assert_eq!(parse("/kick 10.0.0.2#2"), Ok(Request::Kick("10.0.0.2#2".into())));
        assert_eq!(parse("/help"), Ok(Request::Help));
        assert_eq!(parse("/quit"), Ok(Request::Quit));
        assert_eq!(parse(""), Ok(Request::Nothing));
        assert_eq!(parse("//etc"), Ok(Request::Send("/etc".into())));
    }

    #[test]
    fn mistakes_are_explained() {
        let e = parse("/frobnicate x").expect_err("unknown");
        assert!(e.contains("/frobnicate") && e.contains("/list"), "{e}");
        let e = parse("/to").expect_err("missing arg");
        assert!(e.contains("/to NAME|CONN"), "{e}");
        assert!(parse("/all   ").is_err());
    }

    #[test]
    fn help_lists_every_command() {
        let help = help_text();
        for (name, _, _) in COMMANDS {
            assert!(help.contains(name));
        }
    }
}
