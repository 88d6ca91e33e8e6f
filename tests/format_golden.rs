//! Golden files (`testdata/golden/`, listed in `testdata/MANIFEST`): each is
//! decoded and compared byte for byte with its expected content, re-encoded
//! to the same bytes, and every single-bit flip of it must be rejected.
//!
//! The files are a format freeze: never regenerate them to make a test pass.
//! A change here is a format change and bumps the version (spec section 2).
//! `VQZ_WRITE_GOLDEN=1 cargo test --test format_golden -- --ignored` wrote them
//! (and `--test format_spec_dump` the spec example). `digits-v1.vqz`,
//! `digits-v2.vqz` and `digits-v3.vqz` are `digits.vqz` as the 1.0, 2.0 and
//! 3.0 writers made it (and `learned-digits-v3.vqz` the 3.0
//! `learned-digits.vqz`), kept as they were: readers must go on reading them.

#[path = "support/learned.rs"]
mod learned;
#[path = "support/synthetic.rs"]
mod synthetic;

use std::path::{Path, PathBuf};

use synthetic::{BLANK, K, Rng, digit_grid};
use vqz::entropy::{IndexGrid, LearnedStage, Prior, PriorBuilder, decode_grid, encode_grid};
use vqz::format::{CodingMode, FileHeader, FileIndex, Geometry, ModelId, Reader, Writer};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden")
}

