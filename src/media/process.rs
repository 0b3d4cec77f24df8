//! Turning untrusted image bytes into a safe, bounded, re-encoded image (CPU work: call off the runtime).
//!
//! Every decode in the process — portraits, uploads, generated pictures — runs through [`off_runtime`],
//! which holds one of [`CONCURRENT_DECODES`] slots for as long as the work runs, so the memory of all
//! decodes together stays bounded (docs/performance.md): a decode may allocate up to 512 MiB, plus at most
//! one conversion to 8-bit RGBA, plus buffers the size of the (bounded) output.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{
    DynamicImage, GenericImageView, ImageBuffer, ImageFormat, ImageReader, Limits, Pixel, RgbImage,
    RgbaImage,
};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Decodes running at once in this process: each may hold a large bitmap.
pub const CONCURRENT_DECODES: usize = 2;
static DECODE_SLOTS: Semaphore = Semaphore::const_new(CONCURRENT_DECODES);

/// Runs image work on the blocking pool once a decode slot is free.
///
/// The slot moves into the blocking task: a caller that gives up (Stop, a timeout, a closed connection)
/// does not free it while the decode still runs.
pub async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    // The semaphore is a never-closed static, so acquiring only waits.
    let slot = DECODE_SLOTS.acquire().await.ok();
    tokio::task::spawn_blocking(move || {
        let done = work();
        drop(slot);
        done
    })
    .await
}

/// Takes every decode slot until the guard drops (tests of the limit).
#[cfg(test)]
pub(crate) async fn hold_every_decode_slot() -> tokio::sync::SemaphorePermit<'static> {
    DECODE_SLOTS
        .acquire_many(CONCURRENT_DECODES as u32)
        .await
        .expect("the static semaphore is never closed")
}

/// Images with more pixels than this are refused before decoding (decompression bombs).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Memory the decoder may allocate.
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
/// JPEG quality of re-encoded images.
const JPEG_QUALITY: u8 = 88;

/// A square crop in source pixels: the authoritative crop chosen in the browser's cropper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Side length.
    pub size: u32,
}

/// A stored-ready image.
#[derive(Debug, Clone)]
pub struct Processed {
    /// Encoded bytes.
    pub bytes: Vec<u8>,
    /// MIME type of `bytes`.
    pub mime: &'static str,
    /// File extension matching `mime`.
    pub extension: &'static str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Hex SHA-256 of `bytes` (the storage key and the ETag).
    pub sha256: String,
}

/// Why bytes were refused; each message can be shown to the user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// Not JPEG, PNG, WebP or GIF.
    #[error("This is not an image we accept: use a JPEG, PNG, WebP or GIF file.")]
    UnsupportedType,
    /// More pixels than [`MAX_PIXELS`].
    #[error("The image is {width}×{height} pixels; images may have at most 40 megapixels.")]
    TooManyPixels {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The crop rectangle does not lie inside the image.
    #[error("The crop area lies outside the image ({width}×{height}); choose the crop again.")]
    CropOutside {
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
    /// The bytes claim a type but do not decode.
    #[error("The image file is damaged or incomplete and cannot be read.")]
    Corrupt,
}

fn format_of(bytes: &[u8]) -> Result<ImageFormat, ImageError> {
    match image::guess_format(bytes) {
        Ok(
            format @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Gif),
        ) => Ok(format),
        _ => Err(ImageError::UnsupportedType),
    }
}

fn reader(bytes: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(40_000);
    limits.max_image_height = Some(40_000);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader
}

/// Sniffs, checks the size from the header, then decodes (the first frame of a GIF).
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImageError> {
    let format = format_of(bytes)?;
    let (width, height) = reader(bytes, format)
        .into_dimensions()
        .map_err(|_| ImageError::Corrupt)?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageError::TooManyPixels { width, height });
    }
    reader(bytes, format)
        .decode()
        .map_err(|_| ImageError::Corrupt)
}

