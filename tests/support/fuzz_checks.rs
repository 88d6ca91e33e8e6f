//! The properties the fuzz targets check, shared with the test that replays
//! every stored fuzz input (`tests/format_fuzz_regressions.rs`), so a
//! regression file is checked exactly as the fuzzer checked it.

#![allow(dead_code)]

use std::sync::OnceLock;

use vqz::entropy::{IndexGrid, Prior, PriorBuilder, cross_entropy_bits, decode_grid, encode_grid};
use vqz::format::{
    CodingMode, FileHeader, FileIndex, Frame, Geometry, Limits, ModelId, Reader, Writer,
};

/// How a streaming read ended: the header and embedded model, or the error.
type Ending = Result<(FileHeader, Option<Vec<u8>>), String>;

/// Streaming read of a whole input: its frames, and how it ended.
fn read_stream(data: &[u8], limits: Limits) -> (Vec<Frame>, Ending) {
    let mut frames = Vec::new();
    let mut reader = match Reader::with_limits(data, limits) {
        Ok(reader) => reader,
        Err(e) => return (frames, Err(e.to_string())),
    };
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                assert_eq!(frame.number, frames.len() as u64);
                assert_eq!(
                    frame.payload.len() as u64,
                    u64::from(frame.header.payload_len)
                );
                frames.push(frame);
            }
            Ok(None) => {
                let model = reader.embedded_model().map(<[u8]>::to_vec);
                return (frames, Ok((reader.header().clone(), model)));
            }
            Err(e) => {
                // Errors are final.
                assert!(reader.next_frame().is_err());
                return (frames, Err(e.to_string()));
            }
        }
    }
}

/// Container reader: the streaming reader and the random-access index agree,
/// and a stream that reads cleanly survives a rewrite with the writer.
pub fn container_reader(data: &[u8]) {
    let limits = Limits::DEFAULT;
    let (frames, ended) = read_stream(data, limits);
    let index = FileIndex::from_bytes_with_limits(data, limits);
    match (&ended, index) {
        (Ok((header, model)), Ok(index)) => {
            assert_eq!(index.frame_count(), frames.len() as u64);
            assert_eq!(index.header(), header);
            assert_eq!(index.embedded_model(), model.as_deref());
            for frame in &frames {
                assert_eq!(
                    &index.frame(frame.number).expect("indexed frame reads"),
                    frame
                );
            }
            // Rewritten as it ended: by its final frame, or by the end marker.
            // (A 1.x to 3.x input is rewritten as 4.0; the frames stay the
            // same, except that an older ANS payload cannot go into 4.0.)
            let mut writer =
                Writer::new(Vec::new(), header, model.as_deref()).expect("header rewrites");
            if let Some(f) = frames
                .iter()
                .find(|f| f.header.coding_mode == CodingMode::AnsPlain)
            {
                assert!(!header.has_small_ans_states());
                let refused = writer.write_frame(
                    f.header.coding_mode,
                    f.header.stages,
                    f.header.geometry,
                    &f.payload,
                );
                assert!(refused.is_err(), "an older ANS payload is refused");
                return;
            }
            let (last, rest) = match frames.split_last() {
                Some((last, rest)) if last.header.final_frame => (Some(last), rest),
                _ => (None, &frames[..]),
            };
            assert!(
                rest.iter().all(|f| !f.header.final_frame),
                "only the last frame is final"
            );
            for f in rest {
                writer
                    .write_frame(
                        f.header.coding_mode,
                        f.header.stages,
                        f.header.geometry,
                        &f.payload,
                    )
                    .expect("a frame the reader accepted is writable");
            }
            let rewritten = match last {
                Some(f) => writer
                    .finish_with_frame(
                        f.header.coding_mode,
                        f.header.stages,
                        f.header.geometry,
                        &f.payload,
                    )
                    .expect("a final frame the reader accepted is writable"),
                None => writer.finish().expect("finish"),
            };
            let (again, ended_again) = read_stream(&rewritten, limits);
            assert!(ended_again.is_ok());
            assert_eq!(again, frames);
        }
        (Err(_), Err(e)) => {
            let _ = e.to_string();
        }
        (Ok(_), Err(e)) => panic!("stream read fine but the index failed: {e}"),
        (Err(e), Ok(_)) => panic!("index built but the stream failed: {e}"),
    }
}

