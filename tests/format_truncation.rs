//! A 10-frame stream cut at every byte offset yields exactly the frames that
//! end before the cut, then a "truncated" error; never a clean end, never a
//! frame that was not complete.

use vqz::format::{
    CodingMode, FileHeader, FileIndex, FormatError, Geometry, ModelId, Reader, Writer,
};

#[test]
fn cut_at_every_offset() {
    let geometry = Geometry {
        width: 28,
        height: 28,
        channels: 1,
    };
    let header = FileHeader::new(ModelId([9, 8, 7, 6]), geometry, 2);
    let mut writer = Writer::new(Vec::new(), &header, Some(b"embedded model")).unwrap();
    let mut frame_ends = Vec::new();
    for i in 0..10u8 {
        let geometry = if i == 4 {
            Geometry {
                width: 300,
                height: 2,
                channels: 3,
            }
        } else {
            geometry
        };
        let payload: Vec<u8> = (0..(i as usize * 3 + 1)).map(|j| i ^ j as u8).collect();
        let mode = if i % 3 == 0 {
            CodingMode::Stored
        } else {
            CodingMode::Ans
        };
        writer
            .write_frame(mode, 1 + i % 8, geometry, &payload)
            .unwrap();
        frame_ends.push(writer.bytes_written() as usize);
        if i == 6 {
            writer.write_section(5, &[0xAA; 200]).unwrap();
        }
    }
    let bytes = writer.finish().unwrap();

    for cut in 0..bytes.len() {
        let data = &bytes[..cut];
        let complete = frame_ends.iter().filter(|&&end| end <= cut).count();
        let mut frames = 0;
        let error = match Reader::new(data) {
            Err(e) => e,
            Ok(mut reader) => loop {
                match reader.next_frame() {
                    Ok(Some(frame)) => {
                        assert_eq!(frame.number, frames as u64);
                        frames += 1;
                    }
                    Ok(None) => panic!("cut at {cut}: reader reported a complete stream"),
                    Err(e) => break e,
                }
            },
        };
        assert_eq!(frames, complete, "cut at {cut}: {error}");
        assert!(
            matches!(
                error,
                FormatError::Truncated { .. } | FormatError::MissingEndMarker { .. }
            ),
            "cut at {cut}: expected a truncation error, got {error}"
        );
        let message = error.to_string();
        assert!(message.starts_with("truncated"), "{message}");
        assert!(FileIndex::from_bytes(data).is_err());
    }
    assert_eq!(Reader::new(&bytes[..]).unwrap().count(), 10);
    let index = FileIndex::from_bytes(&bytes).unwrap();
    assert_eq!(index.frame_count(), 10);
}

#[test]
fn truncation_messages_name_the_place() {
    let geometry = Geometry {
        width: 28,
        height: 28,
        channels: 1,
    };
    let header = FileHeader::new(ModelId([0; 4]), geometry, 2);
    let mut writer = Writer::new(Vec::new(), &header, None).unwrap();
    writer
        .write_frame(CodingMode::Ans, 1, geometry, &[1; 10])
        .unwrap();
    writer
        .write_frame(CodingMode::Ans, 1, geometry, &[2; 10])
        .unwrap();
    let bytes = writer.finish().unwrap();
    let mut reader = Reader::new(&bytes[..bytes.len() - 8]).unwrap();
    reader.next_frame().unwrap().unwrap();
    let message = reader.next_frame().unwrap_err().to_string();
    assert!(message.contains("frame 1"), "{message}");
    assert!(message.contains("payload"), "{message}");
    let mut reader = Reader::new(&bytes[..bytes.len() - 2]).unwrap();
    reader.next_frame().unwrap().unwrap();
    reader.next_frame().unwrap().unwrap();
    let message = reader.next_frame().unwrap_err().to_string();
    assert!(message.contains("after 2 complete frame(s)"), "{message}");
}
