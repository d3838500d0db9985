use proptest::prelude::*;

use super::*;

/// A small but real baseline JPEG: SOI, APP0, DQT, SOF0, DHT, SOS with scan
/// data holding a stuffed FF00 and a restart marker, then EOI.
fn jpeg() -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    let segment = |j: &mut Vec<u8>, marker: u8, payload: &[u8]| {
        j.extend_from_slice(&[0xFF, marker]);
        j.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        j.extend_from_slice(payload);
    };
    segment(&mut j, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    // A table holding FF D9 inside: a carver searching for FF D9 would stop here.
    segment(&mut j, 0xDB, &[0, 0xFF, 0xD9, 3, 4, 5]);
    segment(&mut j, 0xC0, &[8, 0, 16, 0, 16, 1, 1, 0x11, 0]);
    segment(&mut j, 0xC4, &[0, 1, 2, 3]);
    segment(&mut j, 0xDA, &[1, 1, 0, 0, 0x3F, 0]);
    j.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0x78]);
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

fn png() -> Vec<u8> {
    let mut p = PNG_SIGNATURE.to_vec();
    let chunk = |p: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
        p.extend_from_slice(&(data.len() as u32).to_be_bytes());
        p.extend_from_slice(kind);
        p.extend_from_slice(data);
        p.extend_from_slice(&crc32fast::hash(&[&kind[..], data].concat()).to_be_bytes());
    };
    chunk(&mut p, b"IHDR", &[0, 0, 0, 2, 0, 0, 0, 2, 8, 2, 0, 0, 0]);
    // IDAT holding the bytes "IEND": only the chunk structure says where it ends.
    chunk(&mut p, b"IDAT", b"xxIENDxx\xff\xd9");
    chunk(&mut p, b"IEND", &[]);
    p
}

fn bmp() -> Vec<u8> {
    let size = 54 + 16;
    let mut b = b"BM".to_vec();
    b.extend_from_slice(&(size as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&54u32.to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.resize(size, 0x42);
    b
}

/// An image carved: its kind, bytes, and whether it was complete.
type Image = (ImageKind, Vec<u8>, bool);

/// Runs `input` through a carver in pieces of `split`; returns the text and
/// the images.
fn carve(input: &[u8], split: usize) -> (Vec<u8>, Vec<Image>) {
    let mut c = Carver::new(1 << 20);
    let mut out = Vec::new();
    for piece in input.chunks(split.max(1)) {
        c.push(piece, &mut out);
    }
    c.finish(&mut out);
    let mut text = Vec::new();
    let mut images: Vec<Image> = Vec::new();
    for piece in out {
        match piece {
            Carved::Text(t) => text.extend_from_slice(&t),
            Carved::Start(kind) => images.push((kind, Vec::new(), false)),
            Carved::Data(d) => images
                .last_mut()
                .expect("data after start")
                .1
                .extend_from_slice(&d),
            Carved::End { complete } => images.last_mut().expect("end after start").2 = complete,
        }
    }
    (text, images)
}

fn between_lines(image: &[u8]) -> Vec<u8> {
    let mut s = b"boot ok\r\nIMG:".to_vec();
    s.extend_from_slice(image);
    s.extend_from_slice(b"\r\ntemp 21.5\r\n");
    s
}

#[test]
fn each_format_is_cut_out_whole_and_the_text_around_it_stays() {
    for (kind, image) in [
        (ImageKind::Jpeg, jpeg()),
        (ImageKind::Png, png()),
        (ImageKind::Bmp, bmp()),
    ] {
        for split in [1, 3, 7, 64, 4096] {
            let (text, images) = carve(&between_lines(&image), split);
            assert_eq!(
                text, b"boot ok\r\nIMG:\r\ntemp 21.5\r\n",
                "{kind:?} split {split}"
            );
            assert_eq!(images.len(), 1, "{kind:?} split {split}");
            assert_eq!(images[0], (kind, image.clone(), true), "{kind:?} split {split}");
        }
    }
}

#[test]
fn a_truncated_image_is_reported_incomplete() {
    let image = jpeg();
    let cut = &image[..image.len() - 5];
    let mut input = b"x".to_vec();
    input.extend_from_slice(cut);
    let (text, images) = carve(&input, 16);
    assert_eq!(text, b"x");
    assert_eq!(images, vec![(ImageKind::Jpeg, cut.to_vec(), false)]);
}

#[test]
fn noise_that_starts_like_a_jpeg_stays_text() {
    let input = b"raw: \xff\xd8\xff\x00\x01 more text\r\n";
    let (text, images) = carve(input, 3);
    assert_eq!(text, input);
    assert!(images.is_empty());
}

#[test]
fn text_that_looks_like_a_signature_is_text() {
    let input = b"BMP280 ok\r\nBM\r\nvalue 0xFF 0xD8 \xff\xd8 done\r\n\x89PN\r\n";
    let (text, images) = carve(input, 5);
    assert_eq!(text, input);
    assert!(images.is_empty());
}

#[test]
fn a_held_back_prefix_is_released_as_text() {
    let mut c = Carver::new(1 << 20);
    let mut out = Vec::new();
    c.push(b"prompt> B", &mut out);
    assert_eq!(out, vec![Carved::Text(Bytes::from_static(b"prompt> "))]);
    out.clear();
    c.flush_text(&mut out);
    assert_eq!(out, vec![Carved::Text(Bytes::from_static(b"B"))]);
}

#[test]
fn an_image_over_the_limit_is_cut() {
    let mut c = Carver::new(100);
    let mut out = Vec::new();
    let mut big = bmp();
    big[2..6].copy_from_slice(&10_000u32.to_le_bytes());
    big.resize(10_000, 0);
    c.push(&big, &mut out);
    let data: usize = out
        .iter()
        .map(|p| if let Carved::Data(d) = p { d.len() } else { 0 })
        .sum();
    assert_eq!(data, 100);
    assert!(out.contains(&Carved::End { complete: false }));
}

proptest! {
    /// Arbitrary bytes in arbitrary splits: no panic, nothing lost (text and
    /// images together are the input), and the held-back bytes stay small.
    #[test]
    fn nothing_is_lost_and_memory_stays_small(
        input in proptest::collection::vec(any::<u8>(), 0..4000),
        split in 1usize..300,
    ) {
        let mut c = Carver::new(1 << 20);
        let mut out = Vec::new();
        let mut all = Vec::new();
        for piece in input.chunks(split) {
            c.push(piece, &mut out);
            prop_assert!(c.held.len() < BMP_HEADER);
            prop_assert!(c.pending.as_ref().is_none_or(|p| p.1.len() < MIN_IMAGE));
        }
        c.finish(&mut out);
        for p in out {
            match p {
                Carved::Text(t) | Carved::Data(t) => all.extend_from_slice(&t),
                _ => {}
            }
        }
        prop_assert_eq!(all, input);
    }

    /// Images between random text lines come out whole in any split.
    #[test]
    fn images_in_random_text_come_out_whole(
        before in "[a-z ]{0,40}", after in "[a-z ]{0,40}", which in 0usize..3, split in 1usize..200,
    ) {
        let image = [jpeg(), png(), bmp()][which].clone();
        let mut input = before.as_bytes().to_vec();
        input.extend_from_slice(b"\n");
        input.extend_from_slice(&image);
        input.extend_from_slice(b"\n");
        input.extend_from_slice(after.as_bytes());
        let (_, images) = carve(&input, split);
        prop_assert_eq!(images.len(), 1);
        prop_assert_eq!(&images[0].1, &image);
        prop_assert!(images[0].2);
    }
}
