//! The hot pure functions, measured with criterion (`cargo bench`): frame
//! decode and encode, the line splitter, the receiving rules, YMODEM blocks,
//! the image carver and escaping text for the terminal. Throughput is in
//! bytes, so criterion reports GiB/s.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use benchlink::engine::{Direction, event::TextBatch};
use benchlink::protocol::carve::Carver;
use benchlink::protocol::frames::{Decoded, FrameDecoder, Message};
use benchlink::protocol::lines::LineDecoder;
use benchlink::protocol::receiving::{OnData, Receiving};
use benchlink::protocol::ymodem::{Receiver, encode_block, header_block};

const MIB: usize = 1 << 20;

fn file_data_frames(total: usize, chunk: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    let payload = Bytes::from(vec![0x5au8; chunk]);
    for i in 0..total / chunk {
        Message::FileData {
            file_id: 1,
            offset: (i * chunk) as u64,
            data: payload.clone(),
        }
        .encode(&mut out);
    }
    out.to_vec()
}

fn frames(c: &mut Criterion) {
    let wire = file_data_frames(8 * MIB, 64 * 1024);
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("decode 8 MiB of 64 KiB FILE_DATA (CRC-32 checked)", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::new(1 << 20);
            let mut buf = BytesMut::from(&wire[..]);
            let mut n = 0;
            while let Some(Decoded::Frame(f)) = d.decode(&mut buf) {
                n += f.payload.len();
            }
            black_box(n)
        })
    });
    let payload = Bytes::from(vec![7u8; 64 * 1024]);
    g.throughput(Throughput::Bytes(8 * MIB as u64));
    g.bench_function("encode 8 MiB of 64 KiB FILE_DATA", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(9 * MIB);
            for i in 0..128u64 {
                Message::FileData {
                    file_id: 1,
                    offset: i * 65536,
                    data: payload.clone(),
                }
                .encode(&mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

fn text(c: &mut Criterion) {
    let mut log = Vec::new();
    while log.len() < 4 * MIB {
        log.extend_from_slice(b"12:00:01 temp=21.5 hum=40 status=ok seq=123456\r\n");
    }
    let mut g = c.benchmark_group("text");
    g.throughput(Throughput::Bytes(log.len() as u64));
    // As a lines session does: each 64 KiB read's lines into one batch (one
    // event), decoded as text.
    g.bench_function("gather 4 MiB of lines, a batch per 64 KiB read", |b| {
        b.iter(|| {
            let mut d = LineDecoder::new(64 * 1024);
            let mut n = 0;
            for piece in log.chunks(64 * 1024) {
                let mut batch = TextBatch::new(1, "cam".into(), Direction::In);
                batch.reserve(piece.len());
                d.push_each(piece, &mut |line| {
                    batch.push_from_device(line);
                });
                n += batch.len();
            }
            black_box(n)
        })
    });
    let shared = Bytes::from(log.clone());
    g.bench_function("carve: 4 MiB of text with no image", |b| {
        b.iter(|| {
            let mut carver = Carver::new(1 << 30);
            let mut out = Vec::new();
            let mut at = 0;
            while at < shared.len() {
                let end = (at + 64 * 1024).min(shared.len());
                carver.push_shared(&shared.slice(at..end), &mut out);
                at = end;
            }
            black_box(out.len())
        })
    });
    // As a session does: each line (without its ending) to text, then escaped.
    let lines: Vec<&[u8]> = log
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    g.bench_function("from_device + for_terminal per line, 4 MiB", |b| {
        b.iter(|| {
            let mut n = 0;
            for line in &lines {
                let s = benchlink::text::from_device(line);
                n += benchlink::text::for_terminal(&s).len();
            }
            black_box(n)
        })
    });
    let binary: Vec<u8> = (0..4 * MIB).map(|i| (i * 7 % 251) as u8).collect();
    g.bench_function("from_device + for_terminal, 4 MiB of binary", |b| {
        b.iter(|| {
            let s = benchlink::text::from_device(&binary);
            black_box(benchlink::text::for_terminal(&s).len())
        })
    });
    g.finish();
}

fn files(c: &mut Criterion) {
    let mut g = c.benchmark_group("files");
    g.throughput(Throughput::Bytes(64 * MIB as u64));
    g.bench_function("receiving rules, 64 MiB in 64 KiB frames", |b| {
        b.iter(|| {
            let mut r = Receiving::new(0, Some(64 * MIB as u64), 1 << 40, Some(1 << 20));
            for i in 0..1024u64 {
                if let OnData::Append { skip } = r.on_data(i * 65536, 65536) {
                    r.appended((65536 - skip) as u64);
                }
            }
            black_box(r.held)
        })
    });
    let content = vec![0x33u8; MIB];
    let mut wire = header_block("fw.bin", content.len() as u64, true).to_vec();
    for (i, chunk) in content.chunks(1024).enumerate() {
        wire.extend_from_slice(&encode_block((i + 1) as u8, chunk, true));
    }
    wire.extend_from_slice(&[0x04, 0x04]);
    g.throughput(Throughput::Bytes(content.len() as u64));
    g.bench_function("YMODEM receive 1 MiB in 1K blocks (CRC-16)", |b| {
        b.iter(|| {
            let now = std::time::Instant::now();
            let (mut rx, _) = Receiver::start(now);
            let mut n = 0;
            for piece in wire.chunks(4096) {
                n += rx.on_bytes(piece, now).len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, frames, text, files);
criterion_main!(benches);
