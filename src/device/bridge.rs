//! `benchlink bridge`: a UART-to-Wi-Fi bridge (an ESP8266 or ESP32 in transparent
//! mode) with its flaws, between a device and the console, so firmware can be
//! tried against a bad link. Device-to-console bytes arrive at the UART's pace
//! (`--rate`) into a buffer of `--buffer` bytes, which Wi-Fi drains at the same
//! rate except during a stall (`--stall MS/EVERY_MS`); what does not fit is lost,
//! as on the real thing. Console-to-device bytes are passed on as they come.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[derive(Debug, Clone, Args)]
pub struct BridgeArgs {
    /// Where the device connects (the bridge's UART side).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: String,
    /// The console (the bridge's Wi-Fi side).
    #[arg(long, value_name = "HOST:PORT")]
    pub to: String,
    /// Bytes per second, device to console: the UART's pace and Wi-Fi's drain rate.
    #[arg(long, value_name = "BYTES_PER_S", value_parser = crate::cli::parse_size_arg, default_value = "11520")]
    pub rate: u64,
    /// The bridge's buffer, device to console; bytes that do not fit are dropped.
    #[arg(long, value_name = "BYTES", value_parser = crate::cli::parse_size_arg, default_value = "4096")]
    pub buffer: u64,
    /// Wi-Fi stalls: no draining for MS milliseconds every EVERY_MS (e.g. 200/1000).
    #[arg(long, value_name = "MS/EVERY_MS", value_parser = parse_stall)]
    pub stall: Option<(u64, u64)>,
    /// Flip one bit about every BYTES bytes passed to the console.
    #[arg(long, value_name = "BYTES", value_parser = crate::cli::parse_size_arg)]
    pub flip_every: Option<u64>,
    /// Seed of the bit flips, so a run can be repeated exactly.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Print the counters as one JSON object per connection.
    #[arg(long)]
    pub json: bool,
}

fn parse_stall(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("cannot read {text:?} as a stall; write MS/EVERY_MS, e.g. 200/1000");
    let (ms, every) = text.split_once('/').ok_or_else(bad)?;
    let (ms, every): (u64, u64) = (
        ms.trim().parse().map_err(|_| bad())?,
        every.trim().parse().map_err(|_| bad())?,
    );
    if every == 0 || ms >= every {
        return Err(format!(
            "stall {text:?}: MS must be less than EVERY_MS, and EVERY_MS above 0"
        ));
    }
    Ok((ms, every))
}

/// What one connection through the bridge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Device to console, delivered.
    pub passed: u64,
    /// Device to console, lost because the buffer was full.
    pub dropped: u64,
    /// Bits flipped on the way to the console.
    pub flipped: u64,
    /// Console to device.
    pub returned: u64,
}

impl Counters {
    fn line(&self, peer: &str, json: bool) -> String {
        if json {
            format!(
                "{{\"device\":\"{peer}\",\"passed\":{},\"dropped\":{},\"flipped\":{},\"returned\":{}}}",
                self.passed, self.dropped, self.flipped, self.returned
            )
        } else {
            format!(
                "bridge: {peer} closed: {} bytes passed to the console, {} dropped (buffer full), {} bits flipped; {} bytes back to the device",
                self.passed, self.dropped, self.flipped, self.returned
            )
        }
    }
}

pub async fn run(args: BridgeArgs) -> ExitCode {
    if args.rate == 0 || args.buffer == 0 {
        eprintln!("benchlink bridge: --rate and --buffer must be above 0");
        return ExitCode::from(2);
    }
    let listener = match uart_side(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("benchlink bridge: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    if let Ok(addr) = listener.local_addr() {
        println!("bridge: listening on {addr}, forwarding to {}", args.to);
    }
    loop {
        let accepted = tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            a = listener.accept() => a,
        };
        let Ok((device, peer)) = accepted else {
            continue;
        };
        let args = args.clone();
        tokio::spawn(async move {
            let console = match TcpStream::connect(&args.to).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("benchlink bridge: cannot connect to {}: {e}", args.to);
                    return;
                }
            };
            let counters = relay(device, console, &args).await;
            println!("{}", counters.line(&peer.to_string(), args.json));
        });
    }
}

/// The device's side. A UART holds no more than a FIFO's worth of bytes between
/// the board and the bridge: a small receive buffer keeps TCP from hiding
/// megabytes in flight (which a board behind a real bridge never has).
async fn uart_side(addr: &str) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_recv_buffer_size(UART_SOCKET_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(16)
}