fn read_golden(name: &str) -> Vec<u8> {
    std::fs::read(golden_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn model_id_of(bytes: &[u8]) -> ModelId {
    let hex = sha256_hex(bytes);
    let mut id = [0u8; 4];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap();
    }
    ModelId(id)
}

const DIGIT: Geometry = Geometry {
    width: 28,
    height: 28,
    channels: 1,
};

/// One decoded frame as text: `stages mode i0 i1 ...`.
fn frame_line(stages: u8, mode: CodingMode, indices: &[u16]) -> String {
    let mode = match mode {
        CodingMode::Ans | CodingMode::AnsPlain => "ans",
        CodingMode::Stored => "stored",
    };
    let list: Vec<String> = indices.iter().map(u16::to_string).collect();
    format!("{stages} {mode} {}", list.join(" "))
}

/// Reads a whole file and decodes every frame with `prior`; returns one line
/// per frame, or the first error.
fn decode_file(bytes: &[u8], prior: &Prior) -> Result<Vec<String>, String> {
    let mut reader = Reader::new(bytes).map_err(|e| e.to_string())?;
    let stride = reader.header().grid_stride_log2;
    let mut lines = Vec::new();
    while let Some(frame) = reader.next_frame().map_err(|e| e.to_string())? {
        let (gw, gh) = frame.header.geometry.grid_dims(stride);
        let grid = decode_grid(
            prior,
            frame.header.coding_mode,
            &frame.payload,
            gw,
            gh,
            frame.header.geometry.channels,
            frame.header.stages,
        )
        .map_err(|e| format!("frame {}: {e}", frame.number))?;
        lines.push(frame_line(
            grid.stages,
            frame.header.coding_mode,
            &grid.indices,
        ));
    }
    Ok(lines)
}

// ---- how the golden files were made (run only to create new ones) ----

fn make_prior() -> Prior {
    let mut rng = Rng(2026);
    let train: Vec<_> = (0..3000).map(|_| digit_grid(&mut rng, 2)).collect();
    let classes = PriorBuilder::class_maps_from_unigram(&[K, K], 4, &train).unwrap();
    let mut builder = PriorBuilder::new(&[K, K], classes, 4).unwrap();
    for grid in &train {
        builder.observe(grid).unwrap();
    }
    builder.build(200, 4.0).unwrap()
}

fn make_grids() -> Vec<IndexGrid> {
    let mut rng = Rng(77);
    let mut grids: Vec<_> = (0..8).map(|i| digit_grid(&mut rng, 1 + i % 2)).collect();
    let noise: Vec<u16> = (0..49).map(|_| rng.below(u64::from(K)) as u16).collect();
    grids.push(IndexGrid::new(7, 7, 1, 1, noise).unwrap());
    grids.push(IndexGrid::new(7, 7, 1, 1, vec![BLANK; 49]).unwrap());
    grids
}

/// The digits stream as the codec writes streams: its last frame is final.
fn write_digits(prior_bytes: &[u8], prior: &Prior, grids: &[IndexGrid]) -> Vec<u8> {
    let header = FileHeader::new(model_id_of(prior_bytes), DIGIT, 2);
    let mut writer = Writer::new(Vec::new(), &header, None).unwrap();
    let (last, rest) = grids.split_last().unwrap();
    for grid in rest {
        let (mode, payload) = encode_grid(prior, grid).unwrap();
        writer
            .write_frame(mode, grid.stages, DIGIT, &payload)
            .unwrap();
    }
    let (mode, payload) = encode_grid(prior, last).unwrap();
    writer
        .finish_with_frame(mode, last.stages, DIGIT, &payload)
        .unwrap()
}

const TINY_MODEL: &[u8] = b"tiny model: opaque bytes to the container";

fn embedded_grids() -> Vec<(Geometry, IndexGrid)> {
    let rgb = Geometry {
        width: 12,
        height: 8,
        channels: 3,
    };
    let grey = Geometry {
        width: 5,
        height: 5,
        channels: 1,
    };
    vec![
        (
            rgb,
            IndexGrid::new(3, 2, 3, 2, (0..36).map(|i| (i * 5 % 16) as u16).collect()).unwrap(),
        ),
        (grey, IndexGrid::new(2, 2, 1, 1, vec![15, 0, 7, 8]).unwrap()),
    ]
}

/// A 3.0 stream ended the other way: frames written as they come, then the
/// end marker (as a writer that cannot know its last frame ends one).
fn write_embedded() -> Vec<u8> {
    let prior = Prior::uniform(&[16, 16]).unwrap();
    let header = FileHeader::new(
        model_id_of(TINY_MODEL),
        Geometry {
            width: 12,
            height: 8,
            channels: 3,
        },
        2,
    );
    let mut writer = Writer::new(Vec::new(), &header, Some(TINY_MODEL)).unwrap();
    for (n, (geometry, grid)) in embedded_grids().into_iter().enumerate() {
        let (mode, payload) = encode_grid(&prior, &grid).unwrap();
        writer
            .write_frame(mode, grid.stages, geometry, &payload)
            .unwrap();
        if n == 0 {
            writer.write_section(42, b"future metadata").unwrap();
        }
    }
    writer.finish().unwrap()
}

#[test]
#[ignore = "writes new golden files; run only for a new format version"]
fn write_golden_files() {
    if std::env::var_os("VQZ_WRITE_GOLDEN").is_none() {
        return;
    }
    let dir = golden_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let prior = make_prior();
    let prior_bytes = prior.to_bytes();
    let grids = make_grids();
    let digits = write_digits(&prior_bytes, &prior, &grids);
    let lines = decode_file(&digits, &prior).unwrap();
    std::fs::write(dir.join("synthetic.vqzp"), &prior_bytes).unwrap();
    std::fs::write(dir.join("digits.vqz"), &digits).unwrap();
    std::fs::write(dir.join("digits.indices"), lines.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("embedded.vqz"), write_embedded()).unwrap();
    for name in [
        "synthetic.vqzp",
        "digits.vqz",
        "digits.indices",
        "embedded.vqz",
    ] {
        let bytes = read_golden(name);
        println!("golden/{name} {} {}", bytes.len(), sha256_hex(&bytes));
    }
}

/// A learned-context prior (version 2) with fixed random weights, its
/// logits softened (a larger `r3`) and tilted toward the synthetic grids'
/// common indices, so that digits code well under it.
fn make_learned_prior() -> Prior {
    let mut rng = Rng(2027);
    let stages = [BLANK, 5]
        .iter()
        .enumerate()
        .map(|(s, &common)| {
            let mut w = learned::random_weights(&mut rng, s, &[K, K], 4, 16);
            w.shifts[2] = 10;
            w.b3[usize::from(common)] += 1 << 17;
            LearnedStage::new(s, &[K, K], w).unwrap()
        })
        .collect();
    Prior::learned(stages).unwrap()
}

#[test]
#[ignore = "writes new golden files; run only for a new prior version"]
fn write_learned_golden_files() {
    if std::env::var_os("VQZ_WRITE_GOLDEN").is_none() {
        return;
    }
    let dir = golden_dir();
    let prior = make_learned_prior();
    let prior_bytes = prior.to_bytes();
    let digits = write_digits(&prior_bytes, &prior, &make_grids());
    std::fs::write(dir.join("learned.vqzp"), &prior_bytes).unwrap();
    std::fs::write(dir.join("learned-digits.vqz"), &digits).unwrap();
    for name in ["learned.vqzp", "learned-digits.vqz"] {
        let bytes = read_golden(name);
        println!("golden/{name} {} {}", bytes.len(), sha256_hex(&bytes));
    }
}

// ---- the tests ----

#[test]
fn golden_learned_prior_codes_the_digits_to_the_golden_bytes() {
    let prior_bytes = read_golden("learned.vqzp");
    let prior = Prior::from_bytes(&prior_bytes).unwrap();
    assert_eq!(prior.to_bytes(), prior_bytes);
    assert_eq!(prior.version(), 2);
    assert_eq!(prior_bytes, make_learned_prior().to_bytes());
    // The same grids as digits.vqz, coded under the learned prior.
    let bytes = read_golden("learned-digits.vqz");
    let expected = String::from_utf8(read_golden("digits.indices")).unwrap();
    let expected: Vec<&str> = expected
        .lines()
        .map(|l| l.split_once(' ').unwrap().1.split_once(' ').unwrap().1)
        .collect();
    let lines = decode_file(&bytes, &prior).unwrap();
    let indices: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(' ').unwrap().1.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(indices, expected);
    let ans = lines.iter().filter(|l| l.contains(" ans ")).count();
    assert!(ans >= 3, "{ans} frames coded with ANS");
    assert_eq!(write_digits(&prior_bytes, &prior, &make_grids()), bytes);
    // Every single-bit flip of the prior is caught (CRC-32).
    for bit in 0..prior_bytes.len() * 8 {
        let mut b = prior_bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(Prior::from_bytes(&b).is_err(), "bit {bit}");
    }
}

#[test]
fn manifest_matches_the_files() {
    let manifest = std::fs::read_to_string(golden_dir().join("../MANIFEST")).unwrap();
    let mut listed = Vec::new();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut parts = line.split_whitespace();
        let (name, size, hash) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert!(
            parts.next().is_some(),
            "{name}: MANIFEST line needs a description"
        );
        let bytes = std::fs::read(golden_dir().join("..").join(name)).unwrap();
        assert_eq!(bytes.len(), size.parse::<usize>().unwrap(), "{name}: size");
        assert_eq!(sha256_hex(&bytes), hash, "{name}: SHA-256");
        listed.push(name.to_string());
    }
    // Every file under golden/ (and its folders) is listed.
    let mut dirs = vec![(golden_dir(), "golden".to_string())];
    while let Some((dir, prefix)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                dirs.push((entry.path(), name));
            } else {
                assert!(listed.contains(&name), "{name} is not in testdata/MANIFEST");
            }
        }
    }
}

