//! Hostile inputs: huge declared lengths and dimensions, a varint that never
//! ends, hostile prior bytes, data after the final frame, a final-frame flag
//! in a 1.x file, a square flag before 3.0. Each gives a clear error quickly, and a counting allocator
//! proves no large allocation happens on the way.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

#[path = "support/slow_read.rs"]
mod slow_read;

use slow_read::SlowRead;
use vqz::entropy::{EntropyError, Prior, decode_grid};
use vqz::format::{
    CodingMode, FileHeader, FileIndex, FormatError, Geometry, Limits, ModelId, Reader, varint,
};

/// Tracks the largest single allocation, per thread: tests run in parallel,
/// and one test's allocations must not count against another's.
struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: the slot may be gone while the thread is being torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and asserts that it allocated no block over 256 KiB.
fn small_allocations<T>(f: impl FnOnce() -> T) -> T {
    LARGEST.with(|l| l.set(0));
    let out = f();
    let largest = LARGEST.with(Cell::get);
    assert!(
        largest <= 256 * 1024,
        "allocated a block of {largest} bytes"
    );
    out
}

fn header_bytes() -> Vec<u8> {
    FileHeader::new(
        ModelId([1, 2, 3, 4]),
        Geometry {
            width: 28,
            height: 28,
            channels: 1,
        },
        2,
    )
    .to_bytes()
    .unwrap()
}

/// A 28x28 grey header of `version` (major and minor nibbles) as its writer
/// made it: before 3.0 the height is stored, since 3.0 the square flag
/// (flags bit 6) stands for it.
fn header_bytes_of(version: u8) -> Vec<u8> {
    let mut bytes = vec![0x76, 0x71, 0x7a, version, 0x10, 1, 2, 3, 4, 28];
    if version >> 4 >= 3 {
        bytes[4] |= 0x40;
    } else {
        bytes.push(28);
    }
    bytes
}

fn read_all(bytes: &[u8]) -> Result<usize, FormatError> {
    let mut reader = Reader::new(bytes)?;
    let mut n = 0;
    while reader.next_frame()?.is_some() {
        n += 1;
    }
    Ok(n)
}

#[test]
fn payload_length_of_0xffffffff() {
    let mut bytes = header_bytes();
    bytes.push(0x08); // frame: 1 stage, ANS
    varint::encode(0xFFFF_FFFF, &mut bytes);
    bytes.extend_from_slice(&[0x55; 100]);
    let err = small_allocations(|| read_all(&bytes)).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::LimitExceeded {
                field: "payload length",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("4294967295"), "{err}");
}