/// Receive buffer of the device's socket (the kernel may round it up).
const UART_SOCKET_BUFFER: u32 = 4096;

/// A small deterministic generator (splitmix64) for the bit flips.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Runs one connection until either side closes.
pub async fn relay(device: TcpStream, console: TcpStream, args: &BridgeArgs) -> Counters {
    let _ = device.set_nodelay(true);
    let _ = console.set_nodelay(true);
    let (mut dev_rx, mut dev_tx) = device.into_split();
    let (mut con_rx, mut con_tx) = console.into_split();
    // Console to device: passed on as it comes.
    let back = tokio::spawn(async move {
        let mut total = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match con_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if dev_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    total += n as u64;
                }
            }
        }
        let _ = dev_tx.shutdown().await;
        total
    });

    let mut counters = Counters::default();
    let mut rng = Rng(args.seed);
    let mut next_flip = args.flip_every.map(|every| 1 + rng.next() % every.max(1));
    let capacity = args.buffer as usize;
    let mut buffer: std::collections::VecDeque<u8> = std::collections::VecDeque::with_capacity(capacity);
    let started = Instant::now();
    let tick = Duration::from_millis(1);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Token buckets, in bytes: the UART's pace in, Wi-Fi's out.
    let (mut uart_credit, mut wifi_credit) = (0f64, 0f64);
    let per_tick_cap = (args.rate as f64 / 50.0).max(64.0); // at most 20 ms of credit
    let mut last = Instant::now();
    let mut scratch = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut device_open = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            // The UART delivers at most what its pace allows since the last tick.
            read = dev_rx.read(&mut scratch[..(uart_credit as usize).clamp(1, 64 * 1024)]), if device_open && uart_credit >= 1.0 => {
                match read {
                    Ok(0) | Err(_) => device_open = false,
                    Ok(n) => {
                        uart_credit -= n as f64;
                        for &b in &scratch[..n] {
                            if buffer.len() < capacity {
                                buffer.push_back(b);
                            } else {
                                counters.dropped += 1;
                            }
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        let elapsed = now.duration_since(last).as_secs_f64();
        last = now;
        let earned = args.rate as f64 * elapsed;
        uart_credit = (uart_credit + earned).min(per_tick_cap);
        let stalled = args.stall.is_some_and(|(ms, every)| {
            let phase = now.duration_since(started).as_millis() as u64 % every;
            phase >= every - ms
        });
        if stalled {
            wifi_credit = 0.0;
        } else {
            wifi_credit = (wifi_credit + earned).min(per_tick_cap.max(capacity as f64));
        }
        let n = (wifi_credit as usize).min(buffer.len());
        if n > 0 {
            out.clear();
            out.extend(buffer.drain(..n));
            if let (Some(every), Some(at)) = (args.flip_every, next_flip.as_mut()) {
                let mut i = 0u64;
                while *at <= counters.passed + out.len() as u64 && i < out.len() as u64 + 1 {
                    let index = (*at - counters.passed - 1) as usize;
                    if let Some(byte) = out.get_mut(index) {
                        *byte ^= 1 << (rng.next() % 8);
                        counters.flipped += 1;
                    }
                    *at += 1 + rng.next() % (2 * every.max(1));
                    i += 1;
                }
            }
            if con_tx.write_all(&out).await.is_err() {
                break;
            }
            wifi_credit -= n as f64;
            counters.passed += n as u64;
        }
        if !device_open && buffer.is_empty() {
            break;
        }
    }
    let _ = con_tx.shutdown().await;
    // The console closes its side once it has read ours to the end.
    counters.returned = match tokio::time::timeout(Duration::from_secs(2), back).await {
        Ok(Ok(total)) => total,
        _ => 0,
    };
    counters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_are_read_as_ms_slash_every() {
        assert_eq!(parse_stall("200/1000"), Ok((200, 1000)));
        assert!(parse_stall("1000/200").is_err());
        assert!(parse_stall("200").is_err());
        assert!(parse_stall("x/1").is_err());
    }

    #[test]
    fn the_flip_generator_is_deterministic() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        assert_eq!(
            (0..5).map(|_| a.next()).collect::<Vec<_>>(),
            (0..5).map(|_| b.next()).collect::<Vec<_>>()
        );
    }
}
