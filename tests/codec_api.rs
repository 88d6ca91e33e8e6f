//! The public codec API on the shipped model: round trips of grey, colour
//! and odd-sized images, streams, level selection, and every way a stream
//! can be wrong.
#![cfg(feature = "codec")]

use image::{DynamicImage, GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use vqz::codec::{
    self, CodecError, CompressOptions, Conversion, Decoder, Encoder, Model, Quality, psnr_db,
};
use vqz::train::Dataset;

fn digits(n: usize) -> Vec<DynamicImage> {
    let ds = Dataset::load(std::path::Path::new("testdata/t10k-images-idx3-ubyte.gz")).unwrap();
    (0..n)
        .map(|i| {
            DynamicImage::ImageLuma8(GrayImage::from_raw(28, 28, ds.image(i).to_vec()).unwrap())
        })
        .collect()
}

fn level(l: u8) -> CompressOptions {
    CompressOptions {
        quality: Quality::Level(l),
        ..CompressOptions::default()
    }
}

#[test]
fn a_digit_round_trips_at_every_level_with_rising_quality() {
    let model = Model::default_model().unwrap();
    let imgs = digits(64);
    let mut last_psnr = 0.0;
    for l in 1..=model.max_level() {
        let mut se = 0.0;
        let mut total = 0;
        for img in &imgs {
            let bytes = codec::compress(&model, img, &level(l)).unwrap();
            total += bytes.len();
            let back = codec::decompress(&bytes, &model).unwrap();
            assert_eq!(back.color(), image::ColorType::L8);
            assert_eq!((back.width(), back.height()), (28, 28));
            se += codec::mse(img.as_bytes(), back.as_bytes());
        }
        let psnr = codec::psnr_db_from_mse(se / imgs.len() as f64);
        assert!(psnr > 15.0, "level {l}: {psnr:.2} dB");
        assert!(
            psnr >= last_psnr - 0.5,
            "level {l} is worse than level {}",
            l - 1
        );
        assert!(
            total / imgs.len() < 400,
            "level {l}: {} bytes per digit",
            total / imgs.len()
        );
        last_psnr = psnr;
    }
}

#[test]
fn encoding_is_deterministic() {
    let model = Model::default_model().unwrap();
    let img = &digits(1)[0];
    let a = codec::compress(&model, img, &CompressOptions::default()).unwrap();
    let b = codec::compress(&model, img, &CompressOptions::default()).unwrap();
    assert_eq!(a, b);
}

/// Digits cut to other sizes and colour types: grey crops of 4x4, 8x8
/// and 13x21 (one to a few latent cells, padding), an RGB 30x17 and an
/// RGBA 5x9 image made of three or four different digits.
fn odd_images() -> Vec<DynamicImage> {
    let d = digits(8);
    let grey = |i: usize| d[i].to_luma8();
    let crop = |i: usize, x, y, w, h| {
        DynamicImage::ImageLuma8(image::imageops::crop_imm(&grey(i), x, y, w, h).to_image())
    };
    let rgb = RgbImage::from_fn(30, 17, |x, y| {
        let at = |i: usize| grey(i).get_pixel(x.min(27), y + 4)[0];
        Rgb([at(0), at(1), at(2)])
    });
    let rgba = RgbaImage::from_fn(5, 9, |x, y| {
        let at = |i: usize| grey(i).get_pixel(x + 10, y + 8)[0];
        Rgba([at(3), at(4), at(5), at(6)])
    });
    vec![
        crop(0, 12, 12, 4, 4),
        crop(1, 10, 10, 8, 8),
        crop(2, 6, 4, 13, 21),
        DynamicImage::ImageRgb8(rgb),
        DynamicImage::ImageRgba8(rgba),
        crop(7, 12, 10, 4, 4),
    ]
}

#[test]
fn refinement_decodes_closer_and_never_makes_a_file_larger() {
    let model = Model::default_model().unwrap();
    let mut imgs = digits(24);
    imgs.extend(odd_images());
    for l in [1, 3, model.max_level()] {
        let (mut plain_se, mut refined_se) = (0.0, 0.0);
        for img in &imgs {
            let opts = |refine_steps| CompressOptions {
                refine_steps,
                ..level(l)
            };
            let plain = codec::compress(&model, img, &opts(0)).unwrap();
            let refined = codec::compress(&model, img, &opts(8)).unwrap();
            let se = |bytes: &[u8]| {
                codec::mse(
                    img.as_bytes(),
                    codec::decompress(bytes, &model).unwrap().as_bytes(),
                )
            };
            // Per image, whatever its size and colour type.
            let (w, h) = (img.width(), img.height());
            assert!(se(&refined) <= se(&plain), "level {l}, {w}x{h}");
            assert!(refined.len() <= plain.len(), "level {l}, {w}x{h}");
            plain_se += se(&plain);
            refined_se += se(&refined);
        }
        if l >= 3 {
            // Where the gain is large (about 0.6 dB at level 3 and more
            // above on the MNIST test set), it must show on a few digits.
            let gain = 10.0 * (plain_se / refined_se).log10();
            assert!(gain > 0.2, "level {l}: refinement gained {gain:.2} dB");
        }
    }
}

#[test]
fn an_image_codes_the_same_alone_and_in_a_stream() {
    let model = Model::default_model().unwrap();
    // Digits of one size, and a mix of sizes, colour types and (with a
    // PSNR target) levels in one batch.
    let mut mixed = digits(6);
    mixed.extend(odd_images());
    let cases = [
        (digits(40), level(2)),
        (digits(40), level(model.max_level())),
        (
            mixed,
            CompressOptions {
                quality: Quality::TargetPsnr(27.0),
                ..CompressOptions::default()
            },
        ),
    ];
    for (imgs, opts) in &cases {
        let mut enc = Encoder::new(Vec::new(), &model, *opts);
        enc.write_images(imgs).unwrap();
        let stream = enc.finish().unwrap();
        let index = vqz::format::FileIndex::from_bytes(&stream).unwrap();
        for (i, img) in imgs.iter().enumerate() {
            let alone = codec::compress(&model, img, opts).unwrap();
            let alone = vqz::format::FileIndex::from_bytes(&alone).unwrap();
            let (a, b) = (index.frame(i as u64).unwrap(), alone.frame(0).unwrap());
            let what = format!(
                "{:?}, image {i} ({}x{})",
                opts.quality,
                img.width(),
                img.height()
            );
            assert_eq!(a.header.stages, b.header.stages, "{what}");
            assert_eq!(a.payload, b.payload, "{what}");
        }
    }
}

#[test]
fn colour_types_and_odd_sizes_come_back_as_they_went_in() {
    let model = Model::default_model().unwrap();
    let rgb = DynamicImage::ImageRgb8(RgbImage::from_fn(30, 17, |x, y| {
        Rgb([(x * 8) as u8, (y * 12) as u8, 200])
    }));
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(5, 9, |x, y| {
        Rgba([(x * 40) as u8, 0, (y * 20) as u8, 255])
    }));
    let grey = DynamicImage::ImageLuma8(GrayImage::from_fn(1, 1, |_, _| Luma([77])));
    for img in [rgb, rgba, grey] {
        let bytes = codec::compress(&model, &img, &CompressOptions::default()).unwrap();
        let back = codec::decompress(&bytes, &model).unwrap();
        assert_eq!(back.color(), img.color());
        assert_eq!((back.width(), back.height()), (img.width(), img.height()));
    }
}

