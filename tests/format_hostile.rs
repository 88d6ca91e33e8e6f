//! Hostile inputs: huge declared lengths and dimensions, a varint that never
//! ends, hostile prior bytes. Each gives a clear error quickly, and a counting
//! allocator proves no large allocation happens on the way.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use vqz::entropy::{EntropyError, Prior, decode_grid};
use vqz::format::{
    CodingMode, FileHeader, FileIndex, FormatError, Geometry, Limits, ModelId, Reader, varint,
};

/// Tracks the largest single allocation.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and asserts that it allocated no block over 256 KiB.
fn small_allocations<T>(f: impl FnOnce() -> T) -> T {
    LARGEST.store(0, Ordering::Relaxed);
    let out = f();
    let largest = LARGEST.load(Ordering::Relaxed);
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
    let mut bytes = header_bytes();
    bytes[3] = 0x23;
    let err = read_all(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "file is vqz format 2.x; this reader supports 1.x"
    );
    // A newer minor version is read (its CRCs cover the header as written).
    let mut bytes = header_bytes();
    bytes[3] = 0x1F;
    bytes.extend_from_slice(&[0x81, 0x00]);
    assert_eq!(read_all(&bytes).unwrap(), 0);
    let mut bytes = header_bytes();
    bytes[4] |= 0x40;
    let err = read_all(&bytes).unwrap_err();
    assert!(err.to_string().contains("reserved bits 6-7 clear"), "{err}");
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
    // Frame 3's payload starts at 11 + 3 * 11 + 2.
    bytes[11 + 3 * 11 + 2] ^= 0x10;
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