/// Frame and section parsers: arbitrary blocks after a valid file header.
pub fn blocks(data: &[u8]) {
    let header = FileHeader::new(
        ModelId([1, 2, 3, 4]),
        Geometry {
            width: 28,
            height: 28,
            channels: 1,
        },
        2,
    );
    let mut file = header.to_bytes().expect("valid header");
    file.extend_from_slice(data);
    container_reader(&file);
}

/// Two priors for the ANS target: the synthetic digit prior (K = 512, two
/// stages) and a small one (K = 5 and 3).
fn priors() -> &'static [Prior; 2] {
    static PRIORS: OnceLock<[Prior; 2]> = OnceLock::new();
    PRIORS.get_or_init(|| {
        let mut rng = crate::synthetic::Rng(7);
        let train: Vec<IndexGrid> = (0..500)
            .map(|_| crate::synthetic::digit_grid(&mut rng, 2))
            .collect();
        let k = crate::synthetic::K;
        let classes = PriorBuilder::class_maps_from_unigram(&[k, k], 4, &train).expect("classes");
        let mut builder = PriorBuilder::new(&[k, k], classes, 4).expect("builder");
        for grid in &train {
            builder.observe(grid).expect("observe");
        }
        let digit = builder.build(4, 2.0).expect("build");

        let small_train: Vec<IndexGrid> = (0..200u16)
            .map(|i| {
                let a: Vec<u16> = (0..9).map(|j| ((i * 7 + j * 3) % 11 % 5) / 2).collect();
                let b: Vec<u16> = a.iter().map(|&v| v % 3).collect();
                IndexGrid::new(3, 3, 1, 2, [a, b].concat()).expect("grid")
            })
            .collect();
        let classes =
            PriorBuilder::class_maps_from_unigram(&[5, 3], 3, &small_train).expect("classes");
        let mut builder = PriorBuilder::new(&[5, 3], classes, 3).expect("builder");
        for grid in &small_train {
            builder.observe(grid).expect("observe");
        }
        [digit, builder.build(1, 0.5).expect("build")]
    })
}

/// ANS (and stored) decoder with a given prior: decoding never panics, and a
/// payload that decodes is the one the encoder produces for those indices.
pub fn ans_decoder(data: &[u8]) {
    let [b0, b1, payload @ ..] = data else {
        return;
    };
    let grid_width = 1 + u32::from(b0 & 7);
    let grid_height = 1 + u32::from((b0 >> 3) & 7);
    let mode = match (b0 & 0x40 != 0, b1 & 0x08 != 0) {
        (false, _) => CodingMode::Stored,
        (true, false) => CodingMode::Ans,
        // A 1.x to 3.x payload: plain steps throughout.
        (true, true) => CodingMode::AnsPlain,
    };
    let stages = 1 + (b0 >> 7);
    let planes = [1u8, 3, 4][usize::from(b1 % 3)];
    let prior = &priors()[usize::from((b1 >> 2) & 1)];
    match decode_grid(
        prior,
        mode,
        payload,
        grid_width,
        grid_height,
        planes,
        stages,
    ) {
        Ok(grid) => {
            assert_eq!(
                (grid.grid_width, grid.grid_height, grid.planes, grid.stages),
                (grid_width, grid_height, planes, stages)
            );
            assert!(cross_entropy_bits(prior, &grid).is_finite());
            let (chosen, recoded) = encode_grid(prior, &grid).expect("decoded grids encode");
            if mode == CodingMode::AnsPlain {
                // The encoder writes 4.x payloads only: nothing to compare.
            } else if chosen == mode {
                assert_eq!(recoded, payload, "a decodable payload is canonical");
            } else if mode == CodingMode::Ans {
                // The encoder chose stored: the ANS payload is not smaller.
                assert!(payload.len() >= recoded.len());
            } else {
                assert!(recoded.len() < payload.len());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Prior::from_bytes: never panics; what it accepts serializes back to the
/// same bytes and codes a grid. The input is tried as is and with a correct
/// CRC appended, so the fuzzer reaches past the checksum.
pub fn prior_from_bytes(data: &[u8]) {
    let mut with_crc = data.to_vec();
    with_crc.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    for bytes in [data, &with_crc[..]] {
        match Prior::from_bytes(bytes) {
            Ok(prior) => {
                assert_eq!(prior.to_bytes(), bytes);
                let stages = prior.num_stages();
                let grid = IndexGrid::zeros(3, 2, 1, stages).expect("grid");
                let (mode, payload) = encode_grid(&prior, &grid).expect("zeros encode");
                let back = decode_grid(&prior, mode, &payload, 3, 2, 1, stages).expect("decode");
                assert_eq!(back, grid);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}