#[test]
fn sixteen_bit_input_is_converted_with_a_note() {
    let img16 =
        DynamicImage::ImageLuma16(ImageBuffer::from_fn(8, 8, |x, _| Luma([(x * 8000) as u16])));
    let model = Model::default_model().unwrap();
    // Not coded directly...
    assert!(matches!(
        codec::compress(&model, &img16, &CompressOptions::default()),
        Err(CodecError::UnsupportedImage(_))
    ));
    // ...but converted by to_supported, which says so.
    let (img8, notes) = codec::to_supported(img16);
    assert_eq!(notes, vec![Conversion::To8Bit]);
    assert!(codec::compress(&model, &img8, &CompressOptions::default()).is_ok());
}

#[test]
fn streams_round_trip_and_a_cut_stream_keeps_its_complete_frames() {
    let model = Model::default_model().unwrap();
    let imgs = digits(10);
    let mut enc = Encoder::new(Vec::new(), &model, level(1));
    let sums = enc.write_images(&imgs).unwrap();
    assert_eq!(sums.len(), 10);
    let bytes = enc.finish().unwrap();
    let all: Vec<_> = Decoder::new(&bytes[..], &[&model])
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), 10);
    for (i, d) in all.iter().enumerate() {
        assert_eq!(d.number, i as u64);
        // One at a time or in a batch: the same pixels.
        let alone = codec::decompress(
            &codec::compress(&model, &imgs[i], &level(1)).unwrap(),
            &model,
        )
        .unwrap();
        assert_eq!(alone.as_bytes(), d.image.as_bytes());
    }
    // Cut inside frame 5: frames 0-4 come back, then an error.
    let cut: usize = 10
        + sums[..5]
            .iter()
            .map(|s| s.frame_bytes as usize)
            .sum::<usize>()
        + 3;
    let mut dec = Decoder::new(&bytes[..cut], &[&model]).unwrap();
    let mut good = 0;
    let err = loop {
        match dec.next() {
            Some(Ok(_)) => good += 1,
            Some(Err(e)) => break e,
            None => panic!("a cut stream ended without an error"),
        }
    };
    assert_eq!(good, 5);
    assert!(err.to_string().contains("truncated"), "{err}");

    // The stream is the header (10 bytes: 28x28 is square) and its frames,
    // the last marked final, without a payload length: no end marker. Cut
    // right before the final frame, it is truncated.
    let frames: usize = sums[..9].iter().map(|s| s.frame_bytes as usize).sum();
    assert_eq!(
        bytes.len(),
        10 + frames + sums[9].final_frame_bytes as usize
    );
    assert!(
        sums.iter()
            .all(|s| s.final_frame_bytes + 1 == s.frame_bytes)
    );
    let index = vqz::format::FileIndex::from_bytes(&bytes).unwrap();
    let finals: Vec<bool> = index
        .frames()
        .iter()
        .map(|f| f.header.final_frame)
        .collect();
    assert_eq!(finals, [vec![false; 9], vec![true]].concat());
    let before_last = bytes.len() - sums[9].final_frame_bytes as usize;
    let mut dec = Decoder::new(&bytes[..before_last], &[&model]).unwrap();
    assert_eq!(dec.next_batch(100).unwrap().len(), 9);
    let err = dec.next_batch(100).unwrap_err();
    assert!(err.to_string().contains("no final frame"), "{err}");

    // Written one image at a time, the stream is the same.
    let mut enc = Encoder::new(Vec::new(), &model, level(1));
    for img in &imgs {
        enc.write_image(img).unwrap();
    }
    assert_eq!(enc.finish().unwrap(), bytes);
}