#[test]
fn section_length_of_0xffffffff() {
    let mut bytes = header_bytes();
    bytes.push(0x80);
    bytes.push(0x07);
    varint::encode(0xFFFF_FFFF, &mut bytes);
    let err = small_allocations(|| read_all(&bytes)).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::LimitExceeded {
                field: "section length",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn large_section_on_short_input_allocates_little() {
    let mut bytes = header_bytes();
    bytes[4] |= 1; // a model is embedded
    bytes.push(0x80);
    bytes.push(0x01);
    varint::encode(60 << 20, &mut bytes); // 60 MiB declared, under the limit
    bytes.extend_from_slice(&[0; 1000]);
    let err = small_allocations(|| read_all(&bytes)).unwrap_err();
    assert!(matches!(err, FormatError::Truncated { .. }), "{err}");
}

#[test]
fn dimensions_of_65535_square() {
    let mut bytes = header_bytes()[..9].to_vec();
    varint::encode(65535, &mut bytes);
    varint::encode(65535, &mut bytes);
    let err = small_allocations(|| read_all(&bytes)).unwrap_err();
    assert!(
        matches!(err, FormatError::LimitExceeded { limit: 16384, .. }),
        "{err}"
    );
    // The same inside a frame's explicit geometry.
    let mut bytes = header_bytes();
    bytes.push(0x18);
    varint::encode(65535, &mut bytes);
    varint::encode(65535, &mut bytes);
    bytes.push(1);
    let err = small_allocations(|| read_all(&bytes)).unwrap_err();
    assert!(matches!(err, FormatError::LimitExceeded { .. }), "{err}");
    // Under raised dimension limits the symbol limit still holds.
    let limits = Limits {
        max_dimension: 65535,
        ..Limits::DEFAULT
    };
    let mut reader = Reader::with_limits(&bytes[..], limits).unwrap();
    let err = reader.next_frame().unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::LimitExceeded {
                field: "symbol count",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn varint_that_never_ends() {
    let mut bytes = header_bytes()[..9].to_vec();
    bytes.extend(std::iter::repeat_n(0x80, 1 << 20));
    let err = small_allocations(|| read_all(&bytes)).unwrap_err();
    assert!(
        matches!(err, FormatError::Malformed { field: "width", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("at most 5 bytes"), "{err}");
    // A frame count in the end marker, 64-bit: at most 10 bytes.
    let mut bytes = header_bytes();
    bytes.push(0x81);
    bytes.extend(std::iter::repeat_n(0xFF, 1 << 20));
    let err = small_allocations(|| read_all(&bytes)).unwrap_err();
    assert!(err.to_string().contains("at most 10 bytes"), "{err}");
}

#[test]
fn clear_messages_for_bad_files() {
    let err = read_all(b"PNG\x0d\x0a").unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a vqz file: expected magic 76 71 7a (\"vqz\"), found [50, 4e, 47]"
    );
    assert_eq!(
        header_bytes(),
        header_bytes_of(0x40),
        "the writer writes 4.0"
    );
    for (version, major) in [(0x53, 5), (0x03, 0), (0xF0, 15)] {
        let mut bytes = header_bytes();
        bytes[3] = version;
        let err = read_all(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("file is vqz format {major}.x; this reader supports 1.x to 4.x")
        );
    }
    // Every minor version of 1 to 4 is read (CRCs cover the header as written).
    for version in [0x10, 0x1F, 0x20, 0x2F, 0x30, 0x3F, 0x40, 0x4F] {
        let mut bytes = header_bytes_of(version);
        bytes.extend_from_slice(&[0x81, 0x00]);
        assert_eq!(read_all(&bytes).unwrap(), 0, "version {version:#04x}");
    }
    // Flags bit 7 is reserved; bit 6 (square) too before 3.0.
    let mut bytes = header_bytes();
    bytes[4] |= 0x80;
    let err = read_all(&bytes).unwrap_err();
    assert!(err.to_string().contains("reserved bit 7 clear"), "{err}");
    for version in [0x10, 0x20] {
        let mut bytes = header_bytes_of(version);
        bytes[4] |= 0x40;
        bytes.extend_from_slice(&[0x81, 0x00]);
        let err = read_all(&bytes).unwrap_err();
        assert!(
            err.to_string().contains(
                "expected reserved bits 6-7 clear (a 1.x or 2.x file has no square flag), found 0x50"
            ),
            "{err}"
        );
    }
    // A 3.x header that stores a height equal to its width: one encoding
    // per header, so refused.
    let mut bytes = header_bytes_of(0x20);
    bytes[3] = 0x30;
    bytes.extend_from_slice(&[0x81, 0x00]);
    let err = read_all(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "file header, byte 10: invalid height: expected a height other than the width \
         (flags bit 6 marks a square image), found 28"
    );
    let mut bytes = header_bytes();
    bytes.extend_from_slice(&[0x81, 0x03]);
    let err = read_all(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected 0 (the frames in the stream), found 3"),
        "{err}"
    );
    let mut bytes = header_bytes();
    bytes.extend_from_slice(&[0x81, 0x00, 0x00]);
    assert!(
        read_all(&bytes)
            .unwrap_err()
            .to_string()
            .contains("trailing bytes")
    );
    let mut bytes = header_bytes();
    bytes.extend_from_slice(&[0x90]);
    let err = read_all(&bytes).unwrap_err();
    assert!(err.to_string().contains("block tag"), "{err}");
}

#[test]
fn crc_mismatch_names_the_frame() {
    let geometry = Geometry {
        width: 28,
        height: 28,
        channels: 1,
    };
    let header = FileHeader::new(ModelId([0; 4]), geometry, 2);
    let mut writer = vqz::format::Writer::new(Vec::new(), &header, None).unwrap();
    for _ in 0..4 {
        writer
            .write_frame(CodingMode::Ans, 1, geometry, &[7; 5])
            .unwrap();
    }
    let mut bytes = writer.finish().unwrap();
    // Frame 3's payload starts at 10 + 3 * 11 + 2.
    bytes[10 + 3 * 11 + 2] ^= 0x10;
    let mut reader = Reader::new(&bytes[..]).unwrap();
    for _ in 0..3 {
        reader.next_frame().unwrap().unwrap();
    }
    let message = reader.next_frame().unwrap_err().to_string();
    assert!(
        message.starts_with("frame 3: CRC mismatch (stored 0x"),
        "{message}"
    );
    assert!(FileIndex::from_bytes(&bytes).is_err());
}

#[test]
fn hostile_priors() {
    let with_crc = |mut body: Vec<u8>| {
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    };
    let mut body = b"vqzp\x01\x10\x01".to_vec();
    varint::encode(4096, &mut body);
    body.push(32);
    body.extend(std::iter::repeat_n(0u8, 4096));
    varint::encode(0xFFFF_FFFF, &mut body); // table count
    let err = small_allocations(|| Prior::from_bytes(&with_crc(body.clone()))).unwrap_err();
    assert!(
        matches!(
            err,
            EntropyError::BadPrior {
                field: "table count",
                ..
            }
        ),
        "{err}"
    );

    let mut body = b"vqzp\x01\x10\x01".to_vec();
    varint::encode(4096, &mut body);
    body.push(32);
    body.extend(std::iter::repeat_n(0u8, 4096));
    varint::encode(1050, &mut body); // 1050 tables of 4096: over 2^22 entries
    let err = small_allocations(|| Prior::from_bytes(&with_crc(body))).unwrap_err();
    assert!(matches!(err, EntropyError::LimitExceeded { .. }), "{err}");

    let err = Prior::from_bytes(b"vqzp").unwrap_err();
    assert!(err.to_string().contains("prior, byte"), "{err}");
}

#[test]
fn hostile_grid_dimensions() {
    let prior = Prior::uniform(&[16]).unwrap();
    let err = small_allocations(|| decode_grid(&prior, CodingMode::Ans, &[], 65535, 65535, 4, 1))
        .unwrap_err();
    assert!(matches!(err, EntropyError::LimitExceeded { .. }), "{err}");
    let err = small_allocations(|| {
        decode_grid(
            &prior,
            CodingMode::Stored,
            &[0xFF; 8],
            u32::MAX,
            u32::MAX,
            255,
            255,
        )
    })
    .unwrap_err();
    assert!(matches!(err, EntropyError::LimitExceeded { .. }), "{err}");
}

fn digit() -> Geometry {
    Geometry {
        width: 28,
        height: 28,
        channels: 1,
    }
}

/// A 3.0 stream of two frames, the second final (no payload length).
fn final_frame_stream() -> Vec<u8> {
    let header = FileHeader::new(ModelId([1, 2, 3, 4]), digit(), 2);
    let mut writer = vqz::format::Writer::new(Vec::new(), &header, None).unwrap();
    writer
        .write_frame(CodingMode::Ans, 1, digit(), &[7; 5])
        .unwrap();
    writer
        .finish_with_frame(CodingMode::Stored, 2, digit(), &[9; 3])
        .unwrap()
}

#[test]
fn any_byte_after_the_final_frame_is_rejected() {
    let clean = final_frame_stream();
    assert_eq!(read_all(&clean).unwrap(), 2);
    // The final frame: descriptor at byte 21, 3 payload bytes, CRC-32.
    assert_eq!(clean.len(), 10 + 11 + 1 + 3 + 4);
    let mut tails: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    tails.push(vec![0x81, 0x02]); // an end marker after the final frame
    tails.push(vec![0x81, 0x01]);
    tails.push(clean[10..].to_vec()); // both frames again
    tails.push(clean.clone()); // a whole second stream
    tails.push(vec![0; 100_000]); // stays under the allocation bound of the other tests
    tails.push(vec![0; 147 - 3]); // payload just at its bound (98 symbols, 12 bits)
    tails.push(vec![0; 147 - 3 + 1]); // one byte over it
    for tail in tails {
        let mut bytes = clean.clone();
        bytes.extend_from_slice(&tail);
        // Frame 0 comes back; the final frame, which runs to the end of the
        // input, takes the tail in and fails.
        let mut reader = Reader::new(&bytes[..]).unwrap();
        reader.next_frame().unwrap().unwrap();
        let err = small_allocations(|| reader.next_frame()).unwrap_err();
        let message = err.to_string();
        if tail.len() > 147 - 3 {
            // More than the payload bound and its CRC: the reader stops
            // reading at the bound.
            assert_eq!(
                message,
                "frame 1, byte 22: invalid final frame payload: expected at most 147 bytes of \
                 payload, then the CRC-32 and the end of the input, found more bytes (data \
                 after the final frame)"
            );
        } else {
            assert!(
                matches!(err, FormatError::FinalFrameCrcMismatch { frame: 1, .. }),
                "{err}"
            );
            assert!(
                message.contains("has data after the final frame"),
                "{message}"
            );
        }
        // Errors are final.
        assert!(matches!(
            reader.next_frame(),
            Err(FormatError::ReaderFailed)
        ));
        assert!(FileIndex::from_bytes(&bytes).is_err());
        assert!(read_all(&bytes).is_err());
    }
}

#[test]
fn a_final_frame_is_read_no_further_than_its_bound() {
    // A final frame followed by 1 MiB: the reader stops one byte past the
    // payload bound (147 bytes) and the CRC-32, whatever follows. (The
    // reader buffers its input, so it may pull up to one buffer more.)
    let mut bytes = final_frame_stream();
    bytes.extend(std::iter::repeat_n(0x5a, 1 << 20));
    let mut input = SlowRead::new(&bytes, usize::MAX);
    let mut reader = Reader::new(&mut input).unwrap();
    reader.next_frame().unwrap().unwrap();
    let err = small_allocations(|| reader.next_frame()).unwrap_err();
    assert!(
        err.to_string().contains("data after the final frame"),
        "{err}"
    );
    drop(reader);
    assert!(
        input.pulled <= 21 + 1 + 147 + 4 + 1 + 8192,
        "{}",
        input.pulled
    );

    // Under a reader's lower payload limit, a longer final frame is over
    // the limit (not malformed).
    let header = FileHeader::new(ModelId([1, 2, 3, 4]), digit(), 2);
    let one = vqz::format::Writer::new(Vec::new(), &header, None)
        .unwrap()
        .finish_with_frame(CodingMode::Stored, 2, digit(), &[9; 3])
        .unwrap();
    for (max_payload_len, ok) in [(2, false), (3, true)] {
        let limits = Limits {
            max_payload_len,
            ..Limits::DEFAULT
        };
        let result = Reader::with_limits(&one[..], limits).unwrap().next_frame();
        match result {
            Ok(frame) => assert!(ok && frame.unwrap().payload == [9; 3]),
            Err(err) => {
                assert!(!ok);
                assert_eq!(
                    err.to_string(),
                    "frame 0, byte 11: final frame payload length (at least) is 3, over the \
                     limit of 2"
                );
            }
        }
    }
}

#[test]
fn any_byte_after_a_2_0_final_frame_is_rejected() {
    // In a 2.0 file the final frame stores its payload length, so the reader
    // returns it and then finds the extra byte.
    let header = header_bytes_of(0x20);
    let mut clean = header.clone();
    clean.extend_from_slice(&frame_block(&header, 0, &[0x28, 0x02, 0x2a, 0x17]));
    assert_eq!(read_all(&clean).unwrap(), 1);
    for tail in [vec![0x00], vec![0x81, 0x01], clean[11..].to_vec()] {
        let mut bytes = clean.clone();
        bytes.extend_from_slice(&tail);
        let mut reader = Reader::new(&bytes[..]).unwrap();
        assert!(reader.next_frame().unwrap().unwrap().header.final_frame);
        let err = reader.next_frame().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "block after frame 0, byte {}: invalid end of stream: expected the end of the \
                 input (frame 0 is the final frame), found data after the final frame (byte {:#04x})",
                clean.len(),
                tail[0]
            )
        );
        assert!(FileIndex::from_bytes(&bytes).is_err());
    }
}

/// A hand-made frame block with a correct CRC, so that only the rule under
/// test can reject it.
fn frame_block(header: &[u8], number: u64, frame: &[u8]) -> Vec<u8> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(&number.to_le_bytes());
    hasher.update(frame);
    let mut block = frame.to_vec();
    block.extend_from_slice(&hasher.finalize().to_le_bytes());
    block
}

#[test]
fn final_frame_flag_in_a_version_1_file_is_rejected() {
    let header = header_bytes_of(0x10);
    // Descriptor 0x08 (1 stage, ANS), payload length 2, payload: a valid 1.0
    // file once the end marker follows.
    let plain = frame_block(&header, 0, &[0x08, 0x02, 0x2a, 0x17]);
    let mut bytes = header.clone();
    bytes.extend_from_slice(&plain);
    bytes.extend_from_slice(&[0x81, 0x01]);
    assert_eq!(read_all(&bytes).unwrap(), 1);
    // The same frame with bit 5 set (and its CRC recomputed): reserved in 1.x.
    let flagged = frame_block(&header, 0, &[0x28, 0x02, 0x2a, 0x17]);
    for tail in [&[][..], &[0x81, 0x01][..]] {
        let mut bytes = header.clone();
        bytes.extend_from_slice(&flagged);
        bytes.extend_from_slice(tail);
        let err = read_all(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame 0, byte 11: invalid descriptor: expected reserved bits 5-6 clear \
             (a 1.x file has no final-frame flag), found 0x28"
        );
        assert!(FileIndex::from_bytes(&bytes).is_err());
    }
    // In a 2.0 file the same bytes are a final frame...
    let header = header_bytes_of(0x20);
    let mut bytes = header.clone();
    bytes.extend_from_slice(&frame_block(&header, 0, &[0x28, 0x02, 0x2a, 0x17]));
    assert_eq!(read_all(&bytes).unwrap(), 1);
    // ...and in a 3.0 file too, without its payload length...
    let header = header_bytes();
    let mut bytes = header.clone();
    bytes.extend_from_slice(&frame_block(&header, 0, &[0x28, 0x2a, 0x17]));
    assert_eq!(read_all(&bytes).unwrap(), 1);
    // ...and bit 6 is still reserved.
    let mut bytes = header.clone();
    bytes.extend_from_slice(&frame_block(&header, 0, &[0x48, 0x02, 0x2a, 0x17]));
    let err = read_all(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid descriptor: expected reserved bit 6 clear, found 0x48"),
        "{err}"
    );
}

#[test]
fn the_final_flag_is_under_the_crc() {
    let clean = final_frame_stream();
    // The final frame starts after the header and frame 0 (1 + 1 + 5 + 4).
    let at = 10 + 11;
    assert_eq!(clean[at], 0x21);
    // Cleared: no longer final, so its first payload byte (9) reads as a
    // payload length that runs past the end of the input.
    let mut bytes = clean.clone();
    bytes[at] ^= 0x20;
    let err = read_all(&bytes).unwrap_err();
    assert!(matches!(err, FormatError::Truncated { .. }), "{err}");
    // The same with a payload that fits: the CRC no longer matches.
    let header = FileHeader::new(ModelId([1, 2, 3, 4]), digit(), 2);
    let mut bytes = vqz::format::Writer::new(Vec::new(), &header, None)
        .unwrap()
        .finish_with_frame(CodingMode::Stored, 2, digit(), &[1, 9, 9, 9, 9, 9])
        .unwrap();
    bytes[10] ^= 0x20;
    let err = read_all(&bytes).unwrap_err();
    assert!(
        matches!(err, FormatError::CrcMismatch { frame: 0, .. }),
        "{err}"
    );
    // Set on frame 0: it would end the stream early, running to the end of
    // the input; the CRC says no.
    let mut bytes = clean.clone();
    bytes[10] ^= 0x20;
    let err = read_all(&bytes).unwrap_err();
    assert!(
        matches!(err, FormatError::FinalFrameCrcMismatch { frame: 0, .. }),
        "{err}"
    );
}
