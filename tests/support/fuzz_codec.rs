//! The codec fuzz check. Fuzz input describes frames (a control byte, an
//! optional small geometry, a payload); they are written with valid CRCs,
//! so the bytes reach the entropy decoder and the network, and the stream
//! is decoded with the shipped model one frame at a time. Each frame must
//! come back as an image of its geometry or as an error naming it, which
//! ends the stream; never a panic. Decoded again in one batch, the stream
//! must give the same images and the same error. Geometries are at most 64x64 to keep runs
//! fast; large and hostile image sizes are covered by the codec tests.

use std::sync::OnceLock;

use vqz::codec::{Decoder, Model};
use vqz::format::{CodingMode, FileHeader, Geometry, Writer};

/// Frames one input may describe.
const MAX_FRAMES: usize = 16;

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::default_model().expect("the shipped model loads"))
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = input.split_at_checked(n)?;
    *input = rest;
    Some(head)
}

pub fn codec_decoder(data: &[u8]) {
    let model = model();
    let default = Geometry {
        width: 28,
        height: 28,
        channels: 1,
    };
    let header = FileHeader::new(model.id(), default, model.grid_stride_log2());
    let mut writer = Writer::new(Vec::new(), &header, None).expect("valid header");
    let mut input = data;
    let mut geometries = Vec::new();
    while geometries.len() < MAX_FRAMES {
        let Some(&[control]) = take(&mut input, 1) else {
            break;
        };
        // Bits 0-2: stages - 1 (levels over the model's are errors);
        // bit 3: ANS; bit 4: a geometry of up to 64x64 follows.
        let stages = (control & 7) + 1;
        let mode = if control & 8 != 0 {
            CodingMode::Ans
        } else {
            CodingMode::Stored
        };
        let geometry = if control & 16 != 0 {
            let Some(&[w, h, c]) = take(&mut input, 3) else {
                break;
            };
            Geometry {
                width: u32::from(w % 64) + 1,
                height: u32::from(h % 64) + 1,
                channels: [1, 3, 4][usize::from(c % 3)],
            }
        } else {
            default
        };
        let Some(&[len]) = take(&mut input, 1) else {
            break;
        };
        let n = usize::from(len).min(input.len());
        let payload = take(&mut input, n).unwrap_or_default();
        // The writer refuses payloads over the spec's bound for the frame.
        if writer.write_frame(mode, stages, geometry, payload).is_ok() {
            geometries.push(geometry);
        }
    }
    let file = writer.finish().expect("writing to memory");

    let mut decoder = Decoder::new(&file[..], &[model]).expect("a valid header naming the model");
    let mut one_by_one = Vec::new();
    let mut error = None;
    for (number, geometry) in geometries.iter().enumerate() {
        match decoder.next_batch(1) {
            Ok(batch) => {
                let [image] = batch.as_slice() else {
                    panic!("frame {number}: {} images", batch.len());
                };
                assert_eq!(image.number, number as u64);
                let got = (image.image.width(), image.image.height());
                assert_eq!(got, (geometry.width, geometry.height), "frame {number}");
                let channels = image.image.color().channel_count();
                assert_eq!(channels, geometry.channels, "frame {number}");
                one_by_one.push(image.image.as_bytes().to_vec());
            }
            // A payload that is no valid coding of its grid, or a level the
            // model lacks: the error names that frame, and the stream ends.
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains(&format!("frame {number}")), "{e}");
                error = Some(e);
                break;
            }
        }
    }
    let rest = decoder.next_batch(1).expect("the stream ends cleanly");
    assert!(
        rest.is_empty(),
        "frames past the last one written or the error"
    );

    // All frames in one batch: the same images, then the same error.
    let mut decoder = Decoder::new(&file[..], &[model]).expect("a valid header naming the model");
    let mut batched = Vec::new();
    let mut batch_error = None;
    loop {
        match decoder.next_batch(MAX_FRAMES) {
            Ok(b) if b.is_empty() => break,
            Ok(b) => batched.extend(b.iter().map(|d| d.image.as_bytes().to_vec())),
            Err(e) => {
                batch_error = Some(e.to_string());
                let rest = decoder
                    .next_batch(MAX_FRAMES)
                    .expect("one error, then the end");
                assert!(rest.is_empty(), "frames after the error");
                break;
            }
        }
    }
    assert!(batched == one_by_one, "batched decoding differs");
    assert_eq!(batch_error, error);
}
