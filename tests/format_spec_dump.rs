//! The annotated hex dump in `spec/vqz-format.md` is produced by this test:
//! it writes a small file with the library and renders it field by field. If
//! the format changes, the bytes change and this test fails until the spec
//! is updated with the new dump. The overhead figures the spec states are
//! checked against the writer here too.

use vqz::entropy::{IndexGrid, Prior, PriorBuilder, encode_grid};
use vqz::format::{CodingMode, FileHeader, Geometry, ModelId, Reader, Writer};

const SPEC: &str = include_str!("../spec/vqz-format.md");
const BEGIN: &str = "<!-- hexdump:begin -->\n```text\n";
const END: &str = "```\n<!-- hexdump:end -->";

fn example_prior() -> Prior {
    // 4x4 grids of background index 3 with a short stroke of 9s.
    let mut grids = Vec::new();
    for i in 0..40usize {
        let mut indices = vec![3; 16];
        for j in [i % 7, i % 7 + 1, i % 7 + 5] {
            indices[j] = 9;
        }
        indices.extend([0; 16]);
        grids.push(IndexGrid::new(4, 4, 1, 2, indices).unwrap());
    }
    let classes = PriorBuilder::class_maps_from_unigram(&[16, 16], 2, &grids).unwrap();
    let mut builder = PriorBuilder::new(&[16, 16], classes, 2).unwrap();
    for grid in &grids {
        builder.observe(grid).unwrap();
    }
    builder.build(4, 1.0).unwrap()
}

/// The example file and the lengths and meanings of its fields, in order.
fn example_file() -> (Vec<u8>, Vec<(usize, String)>) {
    let prior = example_prior();
    let geometry = Geometry {
        width: 16,
        height: 16,
        channels: 1,
    };
    let header = FileHeader::new(ModelId([0xde, 0xad, 0xbe, 0xef]), geometry, 2);
    let mut indices0 = vec![3; 16];
    indices0[5] = 9;
    indices0[6] = 9;
    indices0[10] = 9;
    let grid0 = IndexGrid::new(4, 4, 1, 1, indices0).unwrap();
    let (mode0, payload0) = encode_grid(&prior, &grid0).unwrap();
    assert_eq!(mode0, CodingMode::Ans);
    let grid1 = IndexGrid::new(1, 1, 1, 2, vec![12, 5]).unwrap();
    let (mode1, payload1) = encode_grid(&prior, &grid1).unwrap();
    assert_eq!(mode1, CodingMode::Stored);
    let small = Geometry {
        width: 4,
        height: 4,
        channels: 1,
    };

    let mut writer = Writer::new(Vec::new(), &header, None).unwrap();
    writer.write_frame(mode0, 1, geometry, &payload0).unwrap();
    writer.write_section(9, b"hi").unwrap();
    let bytes = writer
        .finish_with_frame(mode1, 2, small, &payload1)
        .unwrap();

    let s = |t: &str| t.to_string();
    let fields = vec![
        (3, s("magic \"vqz\"")),
        (1, s("version: major 4, minor 0")),
        (
            1,
            s("flags: no model section, channels code 0 (1), stride log2 2, square"),
        ),
        (4, s("model id")),
        (
            1,
            s("default width 16 (varint), height 16 -> latent grid 4x4"),
        ),
        (1, s("frame 0 descriptor: 1 stage, ANS, default geometry")),
        (1, format!("payload length {}", payload0.len())),
        (
            payload0.len(),
            s("ANS payload: 3 3 3 3 / 3 9 9 3 / 3 3 9 3 / 3 3 3 3"),
        ),
        (4, s("CRC-32 of frame 0 (little-endian)")),
        (1, s("section tag")),
        (1, s("section type 9 (unknown to this reader: skipped)")),
        (1, s("section length 2")),
        (2, s("section body \"hi\"")),
        (4, s("CRC-32 of the section")),
        (
            1,
            s("frame 1 descriptor: 2 stages, stored, explicit geometry, final"),
        ),
        (1, s("width 4")),
        (1, s("height 4 -> latent grid 1x1")),
        (1, s("channels 1")),
        (
            payload1.len(),
            s("stored payload, up to the CRC: 1100 0101 = indices 12, 5"),
        ),
        (4, s("CRC-32 of frame 1 (the stream ends here)")),
    ];
    (bytes, fields)
}

