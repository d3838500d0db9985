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
    /// `/hex 48 65 0d 0a` or `/raw TEXT\r\n`: exact bytes for the current target.
    Bytes(Vec<u8>),
    /// `/eol crlf|lf|cr|none`: the current target's line ending.
    Eol(crate::protocol::LineEnding),
    /// `/every DURATION LINE`: send LINE (text, `/hex` or `/raw`) to the current
    /// target every DURATION.
    Every {
        period: std::time::Duration,
        line: String,
    },
    /// `/every off [N]`: stop repeat N, or all.
    EveryOff(Option<u32>),
    /// `/every`: list the repeats.
    EveryList,
    /// `/macro NAME`: run a macro from config.toml.
    Macro(String),
    /// `/sleep DURATION`: a pause between the lines of a macro.
    Sleep(std::time::Duration),
    /// `/find TEXT`: find lines in the conversation (full-screen console).
    Find(String),
    /// `/filter TEXT` shows only matching lines; `/filter` alone shows all.
    Filter(Option<String>),
    /// `/view text|hex`: how the conversation is shown (full-screen console).
    View(ViewMode),
    /// `/serial [PROTO://]PATH[@BAUD]`: open a serial port (reopened when it
    /// comes back).
    Serial(crate::link_spec::SerialSpec),
    /// `/connect [PROTO://]HOST:PORT`: connect to a device that listens.
    Connect(crate::link_spec::ConnectSpec),
    /// `/close NAME`: stop a serial port or outgoing link and its retries.
    Close(String),
    /// `/push PATH [NAME] [@all|@DEV,DEV]`: send a file to native-frames devices.
    Push {
        path: String,
        name: Option<String>,
        /// None: the current device; `Some([])`: every frames device.
        to: Option<Vec<String>>,
    },
    /// `/rz`: receive files from the current device by YMODEM.
    Rz,
    /// `/sz PATH...`: send files to the current device by YMODEM-1K.
    Sz(Vec<String>),
    /// An empty line: nothing to do.
    Nothing,
}

/// How the conversation pane shows a device's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewMode {
    #[default]
    Text,
    Hex,
}

