//! vqz under test: every quality level, each image as its own one-image
//! file, and all images as one multi-frame stream.
//!
//! Encoding goes through the network in batches, as `vqz compress` does
//! with many inputs: the images are written to one stream with
//! [`Encoder::write_images`], then each frame is copied out into its own
//! complete file (the bytes [`codec::compress`] writes for that image).
//! Every file is then decoded on its own with [`codec::decompress`].

use std::time::{Duration, Instant};

use image::{DynamicImage, GrayImage};
use rayon::prelude::*;

use crate::codec::{self, CompressOptions, Decoder, Encoder, Model, Quality};
use crate::format::{FileHeader, Reader, Writer};

use super::report::{Row, Timing};
use super::{BenchError, BenchOptions, Distortion, Images, Progress, per_second, timed_median};

/// Images handed to the encoder at once, as `vqz compress` does.
const ENCODE_CHUNK: usize = 1024;

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
    let mut rows = Vec::new();
    let mut contact = Vec::new();
    for level in 1..=model.max_level() {
        progress.start(&format!("vqz level {level}"), (4 * repeats * n) as u64);
        let opts = CompressOptions {
            quality: Quality::Level(level),
            embed_model: false,
            refine_steps: options.refine_steps,
        };

        let mut stream_times = Vec::new();
        let mut split_times = Vec::new();
        let mut encoded = None;
        for _ in 0..repeats {
            let start = Instant::now();
            let (stream, payload_bytes) = encode_stream(model, images, opts, progress)?;
            stream_times.push(start.elapsed());
            let start = Instant::now();
            let files = split_stream(&stream)?;
            split_times.push(start.elapsed());
            progress.advance(n as u64);
            encoded = Some((stream, payload_bytes, files));
        }
        let Some((stream, payload_bytes, files)) = encoded else {
            return Err(BenchError::NoImages);
        };
        if files.len() != n {
            return Err(BenchError::Codec(codec::CodecError::Internal(format!(
                "the stream holds {} frames for {n} images",
                files.len()
            ))));
        }
        let encode_stream_time = median(&mut stream_times);
        let split_time = median(&mut split_times);

        let (decode_time, decoded) = timed_median(repeats, || {
            let out = files
                .par_iter()
                .map(|f| codec::decompress(f, model))
                .collect::<Result<Vec<_>, _>>()?;
            progress.advance(n as u64);
            Ok(out)
        })?;
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
            Some(payload_bytes),
            &distortion,
            per_second(n, encode_stream_time + split_time),
            per_second(n, decode_time),
            Timing::Batched,
        ));
        contact.push(
            decoded
                .iter()
                .take(options.contact_images)
                .map(DynamicImage::to_luma8)
                .collect(),
        );

        let (stream_decode_time, from_stream) = timed_median(repeats, || {
            let out = decode_stream(model, &stream)?;
            progress.advance(n as u64);
            Ok(out)
        })?;
        let mut distortion = Distortion::default();
        for (i, image) in from_stream.iter().enumerate() {
            distortion.add(images.pixels(i), image.to_luma8().as_raw());
        }
        if from_stream.len() != n {
            return Err(BenchError::Codec(codec::CodecError::Internal(format!(
                "the stream decoded to {} images, not {n}",
                from_stream.len()
            ))));
        }
        rows.push(Row::measured(
            "vqz stream",
            &format!("level {level}"),
            n,
            stream.len(),
            Some(payload_bytes),
            &distortion,
            per_second(n, encode_stream_time),
            per_second(n, stream_decode_time),
            Timing::Batched,
        ));
    }
    Ok(Measured { rows, contact })
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// All images as one stream; returns it and the sum of payload bytes.
fn encode_stream(
    model: &Model,
    images: &Images,
    options: CompressOptions,
    progress: &dyn Progress,
) -> Result<(Vec<u8>, usize), BenchError> {
    let mut enc = Encoder::new(Vec::new(), model, options);
    let mut payload_bytes = 0;
    for chunk in images.images.chunks(ENCODE_CHUNK) {
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
    let mut dec = Decoder::new(stream, &[model])?;
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
        let set = Images {
            width: 28,
            height: 28,
            images: images.clone(),
        };
        let opts = CompressOptions {
            quality: Quality::Level(2),
            ..CompressOptions::default()
        };
        let (stream, _) = encode_stream(&model, &set, opts, &super::super::NoProgress).unwrap();
        let files = split_stream(&stream).unwrap();
        assert_eq!(files.len(), 5);
        for (file, image) in files.iter().zip(&images) {
            assert_eq!(file, &codec::compress(&model, image, &opts).unwrap());
        }
    }
}