#[test]
fn the_iterator_decodes_in_batches_and_stops_at_the_cut() {
    // More frames than one iterator batch, cut inside the batch after it.
    let model = Model::default_model().unwrap();
    let n = codec::ITER_BATCH + 6;
    let imgs = digits(n);
    let options = CompressOptions {
        refine_steps: 0,
        ..level(1)
    };
    let mut enc = Encoder::new(Vec::new(), &model, options);
    let sums = enc.write_images(&imgs).unwrap();
    let bytes = enc.finish().unwrap();
    let keep = codec::ITER_BATCH + 3;
    let cut = 10
        + sums[..keep]
            .iter()
            .map(|s| s.frame_bytes as usize)
            .sum::<usize>()
        + 2;
    let mut one_by_one = Decoder::new(&bytes[..cut], &[&model]).unwrap();
    let mut dec = Decoder::new(&bytes[..cut], &[&model]).unwrap();
    for i in 0..keep {
        let d = dec.next().unwrap().unwrap();
        let alone = one_by_one.next_batch(1).unwrap().pop().unwrap();
        assert_eq!((d.number, d.level), (i as u64, 1));
        assert_eq!(d.image.as_bytes(), alone.image.as_bytes());
    }
    let err = dec.next().unwrap().unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(dec.next().is_none());
}

#[test]
fn a_stream_with_no_image_ends_with_the_end_marker() {
    let model = Model::default_model().unwrap();
    let bytes = Encoder::new(Vec::new(), &model, level(1)).finish().unwrap();
    assert_eq!(bytes.len(), 10 + 2);
    assert_eq!(&bytes[10..], [0x81, 0x00]);
    let mut dec = Decoder::new(&bytes[..], &[&model]).unwrap();
    assert!(dec.next_batch(10).unwrap().is_empty());
    assert!(matches!(
        codec::decompress(&bytes, &model),
        Err(CodecError::BadOption(_))
    ));
}

#[test]
fn a_one_image_file_is_its_frame_plus_the_header() {
    let model = Model::default_model().unwrap();
    let img = &digits(1)[0];
    let mut enc = Encoder::new(Vec::new(), &model, level(1));
    let sum = enc.write_image(img).unwrap();
    let streamed = enc.finish().unwrap();
    let bytes = codec::compress(&model, img, &level(1)).unwrap();
    assert_eq!(bytes, streamed);
    // 10 bytes of header (the image is square: no height), then the frame
    // marked final (5 bytes around its payload: descriptor and CRC-32, no
    // payload length): 15 bytes of overhead.
    assert_eq!(bytes.len() as u64, 10 + sum.final_frame_bytes);
    assert_eq!(bytes.len(), sum.payload_bytes + 15);
    assert_eq!(bytes[3], 0x40, "format 4.0");
    assert_eq!(bytes[4] & 0x40, 0x40, "square");
    assert_eq!(bytes[10] & 0x20, 0x20, "the frame is final");
    // Anything after the final frame is an error.
    for extra in [0x00u8, 0x81, 0xff] {
        let mut longer = bytes.clone();
        longer.push(extra);
        let err = codec::decompress(&longer, &model).unwrap_err();
        assert!(
            err.to_string().contains("data after the final frame"),
            "{err}"
        );
    }
}