#[test]
fn golden_prior_reads_and_writes_back() {
    let bytes = read_golden("synthetic.vqzp");
    let prior = Prior::from_bytes(&bytes).unwrap();
    assert_eq!(prior.to_bytes(), bytes);
    assert_eq!(prior.num_stages(), 2);
    assert_eq!(prior.num_symbols(0), Some(K));
}

#[test]
fn golden_digits_decode_to_their_indices() {
    let prior_bytes = read_golden("synthetic.vqzp");
    let prior = Prior::from_bytes(&prior_bytes).unwrap();
    let bytes = read_golden("digits.vqz");
    let expected = String::from_utf8(read_golden("digits.indices")).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    let reader = Reader::new(&bytes[..]).unwrap();
    assert_eq!(reader.header().model_id, model_id_of(&prior_bytes));
    let lines = decode_file(&bytes, &prior).unwrap();
    assert_eq!(lines, expected);
    assert_eq!(lines.len(), 10);
    assert!(
        lines.iter().any(|l| l.contains(" stored ")),
        "the noise frame is stored"
    );

    // Encoding the same indices gives the same bytes.
    let grids: Vec<IndexGrid> = expected
        .iter()
        .map(|line| {
            let mut parts = line.split(' ');
            let stages: u8 = parts.next().unwrap().parse().unwrap();
            parts.next();
            let indices = parts.map(|v| v.parse().unwrap()).collect();
            IndexGrid::new(7, 7, 1, stages, indices).unwrap()
        })
        .collect();
    assert_eq!(write_digits(&prior_bytes, &prior, &grids), bytes);

    // Format 4.0: square (no height stored), ended by its last frame marked
    // final, which stores no payload length (no end marker).
    assert_eq!(reader.header().version_major, 4);
    assert_eq!(&bytes[3..5], [0x40, 0x50]);
    assert_eq!(bytes[10], 0x08, "frame 0 follows the width");
    let index = FileIndex::from_bytes(&bytes).unwrap();
    let finals: Vec<bool> = index
        .frames()
        .iter()
        .map(|f| f.header.final_frame)
        .collect();
    assert_eq!(
        finals,
        [
            false, false, false, false, false, false, false, false, false, true
        ]
    );
    let last = index.frames().last().unwrap();
    assert_eq!(last.offset + last.len_bytes, bytes.len() as u64);
}

