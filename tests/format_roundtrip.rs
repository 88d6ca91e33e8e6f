//! Writer -> Reader and Writer -> FileIndex round trips, including property
//! tests over any header, any sequence of frames and either ending (a final
//! frame or the end marker).

#[path = "support/slow_read.rs"]
mod slow_read;

use proptest::prelude::*;
use slow_read::SlowRead;
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
    // Ended by the end marker: tag and frame count.
    assert_eq!(written + 2, bytes.len() as u64);
    assert_eq!(&bytes[bytes.len() - 2..], [0x81, 2]);

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
    assert!(!f0.header.final_frame && !f1.header.final_frame);
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
    for i in 0..4u8 {
        writer
            .write_frame(CodingMode::Ans, 1, header.default_geometry, &[i + 1; 7])
            .unwrap();
    }
    let bytes = writer
        .finish_with_frame(CodingMode::Ans, 1, header.default_geometry, &[5; 7])
        .unwrap();
    let path = std::env::temp_dir().join(format!("vqz-index-{}.vqz", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let index = FileIndex::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(index.frame_count(), 5);
    assert_eq!(index.frame(3).unwrap().payload, [4; 7]);
    assert!(!index.frame(3).unwrap().header.final_frame);
    assert!(index.frame(4).unwrap().header.final_frame);
    // Header (10 bytes: square) and frames, nothing else: the final frame
    // ends the file, and stores no payload length.
    let total: u64 = index.frames().iter().map(|e| e.len_bytes).sum();
    assert_eq!(total + 10, index.len_bytes());
    assert_eq!(index.frames()[3].len_bytes, 1 + 1 + 7 + 4);
    assert_eq!(index.frames()[4].len_bytes, 1 + 7 + 4);
}

#[test]
fn a_stream_of_no_frames_ends_with_the_end_marker() {
    let header = digit_header();
    let bytes = Writer::new(Vec::new(), &header, None)
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(bytes.len(), 10 + 2);
    assert_eq!(&bytes[10..], [0x81, 0x00]);
    let mut reader = Reader::new(&bytes[..]).unwrap();
    assert!(reader.next_frame().unwrap().is_none());
    assert_eq!(FileIndex::from_bytes(&bytes).unwrap().frame_count(), 0);
}

#[test]
fn check_frame_agrees_with_write_frame() {
    let header = digit_header();
    let mut writer = Writer::new(Vec::new(), &header, None).unwrap();
    let other = Geometry {
        width: 300,
        height: 2,
        channels: 3,
    };
    for (stages, geometry, len) in [(1, header.default_geometry, 10), (2, other, 200)] {
        let payload = vec![3; len];
        let before = writer.bytes_written();
        let block = writer
            .check_frame(CodingMode::Ans, stages, geometry, &payload, false)
            .unwrap();
        writer
            .write_frame(CodingMode::Ans, stages, geometry, &payload)
            .unwrap();
        assert_eq!(writer.bytes_written() - before, block);
    }
    // Refused alike: stages 0 or 9, a payload over the bound (49 symbols at
    // 12 bits: 74 bytes).
    for (stages, len) in [(0u8, 1usize), (9, 1), (1, 75)] {
        let payload = vec![1; len];
        let g = header.default_geometry;
        assert!(
            writer
                .check_frame(CodingMode::Ans, stages, g, &payload, false)
                .is_err()
        );
        assert!(
            writer
                .check_frame(CodingMode::Ans, stages, g, &payload, true)
                .is_err()
        );
        assert!(
            writer
                .write_frame(CodingMode::Ans, stages, g, &payload)
                .is_err()
        );
    }
    assert_eq!(writer.frames_written(), 2);
    // A refused final frame leaves the stream unended (truncated).
    let err = writer
        .finish_with_frame(CodingMode::Ans, 1, header.default_geometry, &[1; 75])
        .unwrap_err();
    assert!(err.to_string().contains("over the bound"), "{err}");

    // A final frame takes the bytes `check_frame` says: no payload length.
    let writer = Writer::new(Vec::new(), &header, None).unwrap();
    let g = header.default_geometry;
    let payload = [7u8; 30];
    let before = writer.bytes_written();
    let as_final = writer
        .check_frame(CodingMode::Stored, 3, g, &payload, true)
        .unwrap();
    let not_final = writer
        .check_frame(CodingMode::Stored, 3, g, &payload, false)
        .unwrap();
    assert_eq!(not_final, as_final + 1);
    let bytes = writer
        .finish_with_frame(CodingMode::Stored, 3, g, &payload)
        .unwrap();
    assert_eq!(bytes.len() as u64 - before, as_final);
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

/// Headers, half of them square (format 3.0 stores no height for those).
fn header() -> impl Strategy<Value = FileHeader> {
    (any::<[u8; 4]>(), geometry(), 0u8..=7, any::<bool>()).prop_map(
        |(id, mut g, stride, square)| {
            if square {
                g.height = g.width;
            }
            FileHeader::new(ModelId(id), g, stride)
        },
    )
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
        end_with_final in any::<bool>(),
    ) {
        let mut writer = Writer::new(Vec::new(), &header, model.as_deref()).unwrap();
        let mut valid = Vec::new();
        for (ans, stages, geometry, payload) in frames {
            let geometry = geometry.unwrap_or(header.default_geometry);
            let mode = if ans { CodingMode::Ans } else { CodingMode::Stored };
            let symbols = geometry.symbol_count(header.grid_stride_log2, stages);
            let fits = symbols <= 1 << 22 && payload.len() as u64 <= (symbols * 12).div_ceil(8);
            let checked = writer.check_frame(mode, stages, geometry, &payload, false);
            prop_assert_eq!(checked.is_ok(), fits);
            if fits {
                valid.push(Frame {
                    number: valid.len() as u64,
                    header: FrameHeader {
                        coding_mode: mode,
                        stages,
                        geometry,
                        payload_len: payload.len() as u32,
                        final_frame: false,
                    },
                    payload,
                });
            } else {
                prop_assert!(writer.write_frame(mode, stages, geometry, &payload).is_err());
            }
        }
        // All frames as they come, or the last one held back and written final.
        let final_frame = if end_with_final { valid.pop() } else { None };
        for f in &valid {
            let h = &f.header;
            writer.write_frame(h.coding_mode, h.stages, h.geometry, &f.payload).unwrap();
        }
        let mut expected = valid;
        let bytes = match final_frame {
            Some(mut f) => {
                let h = f.header;
                let bytes = writer
                    .finish_with_frame(h.coding_mode, h.stages, h.geometry, &f.payload)
                    .unwrap();
                f.header.final_frame = true;
                expected.push(f);
                bytes
            }
            None => writer.finish().unwrap(),
        };
        let ends_with_marker = expected.last().is_none_or(|f| !f.header.final_frame);
        if ends_with_marker {
            prop_assert_eq!(bytes[bytes.len() - 2..].to_vec(), vec![0x81, expected.len() as u8]);
        }
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
        prop_assert!(reader.next_frame().unwrap().is_none());
        // One more byte after the end, whatever it is, is an error.
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(FileIndex::from_bytes(&longer).is_err());
        let index = FileIndex::from_bytes(&bytes).unwrap();
        prop_assert_eq!(index.frame_count(), expected.len() as u64);
        for frame in &expected {
            prop_assert_eq!(&index.frame(frame.number).unwrap(), frame);
        }
    }
}

#[test]
fn a_large_final_frame_reads_back_through_short_reads() {
    // 300x300 grey at stride 4 is a 75x75 grid: 2 stages allow a payload of
    // up to 16,875 bytes, more than one read chunk.
    let geometry = Geometry {
        width: 300,
        height: 300,
        channels: 1,
    };
    let header = FileHeader::new(ModelId([5; 4]), geometry, 2);
    let payload: Vec<u8> = (0..12_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let mut writer = Writer::new(Vec::new(), &header, None).unwrap();
    writer
        .write_frame(CodingMode::Ans, 1, geometry, &payload[..100])
        .unwrap();
    let bytes = writer
        .finish_with_frame(CodingMode::Stored, 2, geometry, &payload)
        .unwrap();
    // Header: magic, version, flags, id, width 300 (2 bytes), square.
    assert_eq!(bytes.len(), 11 + (1 + 1 + 100 + 4) + (1 + 12_000 + 4));
    let frames: Vec<Frame> = Reader::new(SlowRead::new(&bytes, 7))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].payload, payload);
    assert!(frames[1].header.final_frame);
    let index = FileIndex::from_bytes(&bytes).unwrap();
    assert_eq!(index.frame(1).unwrap(), frames[1]);
    // One byte short: the final frame's CRC-32 is off.
    let mut reader = Reader::new(SlowRead::new(&bytes[..bytes.len() - 1], 7)).unwrap();
    reader.next_frame().unwrap().unwrap();
    assert!(matches!(
        reader.next_frame(),
        Err(vqz::format::FormatError::FinalFrameCrcMismatch { frame: 1, .. })
    ));
}

/// A stream without frames still carries its model when flags bit 0 says
/// so: the model section must come before the end marker, as it must come
/// before a first frame.
#[test]
fn a_stream_without_frames_carries_its_embedded_model() {
    let model = b"model bytes".as_slice();
    let with = Writer::new(Vec::new(), &digit_header(), Some(model))
        .unwrap()
        .finish()
        .unwrap();
    let mut r = Reader::new(&with[..]).unwrap();
    assert_eq!(r.embedded_model(), Some(model));
    assert!(r.next_frame().unwrap().is_none());
    assert_eq!(r.frames_read(), 0);

    // The same stream without its section: the header (flags bit 0 set)
    // followed directly by the end marker.
    let plain = Writer::new(Vec::new(), &digit_header(), None)
        .unwrap()
        .finish()
        .unwrap();
    let section_len = with.len() - plain.len();
    let header_len = Reader::new(&with[..]).unwrap().sections()[0].offset as usize;
    let mut without = with[..header_len].to_vec();
    without.extend_from_slice(&with[header_len + section_len..]);
    match Reader::new(&without[..]) {
        Err(e) => assert!(e.to_string().contains("model section"), "{e}"),
        Ok(_) => panic!("a stream without its model section was read"),
    }
}
