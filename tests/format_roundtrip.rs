//! Writer -> Reader and Writer -> FileIndex round trips, including property
//! tests over any header and any sequence of frames.

use proptest::prelude::*;
use vqz::format::{
    CodingMode, FileHeader, FileIndex, Frame, FrameHeader, Geometry, ModelId, Reader, Writer,
};

fn digit_header() -> FileHeader {
    FileHeader::new(
        ModelId([0xde, 0xad, 0xbe, 0xef]),
        Geometry {
            width: 28,
            height: 28,
            channels: 1,
        },
        2,
    )
}

#[test]
fn frames_come_back_in_order() {
    let header = digit_header();
    let mut writer = Writer::new(Vec::new(), &header, Some(b"model bytes")).unwrap();
    let other = Geometry {
        width: 32,
        height: 20,
        channels: 3,
    };
    writer
        .write_frame(CodingMode::Ans, 1, header.default_geometry, &[1, 2, 3])
        .unwrap();
    writer.write_section(7, b"ignored").unwrap();
    writer
        .write_frame(CodingMode::Stored, 3, other, &[9; 20])
        .unwrap();
    let written = writer.bytes_written();
    let bytes = writer.finish().unwrap();
    assert_eq!(written + 2, bytes.len() as u64);

    let mut reader = Reader::new(&bytes[..]).unwrap();
    assert_eq!(reader.embedded_model(), Some(&b"model bytes"[..]));
    assert!(reader.header().model_embedded);
    let f0 = reader.next_frame().unwrap().unwrap();
    assert_eq!(f0.number, 0);
    assert_eq!(f0.payload, [1, 2, 3]);
    assert_eq!(f0.header.geometry, header.default_geometry);
    let f1 = reader.next_frame().unwrap().unwrap();
    assert_eq!(f1.number, 1);
    assert_eq!(f1.header.geometry, other);
    assert_eq!(f1.header.stages, 3);
    assert_eq!(f1.header.coding_mode, CodingMode::Stored);
    assert!(reader.next_frame().unwrap().is_none());
    assert!(reader.next_frame().unwrap().is_none());
    assert_eq!(reader.sections().len(), 2);

    let index = FileIndex::from_bytes(&bytes).unwrap();
    assert_eq!(index.frame_count(), 2);
    assert_eq!(index.frame(1).unwrap(), f1);
    assert_eq!(index.frame(0).unwrap(), f0);
    assert!(index.frame(2).is_err());
    assert_eq!(index.embedded_model(), Some(&b"model bytes"[..]));
}

#[test]
fn file_index_opens_files() {
    let header = digit_header();
    let mut writer = Writer::new(Vec::new(), &header, None).unwrap();
    for i in 0..5u8 {
        writer
            .write_frame(CodingMode::Ans, 1, header.default_geometry, &[i + 1; 7])
            .unwrap();
    }
    let bytes = writer.finish().unwrap();
    let path = std::env::temp_dir().join(format!("vqz-index-{}.vqz", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let index = FileIndex::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(index.frame_count(), 5);
    assert_eq!(index.frame(3).unwrap().payload, [4; 7]);
    let total: u64 = index.frames().iter().map(|e| e.len_bytes).sum();
    assert_eq!(total + 11 + 2, index.len_bytes());
}

fn geometry() -> impl Strategy<Value = Geometry> {
    (
        1u32..=16_384,
        1u32..=16_384,
        prop::sample::select(vec![1u8, 3, 4]),
    )
        .prop_map(|(width, height, channels)| Geometry {
            width,
            height,
            channels,
        })
}

fn header() -> impl Strategy<Value = FileHeader> {
    (any::<[u8; 4]>(), geometry(), 0u8..=7)
        .prop_map(|(id, g, stride)| FileHeader::new(ModelId(id), g, stride))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_header_and_frames_round_trip(
        header in header(),
        model in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        frames in prop::collection::vec(
            (any::<bool>(), 1u8..=8, prop::option::of(geometry()), prop::collection::vec(any::<u8>(), 0..40)),
            0..6,
        ),
    ) {
        let mut writer = Writer::new(Vec::new(), &header, model.as_deref()).unwrap();
        let mut expected = Vec::new();
        for (ans, stages, geometry, payload) in frames {
            let geometry = geometry.unwrap_or(header.default_geometry);
            let mode = if ans { CodingMode::Ans } else { CodingMode::Stored };
            let symbols = geometry.symbol_count(header.grid_stride_log2, stages);
            let fits = symbols <= 1 << 22 && payload.len() as u64 <= (symbols * 12).div_ceil(8);
            let written = writer.write_frame(mode, stages, geometry, &payload);
            prop_assert_eq!(written.is_ok(), fits);
            if !fits {
                continue;
            }
            expected.push(Frame {
                number: expected.len() as u64,
                header: FrameHeader { coding_mode: mode, stages, geometry, payload_len: payload.len() as u32 },
                payload,
            });
        }
        let bytes = writer.finish().unwrap();
        let mut reader = Reader::new(&bytes[..]).unwrap();
        prop_assert_eq!(&reader.header().model_id, &header.model_id);
        prop_assert_eq!(reader.header().default_geometry, header.default_geometry);
        prop_assert_eq!(reader.header().grid_stride_log2, header.grid_stride_log2);
        prop_assert_eq!(reader.embedded_model(), model.as_deref());
        let mut got = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            got.push(frame);
        }
        prop_assert_eq!(&got, &expected);
        let index = FileIndex::from_bytes(&bytes).unwrap();
        prop_assert_eq!(index.frame_count(), expected.len() as u64);
        for frame in &expected {
            prop_assert_eq!(&index.frame(frame.number).unwrap(), frame);
        }
    }
}