#[test]
fn a_stream_for_another_model_is_a_clear_error_unless_embedded() {
    let model = Model::default_model().unwrap();
    let img = &digits(1)[0];
    let mut bytes = codec::compress(&model, img, &CompressOptions::default()).unwrap();
    // Another model id in the header (the CRC covers the header too, so the
    // model check must come first to be the error the user sees).
    bytes[5] ^= 0xff;
    match Decoder::new(&bytes[..], &[&model]) {
        Err(CodecError::UnknownModel { needed, .. }) => assert_eq!(needed.len(), 8),
        Err(other) => panic!("expected UnknownModel, got {other}"),
        Ok(_) => panic!("a stream for another model was accepted"),
    }
    let embedded = codec::compress(
        &model,
        img,
        &CompressOptions {
            quality: Quality::Level(2),
            embed_model: true,
            ..CompressOptions::default()
        },
    )
    .unwrap();
    // Decodes with no model supplied at all.
    let dec = Decoder::new(&embedded[..], &[]).unwrap();
    assert!(dec.model_embedded());
    assert_eq!(dec.count(), 1);
}

#[test]
fn target_psnr_and_max_bytes_pick_levels_per_image() {
    let model = Model::default_model().unwrap();
    let imgs = digits(16);
    let max = model.max_level();
    let opts = |q| CompressOptions {
        quality: q,
        ..CompressOptions::default()
    };
    // An unreachable target takes the top level; a trivial one the lowest.
    // Each frame says whether it meets the target.
    let mut enc = Encoder::new(Vec::new(), &model, opts(Quality::TargetPsnr(99.0)));
    assert!(
        enc.write_images(&imgs)
            .unwrap()
            .iter()
            .all(|s| s.level == max && !s.meets_quality)
    );
    let mut enc = Encoder::new(Vec::new(), &model, opts(Quality::TargetPsnr(1.0)));
    assert!(
        enc.write_images(&imgs)
            .unwrap()
            .iter()
            .all(|s| s.level == 1 && s.meets_quality)
    );
    let mut enc = Encoder::new(Vec::new(), &model, opts(Quality::MaxBytes(5)));
    assert!(
        enc.write_images(&imgs)
            .unwrap()
            .iter()
            .all(|s| s.level == 1 && !s.meets_quality)
    );
    // A real target: every image reaches it or is at the top level.
    let target = 22.0;
    for img in &imgs {
        let bytes = codec::compress(&model, img, &opts(Quality::TargetPsnr(target))).unwrap();
        let back = codec::decompress(&bytes, &model).unwrap();
        let index = vqz::format::FileIndex::from_bytes(&bytes).unwrap();
        let l = index.frames()[0].header.stages;
        assert!(psnr_db(img.as_bytes(), back.as_bytes()) >= target || l == max);
    }
    // A byte budget: the standalone file fits unless even level 1 does not.
    for budget in [20, 40, 60, 90] {
        for img in &imgs {
            let mut enc = Encoder::new(Vec::new(), &model, opts(Quality::MaxBytes(budget)));
            let meets = enc.write_images(std::slice::from_ref(img)).unwrap()[0].meets_quality;
            let bytes = enc.finish().unwrap();
            let index = vqz::format::FileIndex::from_bytes(&bytes).unwrap();
            assert!(bytes.len() <= budget || index.frames()[0].header.stages == 1);
            assert_eq!(meets, bytes.len() <= budget);
        }
    }
}

