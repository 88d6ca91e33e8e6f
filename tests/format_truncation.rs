//! A 10-frame stream cut at every byte offset yields exactly the frames that
//! end before the cut, then a "truncated" error; never a clean end, never a
//! frame that was not complete. Checked for both ways a stream can end: a
//! final frame (what the codec writes) and an end marker. A final frame has
//! no payload length (format 3.0), so a cut inside it reads as "truncated or
//! corrupted" (its CRC-32 fails).

use vqz::format::{
    CodingMode, FileHeader, FileIndex, FormatError, Geometry, ModelId, Reader, Writer,
};

/// How the test stream ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    FinalFrame,
    EndMarker,
}

/// The 10-frame stream and the offset where each frame ends.
fn stream(ending: Ending) -> (Vec<u8>, Vec<usize>) {
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
        if i == 9 && ending == Ending::FinalFrame {
            let before = writer.bytes_written() as usize;
            let block = writer
                .check_frame(mode, 1 + i % 8, geometry, &payload, true)
                .unwrap() as usize;
            let bytes = writer
                .finish_with_frame(mode, 1 + i % 8, geometry, &payload)
                .unwrap();
            assert_eq!(bytes.len(), before + block);
            frame_ends.push(bytes.len());
            return (bytes, frame_ends);
        }
        writer
            .write_frame(mode, 1 + i % 8, geometry, &payload)
            .unwrap();
        frame_ends.push(writer.bytes_written() as usize);
        if i == 6 {
            writer.write_section(5, &[0xAA; 200]).unwrap();
        }
    }
    (writer.finish().unwrap(), frame_ends)
}

#[test]
fn cut_at_every_offset() {
    for ending in [Ending::FinalFrame, Ending::EndMarker] {
        let (bytes, frame_ends) = stream(ending);
        match ending {
            // The last frame ends the file.
            Ending::FinalFrame => assert_eq!(frame_ends[9], bytes.len()),
            // Tag 0x81 and the count 10 follow it.
            Ending::EndMarker => assert_eq!(frame_ends[9] + 2, bytes.len()),
        }
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
                            assert!(!frame.header.final_frame, "{ending:?}, cut at {cut}");
                            frames += 1;
                        }
                        Ok(None) => {
                            panic!("{ending:?}, cut at {cut}: reader reported a complete stream")
                        }
                        Err(e) => break e,
                    }
                },
            };
            assert_eq!(frames, complete, "{ending:?}, cut at {cut}: {error}");
            let inside_final = ending == Ending::FinalFrame && cut > frame_ends[8];
            assert!(
                matches!(
                    error,
                    FormatError::Truncated { .. } | FormatError::MissingEndMarker { .. }
                ) || (inside_final && matches!(error, FormatError::FinalFrameCrcMismatch { .. })),
                "{ending:?}, cut at {cut}: expected a truncation error, got {error}"
            );
            let message = error.to_string();
            assert!(message.starts_with("truncated"), "{message}");
            assert!(FileIndex::from_bytes(data).is_err());
        }
        let frames: Vec<_> = Reader::new(&bytes[..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(frames.len(), 10);
        assert_eq!(
            frames[9].header.final_frame,
            ending == Ending::FinalFrame,
            "{ending:?}"
        );
        assert!(frames[..9].iter().all(|f| !f.header.final_frame));
        let index = FileIndex::from_bytes(&bytes).unwrap();
        assert_eq!(index.frame_count(), 10);
    }
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
    assert!(
        message.contains("with no final frame or end marker"),
        "{message}"
    );

    // The same stream ended by a final frame (10 + 16 + 15 bytes: a square
    // header, and a final frame without a payload length), cut inside the
    // final frame and right before it.
    let mut writer = Writer::new(Vec::new(), &header, None).unwrap();
    writer
        .write_frame(CodingMode::Ans, 1, geometry, &[1; 10])
        .unwrap();
    let bytes = writer
        .finish_with_frame(CodingMode::Ans, 1, geometry, &[2; 10])
        .unwrap();
    assert_eq!(bytes.len(), 10 + 16 + 15);
    let mut reader = Reader::new(&bytes[..bytes.len() - 2]).unwrap();
    reader.next_frame().unwrap().unwrap();
    let message = reader.next_frame().unwrap_err().to_string();
    assert!(
        message.starts_with("truncated or corrupted: final frame 1 fails its CRC-32"),
        "{message}"
    );
    // Fewer than 4 bytes after the descriptor: no room for the CRC-32.
    let mut reader = Reader::new(&bytes[..29]).unwrap();
    reader.next_frame().unwrap().unwrap();
    let message = reader.next_frame().unwrap_err().to_string();
    assert_eq!(
        message,
        "truncated: input ends at byte 29 inside frame 1 (CRC-32)"
    );
    let mut reader = Reader::new(&bytes[..26]).unwrap();
    reader.next_frame().unwrap().unwrap();
    let message = reader.next_frame().unwrap_err().to_string();
    assert_eq!(
        message,
        "truncated: input ends at byte 26 after 1 complete frame(s), with no final frame or end marker"
    );
}