/// A portrait: decoded, cropped square (centre when no crop is given), at most `max_side` pixels, JPEG.
pub fn portrait(bytes: &[u8], crop: Option<Crop>, max_side: u32) -> Result<Processed, ImageError> {
    let image = decode(bytes)?;
    let (width, height) = (image.width(), image.height());
    let crop = match crop {
        Some(crop) => {
            let inside = crop.size > 0
                && u64::from(crop.x) + u64::from(crop.size) <= u64::from(width)
                && u64::from(crop.y) + u64::from(crop.size) <= u64::from(height);
            if !inside {
                return Err(ImageError::CropOutside { width, height });
            }
            crop
        }
        None => {
            let size = width.min(height);
            Crop {
                x: (width - size) / 2,
                y: (height - size) / 2,
                size,
            }
        }
    };
    // The crop is a view into the decoded bitmap, not a copy of it; only the (small) square is allocated.
    let square = match image {
        DynamicImage::ImageRgb8(buffer) => {
            DynamicImage::ImageRgb8(square_of(&buffer, crop, max_side))
        }
        DynamicImage::ImageRgba8(buffer) => {
            DynamicImage::ImageRgba8(square_of(&buffer, crop, max_side))
        }
        other => DynamicImage::ImageRgba8(square_of(&other.into_rgba8(), crop, max_side)),
    };
    encode_jpeg(square)
}

/// The `crop` of `image`, scaled down to `max_side` when larger.
fn square_of<P: Pixel + 'static>(
    image: &ImageBuffer<P, Vec<P::Subpixel>>,
    crop: Crop,
    max_side: u32,
) -> ImageBuffer<P, Vec<P::Subpixel>> {
    let view = image.view(crop.x, crop.y, crop.size, crop.size);
    if crop.size > max_side {
        image::imageops::resize(&*view, max_side, max_side, FilterType::Lanczos3)
    } else {
        view.to_image()
    }
}

/// A generated picture and its gallery thumbnail (fitting `thumb_side` × 1.5 `thumb_side`), decoded once.
pub fn fit_with_thumbnail(
    bytes: &[u8],
    max_side: u32,
    thumb_side: u32,
) -> Result<(Processed, Processed), ImageError> {
    let image = decode(bytes)?;
    let image = if image.width() > max_side || image.height() > max_side {
        image.resize(max_side, max_side, FilterType::Lanczos3)
    } else {
        image
    };
    let thumb_height = thumb_side.saturating_mul(3) / 2;
    let thumbnail = if image.width() > thumb_side || image.height() > thumb_height {
        image.resize(thumb_side, thumb_height, FilterType::Triangle)
    } else {
        image.clone()
    };
    Ok((encode_jpeg(image)?, encode_jpeg(thumbnail)?))
}

/// Flattens transparency onto white (JPEG has none) and encodes; re-encoding drops all metadata.
///
/// Takes the image by value: an opaque 8-bit RGB image is encoded as it is, anything else is converted
/// once (a buffer the size of this — already bounded — output image).
fn encode_jpeg(image: DynamicImage) -> Result<Processed, ImageError> {
    let rgb = match image {
        DynamicImage::ImageRgba8(rgba) => flatten_onto_white(&rgba),
        opaque if !opaque.color().has_alpha() => opaque.into_rgb8(),
        other => flatten_onto_white(&other.into_rgba8()),
    };
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
        .encode_image(&rgb)
        .map_err(|_| ImageError::Corrupt)?;
    let sha256 = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Processed {
        bytes,
        mime: "image/jpeg",
        extension: "jpg",
        width: rgb.width(),
        height: rgb.height(),
        sha256,
    })
}