#[test]
fn bad_levels_and_bad_bytes_are_errors_not_panics() {
    let model = Model::default_model().unwrap();
    let img = &digits(1)[0];
    assert!(matches!(
        codec::compress(&model, img, &level(0)),
        Err(CodecError::BadOption(_))
    ));
    assert!(codec::compress(&model, img, &level(model.max_level() + 1)).is_err());
    // Too wide at any level: no advice to lower the level.
    let wide = DynamicImage::ImageLuma8(GrayImage::new(16385, 1));
    match codec::compress(&model, &wide, &level(1)) {
        Err(CodecError::UnsupportedImage(why)) => {
            assert!(why.contains("over the limit of 16384"), "{why}");
            assert!(!why.contains("lower level"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let nan = CompressOptions {
        quality: Quality::TargetPsnr(f64::NAN),
        ..CompressOptions::default()
    };
    assert!(matches!(
        codec::compress(&model, img, &nan),
        Err(CodecError::BadOption(_))
    ));
    let bytes = codec::compress(&model, img, &CompressOptions::default()).unwrap();
    for cut in 0..bytes.len() {
        assert!(
            codec::decompress(&bytes[..cut], &model).is_err(),
            "cut at {cut}"
        );
    }
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(
            codec::decompress(&b, &model).is_err(),
            "flip of bit {i} went unnoticed"
        );
    }
    assert!(codec::decompress(b"\x89PNG\r\n\x1a\n", &model).is_err());
}

/// A stream of five frames: a digit, a blank 1024x1024 image (an empty ANS
/// payload), a digit, a blank 1024x1024 image, a digit; under 200 bytes.
fn digits_between_blank_megapixels(model: &Model) -> Vec<u8> {
    use vqz::format::{CodingMode, FileIndex, Geometry, Writer};
    let digit = digits(1).remove(0);
    let one = codec::compress(model, &digit, &level(1)).unwrap();
    let index = FileIndex::from_bytes(&one).unwrap();
    let f = index.frame(0).unwrap();
    let big = Geometry {
        width: 1024,
        height: 1024,
        channels: 1,
    };
    let mut w = Writer::new(Vec::new(), index.header(), None).unwrap();
    for _ in 0..2 {
        w.write_frame(f.header.coding_mode, 1, f.header.geometry, &f.payload)
            .unwrap();
        w.write_frame(CodingMode::Ans, 1, big, &[]).unwrap();
    }
    w.finish_with_frame(f.header.coding_mode, 1, f.header.geometry, &f.payload)
        .unwrap()
}

/// The numbers of the frames a decoder returns before its first error,
/// and that error; the stream must not end without one.
fn frames_before_error<R: std::io::Read>(dec: &mut Decoder<'_, R>) -> (Vec<u64>, CodecError) {
    let mut numbers = Vec::new();
    loop {
        match dec.next_batch(1024) {
            Ok(b) => {
                assert!(!b.is_empty(), "ended without an error");
                numbers.extend(b.iter().map(|d| d.number));
            }
            Err(e) => return (numbers, e),
        }
    }
}

/// The first `n` test digits as one stream at level `l`.
fn digit_stream(model: &Model, l: u8, n: usize) -> Vec<u8> {
    let mut enc = Encoder::new(Vec::new(), model, level(l));
    enc.write_images(&digits(n)).unwrap();
    enc.finish().unwrap()
}

/// The bytes of a one-stage model file with random weights, a uniform
/// prior and the given network widths.
fn random_model_bytes(channels_low: usize, channels_high: usize) -> Vec<u8> {
    use vqz::entropy::Prior;
    use vqz::model::{ModelConfig, ModelFile, ParamStore};
    let config = ModelConfig {
        codebook_size: 16,
        latent_dim: 4,
        stages: 1,
        channels_low,
        channels_high,
    };
    let file = ModelFile {
        name: "random".into(),
        version: "1".into(),
        config,
        params: ParamStore::init(&config, 1).unwrap(),
        prior: Some(Prior::uniform(&[16]).unwrap().to_bytes()),
        rate_weights: vec![],
    };
    file.to_bytes().unwrap()
}

/// A frame of a few bytes can declare a large image (an empty ANS payload
/// decodes to every table's likeliest index), so the decoder bounds its
/// batches by the samples they decode to, not by their frame count alone.
#[test]
fn decoder_batches_are_bounded_by_decoded_size_not_frame_count() {
    let model = Model::default_model().unwrap();
    let bytes = digits_between_blank_megapixels(&model);
    assert!(bytes.len() < 200, "{} bytes", bytes.len());

    let mut dec = Decoder::new(&bytes[..], &[&model]).unwrap();
    let mut sizes = Vec::new();
    loop {
        let batch = dec.next_batch(1024).unwrap();
        if batch.is_empty() {
            break;
        }
        let samples: usize = batch.iter().map(|d| d.image.as_bytes().len()).sum();
        let last = batch.last().unwrap().image.as_bytes().len();
        // Under the budget before the batch's last image.
        assert!(samples - last < codec::DECODE_BATCH_SAMPLES);
        sizes.push(batch.iter().map(|d| d.image.width()).collect::<Vec<_>>());
    }
    assert_eq!(sizes, [vec![28, 1024], vec![28, 1024], vec![28]]);
}

/// The decoder stops once a stream's images would exceed its sample
/// budget, before decoding the frame that crosses it, and after returning
/// every frame before that one.
#[test]
fn a_stream_over_the_sample_budget_stops_at_the_frame_that_crosses_it() {
    let model = Model::default_model().unwrap();
    let bytes = digits_between_blank_megapixels(&model);
    // The default budget takes the whole stream.
    let all: Vec<_> = Decoder::new(&bytes[..], &[&model])
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), 5);
    // Frames 0-2 fit a base of their samples (the budget grows by 4096
    // samples per byte read besides); frame 3 would cross it.
    let budget = 2 * 28 * 28 + 1024 * 1024;
    let mut dec = Decoder::new(&bytes[..], &[&model])
        .unwrap()
        .with_max_samples(budget);
    let (numbers, err) = frames_before_error(&mut dec);
    assert_eq!(numbers, [0, 1, 2]);
    let per_byte = codec::SAMPLES_PER_FRAME_BYTE;
    let most = budget + per_byte * bytes.len() as u64;
    assert!(
        matches!(err, CodecError::SampleLimit { frame: 3, limit } if limit > budget && limit < most),
        "{err}"
    );
    assert!(err.to_string().contains("frame 3"), "{err}");
    assert!(dec.next_batch(1024).unwrap().is_empty());

    // Real images decode to far fewer samples a byte: a stream of digits
    // decodes in full with no base budget at all.
    let stream = digit_stream(&model, 1, 20);
    let back: Vec<_> = Decoder::new(&stream[..], &[&model])
        .unwrap()
        .with_max_samples(0)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back.len(), 20);
}

