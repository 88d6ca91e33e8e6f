//! vqz under test: every quality level, each image as its own one-image
//! file, and all images as one multi-frame stream.
//!
//! Encoding goes through the network in batches, as `vqz compress` does
//! with many inputs: the images are written to one stream with
//! [`Encoder::write_images`], then each frame is copied out into its own
//! complete file (the bytes [`codec::compress`] writes for that image).
//! Every file is then decoded on its own with [`codec::decompress`].

use std::time::Duration;

use image::{DynamicImage, GrayImage};
use rayon::prelude::*;

use crate::codec::{self, CompressOptions, Decoder, Encoder, Model, Quality};
use crate::format::{FileHeader, Reader, Writer};

use super::report::{Row, Timing};
use super::{BenchError, BenchOptions, Distortion, Images, Progress, median, per_second, timed};

/// Images handed to the encoder at once, as `vqz compress` does.
const ENCODE_CHUNK: usize = 1024;

/// Timed runs after the first (which covers every image and gives the sizes
/// and PSNR) time this many images again: at a few dozen images a second,
/// three full runs of the 10,000 test digits would take hours.
pub const TIMING_IMAGES: usize = 1000;

/// vqz's rows and the reconstructions for the contact sheet.
pub(crate) struct Measured {
    pub rows: Vec<Row>,
    /// Per level (from 1), the first images as decoded from their files.
    pub contact: Vec<Vec<GrayImage>>,
}

pub(crate) fn measure(
    model: &Model,
    images: &Images,
    options: &BenchOptions,
    progress: &dyn Progress,
) -> Result<Measured, BenchError> {
    let n = images.len();
    let repeats = options.repeats.max(1);
    let timing_n = n.min(TIMING_IMAGES);
    let mut rows = Vec::new();
    let mut contact = Vec::new();
    for level in 1..=model.max_level() {
        progress.start(
            &format!("vqz level {level}"),
            (4 * (n + (repeats - 1) * timing_n)) as u64,
        );
        let opts = CompressOptions {
            quality: Quality::Level(level),
            embed_model: false,
            refine_steps: options.refine_steps,
        };

        // The first run covers every image and gives the files to measure;
        // further runs time the first `timing_n` images again.
        let first = encode_and_split(model, &images.images, opts, progress)?;
        let files = first.files;
        if files.len() != n {
            return Err(BenchError::Codec(codec::CodecError::Internal(format!(
                "the stream holds {} frames for {n} images",
                files.len()
            ))));
        }
        let mut stream_encode_rates = vec![per_second(n, first.encode_time)];
        let mut file_encode_rates = vec![per_second(n, first.encode_time + first.split_time)];
        let mut timing_stream = None;
        for _ in 1..repeats {
            let again = encode_and_split(model, &images.images[..timing_n], opts, progress)?;
            stream_encode_rates.push(per_second(timing_n, again.encode_time));
            file_encode_rates.push(per_second(timing_n, again.encode_time + again.split_time));
            timing_stream = Some(again.stream);
        }

        let decode_files = |files: &[Vec<u8>]| -> Result<Vec<DynamicImage>, BenchError> {
            let out = files
                .par_iter()
                .map(|f| codec::decompress(f, model))
                .collect::<Result<Vec<_>, _>>()?;
            progress.advance(files.len() as u64);
            Ok(out)
        };
        let (time, decoded) = timed(|| decode_files(&files))?;
        let mut file_decode_rates = vec![per_second(n, time)];
        for _ in 1..repeats {
            let (time, _) = timed(|| decode_files(&files[..timing_n]))?;
            file_decode_rates.push(per_second(timing_n, time));
        }
        let mut distortion = Distortion::default();
        for (i, image) in decoded.iter().enumerate() {
            distortion.add(images.pixels(i), image.to_luma8().as_raw());
        }
        let file_bytes: usize = files.iter().map(Vec::len).sum();
        rows.push(Row::measured(
            "vqz",
            &format!("level {level}"),
            n,
            file_bytes,
            Some(first.payload_bytes),
            &distortion,
            median(&mut file_encode_rates),
            median(&mut file_decode_rates),
            Timing::Batched,
        ));
        contact.push(
            decoded
                .iter()
                .take(options.contact_images)
                .map(DynamicImage::to_luma8)
                .collect(),
        );

        let decode_whole = |stream: &[u8]| -> Result<Vec<DynamicImage>, BenchError> {
            let out = decode_stream(model, stream)?;
            progress.advance(out.len() as u64);
            Ok(out)
        };
        let (time, from_stream) = timed(|| decode_whole(&first.stream))?;
        let mut stream_decode_rates = vec![per_second(n, time)];
        if let Some(stream) = &timing_stream {
            for _ in 1..repeats {
                let (time, _) = timed(|| decode_whole(stream))?;
                stream_decode_rates.push(per_second(timing_n, time));
            }
        }
        if from_stream.len() != n {
            return Err(BenchError::Codec(codec::CodecError::Internal(format!(
                "the stream decoded to {} images, not {n}",
                from_stream.len()
            ))));
        }
        let mut distortion = Distortion::default();
        for (i, image) in from_stream.iter().enumerate() {
            distortion.add(images.pixels(i), image.to_luma8().as_raw());
        }
        rows.push(Row::measured(
            "vqz stream",
            &format!("level {level}"),
            n,
            first.stream.len(),
            Some(first.payload_bytes),
            &distortion,
            median(&mut stream_encode_rates),
            median(&mut stream_decode_rates),
            Timing::Batched,
        ));
    }
    Ok(Measured { rows, contact })
}