fn flatten_onto_white(rgba: &RgbaImage) -> RgbImage {
    let mut rgb = RgbImage::new(rgba.width(), rgba.height());
    for (source, target) in rgba.pixels().zip(rgb.pixels_mut()) {
        let [r, g, b, a] = source.0;
        let blend = |c: u8| -> u8 {
            let alpha = u16::from(a);
            ((u16::from(c) * alpha + 255 * (255 - alpha)) / 255) as u8
        };
        target.0 = [blend(r), blend(g), blend(b)];
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgba};

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = ImageBuffer::from_fn(width, height, |x, y| {
            Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
        });
        let mut bytes = Vec::new();
        DynamicImage::ImageRgba8(image)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .expect("test setup is valid");
        bytes
    }

    #[test]
    fn a_thumbnail_keeps_the_aspect_and_fits_its_box() {
        let (full, thumb) = fit_with_thumbnail(&png(2000, 3000), 1920, 400).expect("valid");
        assert_eq!((full.width, full.height), (1280, 1920));
        assert_eq!((thumb.width, thumb.height), (400, 600));
        let (_, small) = fit_with_thumbnail(&png(100, 50), 1920, 400).expect("valid");
        assert_eq!((small.width, small.height), (100, 50), "never enlarged");
    }

    #[test]
    fn portraits_are_square_bounded_jpegs() {
        let out = portrait(&png(1200, 900), None, 800).expect("test setup is valid");
        assert_eq!((out.width, out.height), (800, 800));
        assert_eq!(out.mime, "image/jpeg");
        assert_eq!(
            image::guess_format(&out.bytes).expect("test setup is valid"),
            ImageFormat::Jpeg
        );
        assert_eq!(out.sha256.len(), 64);
        let small = portrait(&png(300, 500), None, 800).expect("test setup is valid");
        assert_eq!(
            (small.width, small.height),
            (300, 300),
            "small images are not enlarged"
        );
    }

    #[test]
    fn crops_must_lie_inside_the_image() {
        let bytes = png(400, 300);
        let ok = portrait(
            &bytes,
            Some(Crop {
                x: 100,
                y: 0,
                size: 300,
            }),
            800,
        )
        .expect("test setup is valid");
        assert_eq!(ok.width, 300);
        for crop in [
            Crop {
                x: 101,
                y: 0,
                size: 300,
            },
            Crop {
                x: 0,
                y: 0,
                size: 0,
            },
            Crop {
                x: u32::MAX,
                y: 0,
                size: 10,
            },
        ] {
            assert!(matches!(
                portrait(&bytes, Some(crop), 800),
                Err(ImageError::CropOutside { .. })
            ));
        }
    }

    #[test]
    fn text_and_truncated_files_are_refused() {
        assert_eq!(
            decode(b"hello, I am text").unwrap_err(),
            ImageError::UnsupportedType
        );
        let mut truncated = png(64, 64);
        truncated.truncate(60);
        assert_eq!(decode(&truncated).unwrap_err(), ImageError::Corrupt);
        let bmp = b"BM\x00\x00\x00\x00";
        assert_eq!(decode(bmp).unwrap_err(), ImageError::UnsupportedType);
    }

    #[tokio::test]
    async fn decodes_wait_for_a_free_slot() {
        let held = hold_every_decode_slot().await;
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let mut work = Box::pin(off_runtime(move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }));
        // Polled while every slot is taken, the work is not even handed to the blocking pool.
        assert!(futures_util::poll!(work.as_mut()).is_pending());
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        drop(held);
        work.await.expect("the work runs once a slot is free");
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn a_portrait_crop_of_a_jpeg_keeps_its_pixels() {
        let image = ImageBuffer::from_fn(300, 200, |x, _| {
            image::Rgb([if x < 150 { 250_u8 } else { 5 }, 0, 0])
        });
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(image)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Jpeg)
            .expect("test setup is valid");
        let left = portrait(
            &bytes,
            Some(Crop {
                x: 0,
                y: 0,
                size: 100,
            }),
            800,
        )
        .expect("valid");
        let decoded = image::load_from_memory(&left.bytes)
            .expect("valid")
            .to_rgb8();
        assert_eq!(decoded.dimensions(), (100, 100));
        assert!(decoded.pixels().all(|p| p.0[0] > 200), "the left, red part");
    }

    #[test]
    fn transparency_becomes_white() {
        let image = ImageBuffer::from_pixel(4, 4, Rgba([0_u8, 0, 0, 0]));
        let mut bytes = Vec::new();
        DynamicImage::ImageRgba8(image)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .expect("test setup is valid");
        let (out, _) = fit_with_thumbnail(&bytes, 1920, 480).expect("test setup is valid");
        let decoded = image::load_from_memory(&out.bytes)
            .expect("test setup is valid")
            .to_rgb8();
        assert!(decoded.pixels().all(|p| p.0.iter().all(|c| *c > 240)));
    }
}
