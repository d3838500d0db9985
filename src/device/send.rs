//! `benchlink send`: act as a device once (texts, then files), print what the
//! console answered, fail if any file was not saved.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::link::{FileOutcome, FrameLink};
use crate::protocol::frames::Message;
use crate::text::for_terminal;

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// The console's address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9999")]
    pub to: String,
    /// The name to give this device (frames only; cf and lines devices are named by IP).
    #[arg(long, value_name = "NAME", default_value = "benchlink-send")]
    pub id: String,
    /// The console's --token, if it has one.
    #[arg(long, value_name = "SECRET")]
    pub token: Option<String>,
    /// Which protocol to speak.
    #[arg(long, value_enum, default_value = "frames")]
    pub protocol: SendProtocol,
    /// A text to send before the files; repeat for several.
    #[arg(long = "text", value_name = "MSG")]
    pub texts: Vec<String>,
    /// Continue files the console already holds part of (frames).
    #[arg(long)]
    pub resume: bool,
    /// Keep at most BYTES of file data unacknowledged (frames, protocol 1.1): for a
    /// link with a small buffer, such as a UART-to-Wi-Fi bridge.
    #[arg(long, value_name = "BYTES", value_parser = crate::cli::parse_size_arg)]
    pub window: Option<u64>,
    /// Files to send.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendProtocol {
    Frames,
    Cf,
    Lines,
}

pub async fn run(args: SendArgs) -> ExitCode {
    if args.texts.is_empty() && args.files.is_empty() {
        eprintln!("benchlink send: nothing to send; give --text MSG and/or FILE arguments");
        return ExitCode::from(2);
    }
    let result = match args.protocol {
        SendProtocol::Frames => send_frames(&args).await,
        SendProtocol::Cf => send_cf(&args).await,
        SendProtocol::Lines => send_lines(&args).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("benchlink send: {e}");
            ExitCode::FAILURE
        }
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned())
}

/// Returns whether every file was saved.
async fn send_frames(args: &SendArgs) -> Result<bool, String> {
    let window = args.window.map(|w| w.to_string());
    let mut info = vec![("tool", "benchlink send")];
    if let Some(w) = &window {
        info.push(("window", w.as_str()));
    }
    let mut link = FrameLink::connect(&args.to, &args.id, args.token.as_deref(), &info).await?;
    println!("connected to {} as {}", args.to, for_terminal(&link.name));
    let lost = |e: std::io::Error| format!("connection lost: {e}");
    for text in &args.texts {
        link.send(&Message::Text(text.clone())).await.map_err(lost)?;
        println!("sent text: {}", for_terminal(text));
    }
    let mut all_saved = true;
    for (i, path) in args.files.iter().enumerate() {
        let name = file_name(path);
        match link.send_file(i as u32 + 1, path, &name, args.resume).await {
            Ok(FileOutcome::Saved { size, path }) => {
                let repaired = match link.rewinds {
                    0 => String::new(),
                    n => format!(", {n} rewinds to repair lost data"),
                };
                println!(
                    "saved {} ({size} bytes{repaired}) as {}",
                    for_terminal(&name),
                    for_terminal(&path)
                );
            }
            Ok(FileOutcome::Failed {
                status,
                value,
                detail,
            }) => {
                all_saved = false;
                println!(
                    "NOT saved {}: {status:?} ({value}) {}",
                    for_terminal(&name),
                    for_terminal(&detail)
                );
            }
            Err(e) => {
                all_saved = false;
                println!("NOT saved {}: {}", for_terminal(&name), for_terminal(&e));
            }
        }
    }
    let _ = link.send(&Message::Bye("done".into())).await;
    Ok(all_saved)
}

/// The article's client, done carefully: greeting, `c` + text, `f` + file, close.
/// One file per connection, since only the close ends a cf file.
async fn send_cf(args: &SendArgs) -> Result<bool, String> {
    let mut texts: &[String] = &args.texts;
    let mut files = args.files.iter();
    let mut first = true;
    loop {
        let file = files.next();
        if !first && file.is_none() {
            return Ok(true);
        }
        first = false;
        let mut stream = TcpStream::connect(&args.to)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", args.to))?;
        let mut greeting = [0u8; 1024];
        // The console greets a silent device after its auto delay (300 ms by default).
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut greeting)).await {
            println!(
                "console: {}",
                for_terminal(&String::from_utf8_lossy(&greeting[..n]))
            );
        }
        let io = |e: std::io::Error| format!("connection lost: {e}");
        for text in texts {
            stream
                .write_all(format!("c{text}").as_bytes())
                .await
                .map_err(io)?;
            println!("sent text: {}", for_terminal(text));
            // cf messages are told apart by TCP reads: pause so they are not merged.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        texts = &[];
        if let Some(path) = file {
            let data = tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            stream.write_all(b"f").await.map_err(io)?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            stream.write_all(&data).await.map_err(io)?;
            stream.shutdown().await.map_err(io)?;
            println!(
                "sent {} ({} bytes) over cf; this protocol has no acknowledgement",
                for_terminal(&file_name(path)),
                data.len()
            );
        }
    }
}

async fn send_lines(args: &SendArgs) -> Result<bool, String> {
    if !args.files.is_empty() {
        return Err("the lines protocol cannot carry files; use --protocol frames or cf".into());
    }
    let mut stream = TcpStream::connect(&args.to)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.to))?;
    for text in &args.texts {
        stream
            .write_all(format!("{text}\n").as_bytes())
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        println!("sent text: {}", for_terminal(text));
    }
    let _ = stream.shutdown().await;
    Ok(true)
}