/// The decoder charges each frame the work decoding it can take (network
/// and prior, from the frame's header and the model's shape) and stops
/// before the frame that would take the stream past its work budget,
/// after returning every frame before that one.
#[test]
fn a_stream_over_the_work_budget_stops_at_the_frame_that_crosses_it() {
    use vqz::format::Geometry;
    let model = Model::default_model().unwrap();
    let bytes = digits_between_blank_megapixels(&model);
    let digit = Geometry {
        width: 28,
        height: 28,
        channels: 1,
    };
    let blank = Geometry {
        width: 1024,
        height: 1024,
        channels: 1,
    };
    // A frame too large for one network pass is decoded in tiles whose
    // halos pass through the decoder too: charged on top of its own cells.
    let cells = 256 * 256;
    let untiled = cells * 16 * model.network().decode_work_per_pixel(1)
        + cells * model.prior().work_per_index(0);
    assert!(model.decode_work(blank, 1) > untiled);
    assert!(model.decode_work(blank, 1) < untiled * 3 / 2);
    // Any geometry is charged without overflow.
    let hostile = Geometry {
        width: u32::MAX,
        height: u32::MAX,
        channels: 255,
    };
    assert_eq!(model.decode_work(hostile, 8), u64::MAX);
    // Frames 0-2 fit a base of their work (the budget grows by 2^24 per
    // byte of frames besides, far less than a blank megapixel costs).
    let budget = 2 * model.decode_work(digit, 1) + model.decode_work(blank, 1);
    assert!(model.decode_work(blank, 1) > codec::WORK_PER_FRAME_BYTE * bytes.len() as u64);
    let mut dec = Decoder::new(&bytes[..], &[&model])
        .unwrap()
        .with_max_work(budget);
    let (numbers, err) = frames_before_error(&mut dec);
    assert_eq!(numbers, [0, 1, 2]);
    let most = budget + codec::WORK_PER_FRAME_BYTE * bytes.len() as u64;
    assert!(
        matches!(err, CodecError::WorkLimit { frame: 3, limit } if limit > budget && limit < most),
        "{err}"
    );
    assert!(err.to_string().contains("frame 3"), "{err}");
    assert!(dec.next_batch(1024).unwrap().is_empty());

    // Real images cost far less per byte: a stream of digits decodes in
    // full with no base budget, at the lowest level and the highest.
    for l in [1, model.max_level()] {
        let stream = digit_stream(&model, l, 20);
        let back: Vec<_> = Decoder::new(&stream[..], &[&model])
            .unwrap()
            .with_max_work(0)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back.len(), 20);
    }
}