/// Shortest `/every` period.
pub const MIN_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// `/command`, its argument form and what it does: the help text and the TUI's
/// completion both come from here.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("/to", "NAME|CONN", "choose the device plain text is sent to"),
    ("/all", "TEXT", "send TEXT to every connected device"),
    ("/list", "", "list connected devices"),
    ("/kick", "NAME|CONN", "disconnect a device"),
    (
        "/serial",
        "PATH[@BAUD]",
        "open a serial port (frames:// or auto:// before it for those protocols)",
    ),
    (
        "/connect",
        "HOST:PORT",
        "connect to a device that listens (retried until it answers)",
    ),
    (
        "/close",
        "NAME",
        "close a serial port or outgoing link and stop its retries",
    ),
    (
        "/hex",
        "BYTES",
        "send bytes given in hex (48 65 6c 0d 0a, 0x48, 48656c)",
    ),
    (
        "/raw",
        "TEXT",
        "send TEXT with C escapes (\\r \\n \\t \\0 \\xNN \\\\) and no line ending",
    ),
    (
        "/eol",
        "ENDING",
        "crlf, lf, cr or none after text to the current device",
    ),
    (
        "/every",
        "TIME LINE",
        "send LINE every TIME (10ms..hours); /every off [N] stops it",
    ),
    ("/macro", "NAME", "run a macro from config.toml"),
    ("/sleep", "TIME", "wait between the lines of a macro"),
    (
        "/find",
        "TEXT",
        "find TEXT in the conversation (Ctrl-F; Ctrl-N/Ctrl-P move, Esc ends)",
    ),
    ("/filter", "[TEXT]", "show only lines with TEXT; alone: show all"),
    (
        "/view",
        "text|hex",
        "the conversation as text or as a hex dump (F4)",
    ),
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
        "serial" => crate::link_spec::SerialSpec::parse(&needs("[PROTO://]PATH[@BAUD]")?)
            .map(Request::Serial)
            .map_err(|e| e.0),
        "connect" => crate::link_spec::ConnectSpec::parse(&needs("[PROTO://]HOST:PORT")?)
            .map(Request::Connect)
            .map_err(|e| e.0),
        "close" => needs("NAME").map(Request::Close),
        "rz" => Ok(Request::Rz),
        "push" => parse_push(&needs("PATH [NAME] [@all|@DEV,DEV]")?),
        "sz" => {
            needs("PATH...").map(|paths| Request::Sz(paths.split_whitespace().map(str::to_string).collect()))
        }
        "help" | "h" | "?" => Ok(Request::Help),
        "hex" => parse_hex(&needs("BYTES")?).map(Request::Bytes),
        "raw" => {
            // The rest of the line as typed, spaces included.
            let text = command.split_once(char::is_whitespace).map_or("", |(_, r)| r);
            if text.is_empty() {
                return Err("/raw needs TEXT: /raw TEXT (with \\r \\n \\t \\0 \\xNN \\\\)".into());
            }
            unescape(text).map(Request::Bytes)
        }
        "eol" => {
            let name = needs("crlf|lf|cr|none")?;
            crate::protocol::LineEnding::parse(&name)
                .map(Request::Eol)
                .ok_or_else(|| format!("/eol takes crlf, lf, cr or none, not {name:?}"))
        }
        "every" => parse_every(rest),
        "macro" => needs("NAME").map(Request::Macro),
        "find" => needs("TEXT").map(Request::Find),
        "filter" => Ok(Request::Filter((!rest.is_empty()).then(|| rest.to_string()))),
        "view" => match rest.to_ascii_lowercase().as_str() {
            "text" => Ok(Request::View(ViewMode::Text)),
            "hex" => Ok(Request::View(ViewMode::Hex)),
            _ => Err("/view takes text or hex".into()),
        },
        "sleep" => crate::cli::parse_duration_arg(&needs("DURATION")?).map(Request::Sleep),
        "quit" | "q" | "exit" => Ok(Request::Quit),
        _ => Err(format!(
            "unknown command /{word}; commands are {} (start with // to send text beginning with /)",
            COMMANDS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// `48 65 6c`, `0x48 0x65`, `48656c`: bytes in hex, spaces optional.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut digits = String::new();
    for token in text.split([' ', ',', '\t']).filter(|t| !t.is_empty()) {
        let token = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"))
            .unwrap_or(token);
        if token.len() % 2 == 1 {
            return Err(format!(
                "/hex: {token:?} has an odd number of digits; write bytes as two digits each (0d, not d)"
            ));
        }
        digits.push_str(token);
    }
    if digits.is_empty() {
        return Err("/hex needs BYTES: /hex 48 65 6c 6c 6f 0d 0a".into());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| format!("/hex: {:?} is not a hex byte", &digits[i..i + 2]))
        })
        .collect()
}

/// C escapes: `\r \n \t \0 \xNN \\`; anything else is sent as typed (UTF-8).
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = (hex.len() == 2)
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| format!("/raw: \\x needs two hex digits, not {hex:?}"))?;
                out.push(byte);
            }
            Some(other) => {
                return Err(format!(
                    "/raw: unknown escape \\{other}; use \\r \\n \\t \\0 \\xNN or \\\\"
                ));
            }
            None => return Err("/raw: a lone \\ at the end; write \\\\ for a backslash".into()),
        }
    }
    Ok(out)
}