fn render(bytes: &[u8], fields: &[(usize, String)]) -> String {
    let mut out = String::new();
    let mut offset = 0;
    for (len, meaning) in fields {
        let field = &bytes[offset..offset + len];
        for (i, chunk) in field.chunks(8).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let text = if i == 0 { meaning.as_str() } else { "" };
            let line = format!("{:04x}  {:<24}{}", offset + i * 8, hex.join(" "), text);
            out.push_str(line.trim_end());
            out.push('\n');
        }
        offset += len;
    }
    assert_eq!(offset, bytes.len(), "annotations cover the whole file");
    out
}

#[test]
fn spec_hex_dump_matches_the_code() {
    let (bytes, fields) = example_file();
    let dump = render(&bytes, &fields);
    let start = SPEC.find(BEGIN).expect("spec has a hexdump:begin marker") + BEGIN.len();
    let end = SPEC[start..]
        .find(END)
        .expect("spec has a hexdump:end marker")
        + start;
    assert_eq!(
        &SPEC[start..end],
        dump,
        "spec/vqz-format.md hex dump is out of date; the file is now:\n{dump}"
    );
    // And the dumped file reads back.
    let mut reader = Reader::new(&bytes[..]).unwrap();
    assert_eq!(
        reader.next_frame().unwrap().unwrap().payload.len(),
        fields[7].0
    );
    let last = reader.next_frame().unwrap().unwrap();
    assert_eq!(last.header.stages, 2);
    assert!(last.header.final_frame);
    assert!(reader.next_frame().unwrap().is_none());
    assert_eq!(bytes.len(), SPEC_FILE_LEN);
    assert!(
        SPEC.contains(&format!("A {SPEC_FILE_LEN}-byte file")),
        "the spec's text states another length"
    );
    // It is also a golden file.
    let golden = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden/spec-example.vqz"),
    )
    .unwrap();
    assert_eq!(golden, bytes);
}

/// Length of the example file, also stated in the spec's text.
const SPEC_FILE_LEN: usize = 36;

#[test]
#[ignore = "writes the golden copy of the example; run only for a new format version"]
fn write_spec_example_golden() {
    if std::env::var_os("VQZ_WRITE_GOLDEN").is_none() {
        return;
    }
    let (bytes, _) = example_file();
    std::fs::write(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden/spec-example.vqz"),
        &bytes,
    )
    .unwrap();
}

/// The figures of the spec's introduction and section 7: a one-frame file
/// of a square image is its payload plus 15 bytes (header 10, frame 5), each
/// frame before the last its payload plus 6, and an end marker instead of a
/// final frame adds 3.
#[test]
fn spec_overhead_figures_match_the_writer() {
    let spec = SPEC.split_whitespace().collect::<Vec<_>>().join(" ");
    for figures in [
        "a one-frame file of a square image (width under 128) costs **15 bytes** around its payload \
         (header 10, final frame 5: descriptor 1, CRC-32 4), and each frame before the \
         last **6 bytes**",
        "a one-frame file of a square image is 15 bytes plus its payload (header 10 while \
         the width is under 128, frame 5), each frame before the last 6 bytes plus its payload",
        "instead adds 3 bytes for up to 127 frames",
    ] {
        assert!(spec.contains(figures), "the spec no longer says: {figures}");
    }
    let digit = Geometry {
        width: 28,
        height: 28,
        channels: 1,
    };
    let header = FileHeader::new(ModelId([1, 2, 3, 4]), digit, 2);
    for payload_len in [0usize, 26, 127] {
        let payload = vec![0x5a; payload_len];
        let one = Writer::new(Vec::new(), &header, None)
            .unwrap()
            .finish_with_frame(CodingMode::Ans, 4, digit, &payload)
            .unwrap();
        assert_eq!(one.len(), payload_len + 15);
        let mut writer = Writer::new(Vec::new(), &header, None).unwrap();
        assert_eq!(writer.bytes_written(), 10);
        writer
            .write_frame(CodingMode::Ans, 4, digit, &payload)
            .unwrap();
        let two = writer
            .finish_with_frame(CodingMode::Ans, 4, digit, &payload)
            .unwrap();
        assert_eq!(two.len(), one.len() + payload_len + 6);
        let mut writer = Writer::new(Vec::new(), &header, None).unwrap();
        writer
            .write_frame(CodingMode::Ans, 4, digit, &payload)
            .unwrap();
        assert_eq!(writer.finish().unwrap().len(), one.len() + 3);
    }
}