/// A model embedded in a stream is charged its own work: a wider network
/// costs more per pixel, so a blank frame that the shipped model decodes
/// within a budget is refused, before any decoding, with the wider model.
/// Neither its bytes nor any section's grow the budgets: only frames do.
#[test]
fn an_embedded_model_is_charged_its_own_work_and_its_bytes_grow_no_budget() {
    use vqz::format::{CodingMode, FileHeader, Geometry, Writer};
    let shipped = Model::default_model().unwrap();
    let wide_bytes = random_model_bytes(256, 64);
    let wide = Model::from_bytes(wide_bytes.clone().into()).unwrap();
    let blank = Geometry {
        width: 512,
        height: 512,
        channels: 1,
    };
    let (cheap, costly) = (shipped.decode_work(blank, 1), wide.decode_work(blank, 1));
    assert!(costly > 2 * cheap, "{costly} against {cheap}");
    let budget = (cheap + costly) / 2;
    // One blank frame (an empty payload decodes to every table's likeliest
    // index), for each model.
    let stream = |model: &Model, embedded: Option<&[u8]>| {
        let header = FileHeader::new(model.id(), blank, model.grid_stride_log2());
        let w = Writer::new(Vec::new(), &header, embedded).unwrap();
        w.finish_with_frame(CodingMode::Ans, 1, blank, &[]).unwrap()
    };
    let ok = stream(&shipped, None);
    let back: Vec<_> = Decoder::new(&ok[..], &[&shipped])
        .unwrap()
        .with_max_work(budget)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back.len(), 1);
    let hostile = stream(&wide, Some(&wide_bytes));
    assert!(hostile.len() as u64 * codec::WORK_PER_FRAME_BYTE > costly);
    let mut dec = Decoder::new(&hostile[..], &[])
        .unwrap()
        .with_max_work(budget);
    assert!(dec.model_embedded());
    let err = dec.next_batch(1).unwrap_err();
    assert!(
        matches!(err, CodecError::WorkLimit { frame: 0, .. }),
        "{err}"
    );
    // Likewise the sample budget: the model's megabytes add nothing to it.
    let mut dec = Decoder::new(&hostile[..], &[])
        .unwrap()
        .with_max_samples(1000);
    assert!(hostile.len() as u64 * codec::SAMPLES_PER_FRAME_BYTE > 512 * 512);
    let err = dec.next_batch(1).unwrap_err();
    assert!(
        matches!(err, CodecError::SampleLimit { frame: 0, .. }),
        "{err}"
    );
}

/// A model file over the container's section limit (64 MiB; model files
/// given to the decoder may be up to 256 MiB) cannot be embedded: the
/// encoder says so before encoding anything.
#[test]
fn a_model_over_the_section_limit_is_refused_for_embedding_before_any_work() {
    let bytes = random_model_bytes(700, 4);
    assert!(bytes.len() > 64 << 20, "{} bytes", bytes.len());
    let large = Model::from_bytes(bytes.into()).unwrap();
    let options = CompressOptions {
        embed_model: true,
        ..level(1)
    };
    let err = codec::compress(&large, &digits(1)[0], &options).unwrap_err();
    assert!(matches!(err, CodecError::BadModel(_)), "{err}");
    assert!(err.to_string().contains("section limit"), "{err}");
    // Likewise a stream of no image, which would hold the model alone.
    let err = Encoder::new(Vec::new(), &large, options)
        .finish()
        .unwrap_err();
    assert!(err.to_string().contains("section limit"), "{err}");
}

/// A frame that cannot be decoded though its CRC is right (a payload that
/// is no coding of its grid, or a level the model lacks), in the middle of
/// a batch: the frames before it come back, then an error that names the
/// frame, and the stream ends there.
#[test]
fn a_bad_frame_inside_a_batch_keeps_the_frames_before_it_and_names_itself() {
    use vqz::format::{CodingMode, FileIndex, Writer};
    let model = Model::default_model().unwrap();
    let imgs = digits(4);
    let files: Vec<_> = imgs
        .iter()
        .map(|i| codec::compress(&model, i, &level(2)).unwrap())
        .collect();
    let index = FileIndex::from_bytes(&files[0]).unwrap();
    // ANS payloads never start with a zero byte; the model has 6 levels.
    let bad_payload = (2, vec![0u8, 1]);
    let bad_level = (7, vec![]);
    // Frames 0-3, with the bad ones at the positions given.
    let stream = |bad: &[(usize, &(u8, Vec<u8>))]| {
        let mut w = Writer::new(Vec::new(), index.header(), None).unwrap();
        for (k, file) in files.iter().enumerate() {
            let i = FileIndex::from_bytes(file).unwrap();
            let f = i.frame(0).unwrap();
            match bad.iter().find(|(at, _)| *at == k) {
                Some((_, (stages, payload))) => w
                    .write_frame(CodingMode::Ans, *stages, f.header.geometry, payload)
                    .unwrap(),
                None => w
                    .write_frame(f.header.coding_mode, 2, f.header.geometry, &f.payload)
                    .unwrap(),
            }
        }
        w.finish().unwrap()
    };
    for (bad, needle) in [(&bad_payload, "payload"), (&bad_level, "levels")] {
        let bytes = stream(&[(2, bad)]);
        let mut dec = Decoder::new(&bytes[..], &[&model]).unwrap();
        let good = dec.next_batch(1024).unwrap();
        assert_eq!(good.len(), 2);
        for (d, file) in good.iter().zip(&files) {
            let alone = codec::decompress(file, &model).unwrap();
            assert_eq!(d.image.as_bytes(), alone.as_bytes());
        }
        let err = dec.next_batch(1024).unwrap_err().to_string();
        assert!(err.contains("frame 2") && err.contains(needle), "{err}");
        assert!(dec.next_batch(1024).unwrap().is_empty());
        // The same through the iterator.
        let from_iter: Vec<_> = Decoder::new(&bytes[..], &[&model]).unwrap().collect();
        assert_eq!(from_iter.len(), 3);
        assert!(from_iter[2].is_err());
    }
    // Two bad frames in one batch, the first at its start: one error, for
    // the first, then the end.
    let bytes = stream(&[(0, &bad_payload), (1, &bad_level)]);
    let mut dec = Decoder::new(&bytes[..], &[&model]).unwrap();
    let err = dec.next_batch(1024).unwrap_err().to_string();
    assert!(err.contains("frame 0") && err.contains("payload"), "{err}");
    assert!(dec.next_batch(1024).unwrap().is_empty());
    let from_iter: Vec<_> = Decoder::new(&bytes[..], &[&model]).unwrap().collect();
    assert_eq!(from_iter.len(), 1);
}

