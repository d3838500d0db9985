//! Images carved out of a text stream, as serial cameras (ArduCAM, ESP32-CAM
//! sketches) send them: log lines, a JPEG, more lines. Real images, encoded by
//! the `image` crate, sent over a lines connection in small writes.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::{Console, WAIT_FILE};
use serde_json::json;

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

fn send_slowly(dev: &mut TcpStream, bytes: &[u8]) {
    for piece in bytes.chunks(700) {
        dev.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn jpeg_png_and_bmp_between_lines_are_saved_and_the_lines_shown() {
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let mut dev = TcpStream::connect(c.addr()).unwrap();
    let jpeg = encoded(image::ImageFormat::Jpeg);
    let png = encoded(image::ImageFormat::Png);
    let bmp = encoded(image::ImageFormat::Bmp);
    let mut stream = b"camera ready\r\nIMG:".to_vec();
    stream.extend_from_slice(&jpeg);
    stream.extend_from_slice(b"\r\nframe 1 sent\r\n");
    stream.extend_from_slice(&png);
    stream.extend_from_slice(b"frame 2 sent\r\n");
    stream.extend_from_slice(&bmp);
    stream.extend_from_slice(b"\r\nbye\r\n");
    send_slowly(&mut dev, &stream);
    for (ext, data) in [("jpg", &jpeg), ("png", &png), ("bmp", &bmp)] {
        let saved = c.wait_for(
            |e| e["event"] == "file_saved" && e["name"].as_str().is_some_and(|n| n.ends_with(ext)),
            WAIT_FILE,
        );
        let path = PathBuf::from(saved["path"].as_str().unwrap());
        assert_eq!(&std::fs::read(&path).unwrap(), data, "{ext} byte-identical");
        assert!(
            path.parent().unwrap().ends_with("127.0.0.1"),
            "in the device's folder: {}",
            path.display()
        );
    }
    for line in ["camera ready", "IMG:", "frame 1 sent", "frame 2 sent", "bye"] {
        c.wait_event("text", &[("text", json!(line))]);
    }
}

#[test]
fn a_truncated_image_is_kept_as_part_with_a_failure() {
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0"]);
    let mut dev = TcpStream::connect(c.addr()).unwrap();
    let jpeg = encoded(image::ImageFormat::Jpeg);
    let mut stream = b"IMG:".to_vec();
    stream.extend_from_slice(&jpeg[..jpeg.len() / 2]);
    send_slowly(&mut dev, &stream);
    drop(dev);
    let failed = c.wait_for(|e| e["event"] == "file_failed", WAIT_FILE);
    assert!(
        failed["reason"].as_str().unwrap().contains("cut short"),
        "{failed}"
    );
    let part = PathBuf::from(failed["part"].as_str().expect("kept as .part"));
    assert_eq!(std::fs::read(part).unwrap(), jpeg[..jpeg.len() / 2]);
}

#[test]
fn no_carve_leaves_images_in_the_text() {
    let mut c = Console::start(&["--listen", "lines://127.0.0.1:0", "--no-carve"]);
    let mut dev = TcpStream::connect(c.addr()).unwrap();
    let mut stream = b"IMG:".to_vec();
    stream.extend_from_slice(&encoded(image::ImageFormat::Png));
    stream.extend_from_slice(b"\r\ndone\r\n");
    send_slowly(&mut dev, &stream);
    c.wait_event("text", &[("text", json!("done"))]);
    assert!(
        c.try_wait_for(|e| e["event"] == "file_started", Duration::from_millis(300))
            .is_none(),
        "nothing is carved"
    );
}
