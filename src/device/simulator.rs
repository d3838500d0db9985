//! `benchlink device`: a simulated camera board for trying the console without
//! hardware. It answers `ping` with `pong`, `capture` with a fresh BMP image, and
//! anything else with `ok: <command>`; it saves files the console pushes into
//! `--dir`; it reconnects when the console goes away.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::image;
use super::link::{FileOutcome, FrameLink};
use super::receive::Receiver;
use crate::protocol::frames::Message;
use crate::text::for_terminal;

#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// The console's address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9999")]
    pub to: String,
    /// The board's name.
    #[arg(long, value_name = "NAME", default_value = "camera-sim")]
    pub id: String,
    /// The console's --token, if it has one.
    #[arg(long, value_name = "SECRET")]
    pub token: Option<String>,
    /// Keep at most BYTES of file data unacknowledged (protocol 1.1 flow control),
    /// both ways: also what the console may send ahead when it pushes a file.
    #[arg(long, value_name = "BYTES", value_parser = crate::cli::parse_size_arg)]
    pub window: Option<u64>,
    /// Where files the console pushes (`/push`) are saved.
    #[arg(long, value_name = "DIR", default_value = "device-files")]
    pub dir: std::path::PathBuf,
}

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

pub async fn run(args: DeviceArgs) -> ExitCode {
    let mut backoff = BACKOFF_START;
    let mut captures = 0u32;
    let mut files = Receiver::new(args.dir.clone(), args.window);
    loop {
        let window = args.window.map(|w| w.to_string());
        // It takes pushed files in frames of up to 64 KiB.
        let mut info = vec![("model", "benchlink camera simulator"), ("max_frame", "65548")];
        if let Some(w) = &window {
            info.push(("window", w.as_str()));
        }
        let connect = FrameLink::connect(&args.to, &args.id, args.token.as_deref(), &info);
        let outcome = tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            link = connect => link,
        };
        match outcome {
            Ok(mut link) => {
                backoff = BACKOFF_START;
                println!("connected to {} as {}", args.to, for_terminal(&link.name));
                let _ = link.send(&Message::Text(format!("{} ready", args.id))).await;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {
                        let _ = link.send(&Message::Bye("stopped".into())).await;
                        return ExitCode::SUCCESS;
                    }
                    _ = serve(&mut link, &mut captures, &mut files) => {}
                }
                println!("the console went away; reconnecting");
            }
            Err(e) => println!("{e}; retrying in {:.1} s", backoff.as_secs_f32()),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Answers the console until it goes away.
async fn serve(link: &mut FrameLink, captures: &mut u32, files: &mut Receiver) {
    while let Some(message) = link.recv().await {
        if let Some(reply) = files.on_message(&message).await {
            if let Some(said) = reply.said {
                println!("{}", for_terminal(&said));
            }
            if let Some(ack) = reply.ack
                && link.send(&ack).await.is_err()
            {
                return;
            }
            continue;
        }
        let Message::Text(command) = message else {
            if let Message::Ping(payload) = message
                && link.send(&Message::Pong(payload)).await.is_err()
            {
                return;
            }
            continue;
        };
        let command = command.trim().to_string();
        println!("< {}", for_terminal(&command));
        let sent = match command.as_str() {
            "ping" => link.send(&Message::Text("pong".into())).await.is_ok(),
            "capture" => capture(link, captures).await,
            _ => link.send(&Message::Text(format!("ok: {command}"))).await.is_ok(),
        };
        if !sent {
            return;
        }
    }
}

async fn capture(link: &mut FrameLink, captures: &mut u32) -> bool {
    *captures += 1;
    let n = *captures;
    let seed = n.wrapping_add(std::process::id());
    let picture = image::bmp(320, 240, seed);
    let name = format!("capture-{n:04}.bmp");
    let dir = std::env::temp_dir().join(format!("benchlink-device-{}", std::process::id()));
    let path = dir.join(&name);
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &picture)) {
        println!("cannot prepare {name}: {e}");
        return link
            .send(&Message::Text(format!("capture failed: {e}")))
            .await
            .is_ok();
    }
    let result = link.send_file(n, &path, &name, false).await;
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    match result {
        Ok(FileOutcome::Saved { size, path }) => {
            println!(
                "> {name} saved by the console ({size} bytes) as {}",
                for_terminal(&path)
            );
            true
        }
        Ok(FileOutcome::Failed { status, detail, .. }) => {
            println!("> {name} not saved: {status:?} {}", for_terminal(&detail));
            true
        }
        Err(e) => {
            println!("> {name} not sent: {e}");
            false
        }
    }
}