/// A 229x231 RGB image is over one network pass (three padded 232x232
/// planes), so it goes through in tiles of three planes; each of its
/// planes alone, as a grey image, fits in one pass. Planes are coded
/// independently, so the two must decode to the same pixels: this covers
/// tiling of several planes, their order, and sides that are not a
/// multiple of the grid.
#[test]
fn a_tiled_colour_image_decodes_as_its_planes_do_alone() {
    let model = Model::default_model().unwrap();
    let (w, h) = (229, 231);
    assert!(3 * 232 * 232 > model.pass_pixels() && 232 * 232 <= model.pass_pixels());
    let rgb = RgbImage::from_fn(w, h, |x, y| {
        let v = |c: u32| ((x * (3 + c) + y * (5 - c) + (x ^ y) * c) % 256) as u8;
        Rgb([v(0), v(1), v(2)])
    });
    let plain = CompressOptions {
        quality: Quality::Level(2),
        refine_steps: 0,
        ..CompressOptions::default()
    };
    let roundtrip = |image: DynamicImage| {
        let bytes = codec::compress(&model, &image, &plain).unwrap();
        codec::decompress(&bytes, &model).unwrap()
    };
    let back = roundtrip(DynamicImage::ImageRgb8(rgb.clone())).to_rgb8();
    for c in 0..3 {
        let grey = GrayImage::from_fn(w, h, |x, y| Luma([rgb.get_pixel(x, y)[c]]));
        let alone = roundtrip(DynamicImage::ImageLuma8(grey)).to_luma8();
        let same = back.pixels().zip(alone.pixels()).all(|(a, b)| a[c] == b[0]);
        assert!(same, "plane {c} differs from the same plane coded alone");
    }
}

/// An image the container cannot hold in one frame is refused before any
/// network work, with the reason.
#[test]
fn an_image_over_the_frame_limits_is_refused_up_front() {
    let model = Model::default_model().unwrap();
    let started = std::time::Instant::now();
    // 4800x4800 grey at level 3: 1200 x 1200 cells x 3 stages = 4,320,000
    // indices, over 2^22.
    let big = DynamicImage::ImageLuma8(GrayImage::new(4800, 4800));
    match codec::compress(&model, &big, &level(3)) {
        Err(CodecError::UnsupportedImage(why)) => assert!(why.contains("4320000"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let wide = DynamicImage::ImageLuma8(GrayImage::new(16385, 1));
    assert!(matches!(
        codec::compress(&model, &wide, &level(1)),
        Err(CodecError::UnsupportedImage(_))
    ));
    // Refused before the network ran over 23 million pixels (seconds).
    eprintln!("refused in {:?}", started.elapsed());
}

/// Images too large for a refinement batch (half a network pass) but
/// within one pass are refined alone.
#[test]
fn an_image_up_to_one_network_pass_is_still_refined() {
    let model = Model::default_model().unwrap();
    let pass = model.pass_pixels();
    assert!(280 * 280 > pass / 2 && 280 * 280 <= pass);
    let tiles = digits(100);
    let mosaic = GrayImage::from_fn(280, 280, |x, y| {
        let tile = tiles[(y / 28 * 10 + x / 28) as usize].as_luma8().unwrap();
        *tile.get_pixel(x % 28, y % 28)
    });
    let mosaic = DynamicImage::ImageLuma8(mosaic);
    let plain = CompressOptions {
        refine_steps: 0,
        ..level(3)
    };
    let refined = codec::compress(&model, &mosaic, &level(3)).unwrap();
    let unrefined = codec::compress(&model, &mosaic, &plain).unwrap();
    assert_ne!(refined, unrefined, "the mosaic was not refined");
    assert!(refined.len() <= unrefined.len());
    let psnr = |bytes: &[u8]| {
        let back = codec::decompress(bytes, &model).unwrap();
        psnr_db(mosaic.as_bytes(), back.as_bytes())
    };
    assert!(psnr(&refined) > psnr(&unrefined));
}