/// `PATH [NAME] [@all|@DEV,DEV]`.
fn parse_push(rest: &str) -> Result<Request, String> {
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    let to = match words.last() {
        Some(w) if w.starts_with('@') => {
            let list = &w[1..];
            words.pop();
            Some(if list.eq_ignore_ascii_case("all") {
                Vec::new()
            } else {
                list.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
        }
        _ => None,
    };
    match words.as_slice() {
        [path] => Ok(Request::Push {
            path: path.to_string(),
            name: None,
            to,
        }),
        [path, name] => Ok(Request::Push {
            path: path.to_string(),
            name: Some(name.to_string()),
            to,
        }),
        _ => Err("usage: /push PATH [NAME] [@all|@DEV,DEV]".into()),
    }
}

fn parse_every(rest: &str) -> Result<Request, String> {
    if rest.is_empty() {
        return Ok(Request::EveryList);
    }
    let (first, line) = match rest.split_once(char::is_whitespace) {
        Some((f, l)) => (f, l.trim_start()),
        None => (rest, ""),
    };
    if first.eq_ignore_ascii_case("off") {
        if line.is_empty() {
            return Ok(Request::EveryOff(None));
        }
        return line
            .trim()
            .parse()
            .map(|n| Request::EveryOff(Some(n)))
            .map_err(|_| format!("/every off takes the number /every lists, not {line:?}"));
    }
    let period = crate::cli::parse_duration_arg(first)?;
    if period < MIN_EVERY {
        return Err("/every: the shortest interval is 10ms".into());
    }
    if line.is_empty() {
        return Err("/every needs what to send: /every 2s TEXT (or /hex ..., /raw ...)".into());
    }
    // What is repeated must itself be something to send.
    match parse(line)? {
        Request::Send(_) | Request::Bytes(_) => Ok(Request::Every {
            period,
            line: line.to_string(),
        }),
        _ => Err("/every repeats text, /hex or /raw, not other commands".into()),
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
    fn bytes_commands() {
        let hello = b"Hello\r\n".to_vec();
        assert_eq!(
            parse("/hex 48 65 6c 6c 6f 0d 0a"),
            Ok(Request::Bytes(hello.clone()))
        );
        assert_eq!(
            parse("/hex 0x48 0x65 6C6c6f0d0A"),
            Ok(Request::Bytes(hello.clone()))
        );
        assert_eq!(parse("/raw Hello\\r\\n"), Ok(Request::Bytes(hello)));
        assert_eq!(
            parse("/raw  a\\t\\0\\x7f\\\\ é"),
            Ok(Request::Bytes(b" a\t\0\x7f\\ \xc3\xa9".to_vec()))
        );
        assert!(parse("/hex 4").unwrap_err().contains("odd"));
        assert!(parse("/hex zz").unwrap_err().contains("zz"));
        assert!(parse("/raw bad\\q").unwrap_err().contains("\\q"));
        assert!(parse("/raw \\x4").is_err());
        assert_eq!(
            parse("/eol CR"),
            Ok(Request::Eol(crate::protocol::LineEnding::Cr))
        );
        assert!(parse("/eol dos").is_err());
    }

    #[test]
    fn every_and_macros() {
        use std::time::Duration;
        assert_eq!(
            parse("/every 2s status"),
            Ok(Request::Every {
                period: Duration::from_secs(2),
                line: "status".into()
            })
        );
        assert_eq!(
            parse("/every 10ms /hex 01 02"),
            Ok(Request::Every {
                period: Duration::from_millis(10),
                line: "/hex 01 02".into()
            })
        );
        assert_eq!(parse("/every"), Ok(Request::EveryList));
        assert_eq!(parse("/every off"), Ok(Request::EveryOff(None)));
        assert_eq!(parse("/every off 3"), Ok(Request::EveryOff(Some(3))));
        assert!(parse("/every 5ms x").unwrap_err().contains("10ms"));
        assert!(parse("/every 2s /kick cam").is_err());
        assert!(parse("/every 2s").is_err());
        assert_eq!(parse("/macro boot"), Ok(Request::Macro("boot".into())));
        assert_eq!(
            parse("/sleep 200ms"),
            Ok(Request::Sleep(Duration::from_millis(200)))
        );
    }

    #[test]
    fn help_lists_every_command() {
        let help = help_text();
        for (name, _, _) in COMMANDS {
            assert!(help.contains(name));
        }
    }
}
