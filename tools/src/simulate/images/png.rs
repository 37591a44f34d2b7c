//! The pictures the simulator "generates": a valid one-pixel PNG whose colour is the first
//! three bytes of a SHA-256 of what was asked, so the same request always gets the same
//! bytes and a client that decodes them finds a real image. Whatever the size asked for, the
//! bytes stay small (about 70).
//!
//! Input: a seed. Output: PNG bytes.

use sha2::{Digest as _, Sha256};

/// The PNG signature.
const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// A one-pixel RGB PNG coloured by `seed`.
pub fn pixel(seed: &[u8]) -> Vec<u8> {
    let digest = Sha256::digest(seed);
    let rgb = [digest[0], digest[1], digest[2]];
    let mut png = SIGNATURE.to_vec();
    // Width 1, height 1, 8-bit truecolour, default compression, filter and interlace.
    let header = [0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0];
    chunk(&mut png, b"IHDR", &header);
    // One scanline: filter type 0, then the pixel.
    let raw = [0, rgb[0], rgb[1], rgb[2]];
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

/// Appends a chunk: length, type, data, CRC of type and data.
fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// `data` (under 64 KiB) as a zlib stream of one stored (uncompressed) block.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let len = data.len() as u16;
    let mut out = vec![0x78, 0x01, 0x01];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// Adler-32, as zlib streams end with it.
fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1_u32, 0_u32);
    for byte in bytes {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn a_pixel_is_a_deterministic_png() {
        let png = pixel(b"a red fox");
        assert_eq!(png, pixel(b"a red fox"));
        assert_ne!(png, pixel(b"a blue fox"));
        assert_eq!(&png[..8], &SIGNATURE);
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(
            &png[png.len() - 12..],
            &[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]
        );
        assert!(png.len() < 80, "{} bytes", png.len());
    }
}