/// One timed encoding of images: the stream, its frames as files, and how
/// long each took.
struct Encoded {
    stream: Vec<u8>,
    payload_bytes: usize,
    files: Vec<Vec<u8>>,
    encode_time: Duration,
    split_time: Duration,
}

fn encode_and_split(
    model: &Model,
    images: &[DynamicImage],
    options: CompressOptions,
    progress: &dyn Progress,
) -> Result<Encoded, BenchError> {
    let (encode_time, (stream, payload_bytes)) =
        timed(|| encode_stream(model, images, options, progress))?;
    let (split_time, files) = timed(|| split_stream(&stream))?;
    progress.advance(images.len() as u64);
    Ok(Encoded {
        stream,
        payload_bytes,
        files,
        encode_time,
        split_time,
    })
}

/// All images as one stream; returns it and the sum of payload bytes.
fn encode_stream(
    model: &Model,
    images: &[DynamicImage],
    options: CompressOptions,
    progress: &dyn Progress,
) -> Result<(Vec<u8>, usize), BenchError> {
    let mut enc = Encoder::new(Vec::new(), model, options);
    let mut payload_bytes = 0;
    for chunk in images.chunks(ENCODE_CHUNK) {
        for frame in enc.write_images(chunk)? {
            payload_bytes += frame.payload_bytes;
        }
        progress.advance(chunk.len() as u64);
    }
    Ok((enc.finish()?, payload_bytes))
}

/// Copies each frame of a stream into its own one-frame file, whose header
/// carries the frame's geometry: the file [`codec::compress`] would write.
fn split_stream(stream: &[u8]) -> Result<Vec<Vec<u8>>, BenchError> {
    let mut reader = Reader::new(stream).map_err(codec::CodecError::from)?;
    let model_id = reader.header().model_id;
    let stride = reader.header().grid_stride_log2;
    let mut files = Vec::new();
    while let Some(frame) = reader.next_frame().map_err(codec::CodecError::from)? {
        let h = &frame.header;
        let header = FileHeader::new(model_id, h.geometry, stride);
        let w = Writer::new(Vec::new(), &header, None).map_err(codec::CodecError::from)?;
        files.push(
            w.finish_with_frame(h.coding_mode, h.stages, h.geometry, &frame.payload)
                .map_err(codec::CodecError::from)?,
        );
    }
    Ok(files)
}

fn decode_stream(model: &Model, stream: &[u8]) -> Result<Vec<DynamicImage>, BenchError> {
    // A stream it has just written: no sample or work budget.
    let mut dec = Decoder::new(stream, &[model])?
        .with_max_samples(u64::MAX)
        .with_max_work(u64::MAX);
    let mut out = Vec::new();
    loop {
        let batch = dec.next_batch(ENCODE_CHUNK)?;
        if batch.is_empty() {
            return Ok(out);
        }
        out.extend(batch.into_iter().map(|d| d.image));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_files_equal_compress_output() {
        let model = Model::default_model().unwrap();
        let images: Vec<DynamicImage> = (0..5u8)
            .map(|k| {
                DynamicImage::ImageLuma8(GrayImage::from_fn(28, 28, |x, y| {
                    image::Luma([((x * 9 + y * 5 + u32::from(k) * 40) % 256) as u8])
                }))
            })
            .collect();
        let opts = CompressOptions {
            quality: Quality::Level(2),
            ..CompressOptions::default()
        };
        let (stream, _) = encode_stream(&model, &images, opts, &super::super::NoProgress).unwrap();
        let files = split_stream(&stream).unwrap();
        assert_eq!(files.len(), 5);
        for (file, image) in files.iter().zip(&images) {
            assert_eq!(file, &codec::compress(&model, image, &opts).unwrap());
        }
    }
}
