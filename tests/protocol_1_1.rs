//! Protocol 1.1 against the binary, first wave: a lost byte never stalls the
//! link, PROGRESS acks and a window that holds, `benchlink bridge` with and
//! without a window, late HELLO on an auto listener, WELCOME's protocol key.
//! (Takeover, idempotent completion and BYE are in frames.rs.)

mod common;

use std::time::{Duration, Instant};

use benchlink::protocol::frames::{AckStatus, HEADER_LEN, Message};
use bytes::Bytes;
use common::dev::{Dev, wire};
use common::{Console, Rng, WAIT};

const PATIENT: &[&str] = &["--auto-delay-ms", "10000"];

fn file_data(file_id: u32, offset: u64, data: &[u8]) -> Vec<u8> {
    wire(&Message::FileData {
        file_id,
        offset,
        data: Bytes::copy_from_slice(data),
    })
}

#[test]
fn bytes_lost_inside_a_file_data_still_get_the_file_end_answered_within_a_second() {
    let c = Console::start(PATIENT);
    for lost in [1usize, 100] {
        let mut d = Dev::connect(c.addr());
        d.hello(&format!("lossy{lost}"), &[]);
        let data = Rng::new(lost as u64).bytes(200_000);
        d.begin(1, Some(data.len() as u64), "f.bin", false);
        let mut frame = file_data(1, 0, &data[..60_000]);
        frame.drain(HEADER_LEN + 500..HEADER_LEN + 500 + lost);
        d.send_raw(&frame);
        let started = Instant::now();
        d.end(1, crc32fast::hash(&data));
        let ack = d.ack(WAIT);
        let took = started.elapsed();
        eprintln!("{lost} byte(s) lost in a FILE_DATA: FILE_END answered in {took:?}: {ack:?}");
        assert_eq!((ack.status, ack.value), (AckStatus::Resume, 0), "{ack:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        // The repair completes the file.
        d.data_from(1, &data, 0, 50_000);
        d.end(1, crc32fast::hash(&data));
        let ack = d.ack(WAIT);
        assert_eq!(ack.status, AckStatus::Saved, "{ack:?}");
    }
}
