//! Camera frames for the simulated board: real 24-bit BMP files, different each time.

/// The 54-byte header (BITMAPFILEHEADER + BITMAPINFOHEADER) of a 24-bit BMP, with
/// the file-size field right; rows of `width * 3` bytes padded to 4 follow it.
pub fn bmp_header(width: u32, height: u32) -> Vec<u8> {
    let row = (width as usize * 3).div_ceil(4) * 4;
    let pixels = row * height as usize;
    let mut out = Vec::with_capacity(54 + pixels);
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&((54 + pixels) as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&(width as i32).to_le_bytes());
    out.extend_from_slice(&(height as i32).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(pixels as u32).to_le_bytes());
    out.extend_from_slice(&2835i32.to_le_bytes());
    out.extend_from_slice(&2835i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

/// A `width` x `height` 24-bit BMP whose picture depends on `seed`: a moving
/// gradient with a bar whose length counts the captures.
pub fn bmp(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let row = (width as usize * 3).div_ceil(4) * 4;
    let mut out = bmp_header(width, height);
    let bar = (seed % 16 + 1) * width / 16;
    for y in 0..height {
        for x in 0..width {
            let (r, g, b) = if y < height / 10 && x < bar {
                (255, 255, 255)
            } else {
                (
                    ((x + seed * 7) % 256) as u8,
                    ((y + seed * 13) % 256) as u8,
                    (((x ^ y) + seed * 29) % 256) as u8,
                )
            };
            out.extend_from_slice(&[b, g, r]);
        }
        out.resize(out.len() + row - width as usize * 3, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sniff::{Completeness, HeadTail};

    #[test]
    fn bmp_is_complete_by_its_own_header_and_differs_by_seed() {
        let a = bmp(321, 20, 1);
        let b = bmp(321, 20, 2);
        assert_ne!(a, b);
        let mut ht = HeadTail::default();
        ht.observe(&a);
        assert_eq!(ht.completeness(), Completeness::Complete);
        assert_eq!(u32::from_le_bytes([a[2], a[3], a[4], a[5]]) as usize, a.len());
    }
}