/// Copies an older file's frames, as they are, into this crate's writer.
fn rewrite(bytes: &[u8]) -> Result<Vec<u8>, vqz::format::FormatError> {
    let index = FileIndex::from_bytes(bytes).unwrap();
    let mut writer = Writer::new(Vec::new(), index.header(), None)?;
    for entry in index.frames() {
        let f = index.frame(entry.number).unwrap();
        writer.write_frame(
            f.header.coding_mode,
            f.header.stages,
            f.header.geometry,
            &f.payload,
        )?;
    }
    writer.finish()
}

#[test]
fn golden_files_of_older_versions_still_read() {
    let prior_bytes = read_golden("synthetic.vqzp");
    let prior = Prior::from_bytes(&prior_bytes).unwrap();
    let expected = String::from_utf8(read_golden("digits.indices")).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    let v1 = read_golden("digits-v1.vqz");
    let v2 = read_golden("digits-v2.vqz");
    let v3 = read_golden("digits-v3.vqz");
    let v4 = read_golden("digits.vqz");
    let read_all = |bytes: &[u8]| -> Vec<vqz::format::Frame> {
        Reader::new(bytes)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let v3_frames = read_all(&v3);
    for (bytes, version, ends_final) in [
        (&v1, (1, 0), false),
        (&v2, (2, 0), true),
        (&v3, (3, 0), true),
    ] {
        let reader = Reader::new(&bytes[..]).unwrap();
        let header = reader.header();
        assert_eq!((header.version_major, header.version_minor), version);
        assert_eq!(bytes[3], version.0 << 4);
        assert!(!header.has_small_ans_states());
        assert_eq!(decode_file(bytes, &prior).unwrap(), expected);
        let old = read_all(bytes);
        assert_eq!(old.len(), 10);
        assert!(old[..9].iter().all(|f| !f.header.final_frame));
        assert_eq!(old[9].header.final_frame, ends_final);
        // The same frames, byte for byte, in every older version; their ANS
        // payloads take the plain steps throughout.
        for (mut a, b) in old.into_iter().zip(v3_frames.iter()) {
            a.header.final_frame = b.header.final_frame;
            assert_eq!(&a, b);
            assert_ne!(a.header.coding_mode, CodingMode::Ans);
        }
        // Such payloads cannot go into a 4.x stream as they are.
        let err = rewrite(bytes).unwrap_err().to_string();
        assert!(err.contains("4.x"), "{err}");
    }
    // The height is stored before 3.0 (no square flag).
    assert_eq!(&v1[9..11], [28, 28]);
    assert_eq!(&v2[9..11], [28, 28]);
    // The 1.0 stream ends with the end marker (tag 0x81, count 10); the 2.0
    // one with a final frame that still stores its payload length.
    assert_eq!(&v1[v1.len() - 2..], [0x81, 10]);
    let index = FileIndex::from_bytes(&v2).unwrap();
    let last = index.frames().last().unwrap();
    assert_eq!(last.offset + last.len_bytes, v2.len() as u64);
    assert_eq!(
        last.len_bytes,
        1 + 1 + u64::from(last.header.payload_len) + 4
    );
    assert_eq!(v2.len(), v3.len() + 2, "square flag and no final length");
    // 4.0 keeps 3.0's container; only its ANS payloads change, and they are
    // shorter: the small-state steps (spec section 9.1).
    let v4_frames = read_all(&v4);
    let mut saved = 0i64;
    for (a, b) in v3_frames.iter().zip(&v4_frames) {
        assert_eq!(a.header.stages, b.header.stages);
        assert_eq!(a.header.geometry, b.header.geometry);
        match a.header.coding_mode {
            CodingMode::Stored => assert_eq!(a.payload, b.payload),
            _ => {
                assert_eq!(b.header.coding_mode, CodingMode::Ans);
                saved += a.payload.len() as i64 - b.payload.len() as i64;
            }
        }
    }
    assert!(saved > 0, "4.0 payloads are {saved} bytes shorter");
    let learned_prior = Prior::from_bytes(&read_golden("learned.vqzp")).unwrap();
    assert_eq!(
        decode_file(&read_golden("learned-digits-v3.vqz"), &learned_prior).unwrap(),
        decode_file(&read_golden("learned-digits.vqz"), &learned_prior).unwrap()
    );
}

#[test]
fn golden_embedded_file_decodes() {
    let bytes = read_golden("embedded.vqz");
    let mut reader = Reader::new(&bytes[..]).unwrap();
    assert_eq!(reader.embedded_model(), Some(TINY_MODEL));
    assert_eq!(reader.header().model_id, model_id_of(TINY_MODEL));
    let prior = Prior::uniform(&[16, 16]).unwrap();
    for (geometry, grid) in embedded_grids() {
        let frame = reader.next_frame().unwrap().unwrap();
        assert_eq!(frame.header.geometry, geometry);
        let (gw, gh) = geometry.grid_dims(2);
        let back = decode_grid(
            &prior,
            frame.header.coding_mode,
            &frame.payload,
            gw,
            gh,
            geometry.channels,
            frame.header.stages,
        )
        .unwrap();
        assert_eq!(back, grid);
    }
    assert!(reader.next_frame().unwrap().is_none());
    // Frames written as they came, then the end marker (2 frames); 12x8 is
    // not square, so the height is stored.
    assert_eq!(bytes[3], 0x40);
    assert_eq!(&bytes[9..11], [12, 8]);
    assert_eq!(&bytes[bytes.len() - 2..], [0x81, 2]);
    assert_eq!(
        reader
            .sections()
            .iter()
            .map(|s| s.section_type)
            .collect::<Vec<_>>(),
        [1, 42]
    );
    assert_eq!(write_embedded(), bytes);
}

#[test]
fn every_bit_flip_of_a_golden_file_is_rejected() {
    let prior_bytes = read_golden("synthetic.vqzp");
    let prior = Prior::from_bytes(&prior_bytes).unwrap();
    let uniform = Prior::uniform(&[16, 16]).unwrap();
    for (name, prior) in [
        ("digits.vqz", &prior),
        ("digits-v1.vqz", &prior),
        ("digits-v2.vqz", &prior),
        ("digits-v3.vqz", &prior),
        ("embedded.vqz", &uniform),
        ("spec-example.vqz", &uniform),
    ] {
        let bytes = read_golden(name);
        let clean = decode_file(&bytes, prior);
        assert!(
            clean.is_ok() || name == "spec-example.vqz",
            "{name}: {clean:?}"
        );
        let mut flipped = bytes.clone();
        for bit in 0..bytes.len() * 8 {
            flipped[bit / 8] ^= 1 << (bit % 8);
            let result = decode_file(&flipped, prior);
            assert!(
                result.is_err(),
                "{name}: flipping bit {bit} went unnoticed: {result:?}"
            );
            flipped[bit / 8] ^= 1 << (bit % 8);
        }
    }
    // The prior's bytes are checked too.
    let mut flipped = prior_bytes.clone();
    for bit in (0..prior_bytes.len() * 8).step_by(7) {
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(Prior::from_bytes(&flipped).is_err(), "prior bit {bit}");
        flipped[bit / 8] ^= 1 << (bit % 8);
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
