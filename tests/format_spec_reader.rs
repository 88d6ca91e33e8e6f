//! An independent container reader written from `spec/vqz-format.md` alone
//! (sections 1-7: conventions, file header with the 3.0 square flag, blocks,
//! frames with the 2.0 final-frame flag and the 3.0 final frame without a
//! payload length, limits, sections, end marker), checked against the
//! library's `Reader` on the golden files, every cut and every bit flip of
//! them, bytes after their end, and many mutations. If the code and the spec
//! disagree on what a file holds or whether it is valid, this fails.

use std::path::Path;

use vqz::format::Reader;

/// What the spec says a frame holds: stages, ANS or not, geometry
/// (width, height, channels), final flag, payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SpecFrame {
    stages: u8,
    ans: bool,
    geometry: (u32, u32, u8),
    final_frame: bool,
    payload: Vec<u8>,
}

struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn u8(&mut self) -> Result<u8, String> {
        let b = *self.data.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).ok_or("length")?;
        let out = self.data.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(out)
    }

    /// Section 1: LEB128, at most 5 (32-bit) or 10 (64-bit) bytes, the last
    /// byte bounded, no trailing zero byte.
    fn varint(&mut self, bits: u32) -> Result<u64, String> {
        let max_len = if bits == 32 { 5 } else { 10 };
        let last_max = if bits == 32 { 0x0f } else { 0x01 };
        let mut value = 0u64;
        for i in 0..max_len {
            let b = self.u8()?;
            if i == max_len - 1 && b > last_max {
                return Err("varint too large".into());
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err("varint not minimal".into());
                }
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }
}

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn dimension(v: u64) -> Result<u32, String> {
    if (1..=16384).contains(&v) {
        Ok(v as u32)
    } else {
        Err(format!("dimension {v}"))
    }
}

/// Reads a whole file as the spec describes it.
fn spec_read(data: &[u8]) -> Result<Vec<SpecFrame>, String> {
    let mut b = Bytes { data, pos: 0 };
    // Section 2.
    if b.take(3)? != b"vqz" {
        return Err("magic".into());
    }
    let version = b.u8()?;
    let major = version >> 4;
    if !(1..=4).contains(&major) {
        return Err(format!("version {major}"));
    }
    let flags = b.u8()?;
    let reserved_flags = if major >= 3 { 0x80 } else { 0xc0 };
    if flags & reserved_flags != 0 {
        return Err("flags".into());
    }
    let square = flags & 0x40 != 0;
    let channels = match (flags >> 1) & 3 {
        0 => 1,
        1 => 3,
        2 => 4,
        _ => return Err("channel code".into()),
    };
    let stride = (flags >> 3) & 7;
    let model_embedded = flags & 1 != 0;
    b.take(4)?;
    let width = dimension(b.varint(32)?)?;
    let height = if square {
        width
    } else {
        let height = dimension(b.varint(32)?)?;
        if major >= 3 && height == width {
            return Err("height stored for a square image".into());
        }
        height
    };
    let default = (width, height, channels);
    let header = &data[..b.pos];

    // Sections 3-7.
    let mut frames = Vec::new();
    let mut model_seen = false;
    loop {
        let start = b.pos;
        let tag = b.u8()?;
        if model_embedded && !model_seen && tag != 0x80 {
            return Err("model section missing".into());
        }
        match tag {
            0x00..=0x7f => {
                let reserved = if major == 1 { 0x60 } else { 0x40 };
                if tag & reserved != 0 {
                    return Err("reserved descriptor bit".into());
                }
                let stages = (tag & 7) + 1;
                let geometry = if tag & 0x10 != 0 {
                    let w = dimension(b.varint(32)?)?;
                    let h = dimension(b.varint(32)?)?;
                    let c = b.u8()?;
                    if ![1, 3, 4].contains(&c) || (w, h, c) == default {
                        return Err("explicit geometry".into());
                    }
                    (w, h, c)
                } else {
                    default
                };
                let s = 1u64 << stride;
                let n = u64::from(geometry.0).div_ceil(s)
                    * u64::from(geometry.1).div_ceil(s)
                    * u64::from(geometry.2)
                    * u64::from(stages);
                if n > 1 << 22 {
                    return Err("symbols".into());
                }
                let final_frame = tag & 0x20 != 0;
                // A 3.x final frame runs to the CRC-32 at the end of the input.
                let len = if major >= 3 && final_frame {
                    (data.len() - b.pos).checked_sub(4).ok_or("truncated")? as u64
                } else {
                    b.varint(32)?
                };
                if len > (n * 12).div_ceil(8) || len > 1 << 24 {
                    return Err("payload length".into());
                }
                let payload = b.take(len as usize)?.to_vec();
                let covered = &data[start..b.pos];
                let number = (frames.len() as u64).to_le_bytes();
                let stored = u32::from_le_bytes(b.take(4)?.try_into().unwrap());
                if stored != crc(&[header, &number, covered]) {
                    return Err("frame CRC".into());
                }
                frames.push(SpecFrame {
                    stages,
                    ans: tag & 0x08 != 0,
                    geometry,
                    final_frame,
                    payload,
                });
                if final_frame {
                    // The stream ends right after the final frame's CRC.
                    return if b.pos == data.len() {
                        Ok(frames)
                    } else {
                        Err("data after the final frame".into())
                    };
                }
            }
            0x80 => {
                let section_type = b.varint(32)?;
                let len = b.varint(32)?;
                if len > 1 << 26 {
                    return Err("section length".into());
                }
                b.take(len as usize)?;
                let covered = &data[start..b.pos];
                let stored = u32::from_le_bytes(b.take(4)?.try_into().unwrap());
                if stored != crc(&[header, covered]) {
                    return Err("section CRC".into());
                }
                if section_type == 1 {
                    if !model_embedded || model_seen || !frames.is_empty() {
                        return Err("model section".into());
                    }
                    model_seen = true;
                }
            }
            0x81 => {
                if b.varint(64)? != frames.len() as u64 {
                    return Err("frame count".into());
                }
                return if b.pos == data.len() {
                    Ok(frames)
                } else {
                    Err("bytes after the end marker".into())
                };
            }
            _ => return Err("block tag".into()),
        }
    }
}

/// The library's reading of the same bytes.
fn library_read(data: &[u8]) -> Result<Vec<SpecFrame>, String> {
    let mut reader = Reader::new(data).map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    while let Some(f) = reader.next_frame().map_err(|e| e.to_string())? {
        let h = f.header;
        frames.push(SpecFrame {
            stages: h.stages,
            ans: h.coding_mode != vqz::format::CodingMode::Stored,
            geometry: (h.geometry.width, h.geometry.height, h.geometry.channels),
            final_frame: h.final_frame,
            payload: f.payload,
        });
    }
    Ok(frames)
}

fn agree(data: &[u8], what: &str) -> bool {
    let spec = spec_read(data);
    let library = library_read(data);
    match (&spec, &library) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}: the frames differ"),
        (Err(_), Err(_)) => {}
        _ => panic!("{what}: spec reader {spec:?}, library {library:?}"),
    }
    spec.is_ok()
}

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/golden")
            .join(name),
    )
    .unwrap()
}

const GOLDEN: [&str; 6] = [
    "digits.vqz",
    "digits-v1.vqz",
    "digits-v2.vqz",
    "digits-v3.vqz",
    "embedded.vqz",
    "spec-example.vqz",
];

#[test]
fn the_spec_reader_reads_the_golden_files_as_the_library_does() {
    for name in GOLDEN {
        let bytes = golden(name);
        assert!(agree(&bytes, name), "{name} is valid");
        let frames = spec_read(&bytes).unwrap();
        // A 2.0 or 3.0 file may end with a final frame, a 1.0 file never does.
        let ends_final = frames.last().is_some_and(|f| f.final_frame);
        assert_eq!(ends_final, bytes[3] >> 4 >= 2 && name != "embedded.vqz");
        for cut in 0..bytes.len() {
            assert!(!agree(&bytes[..cut], &format!("{name} cut at {cut}")));
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            agree(&flipped, &format!("{name} bit {bit}"));
        }
        for extra in 0..=255u8 {
            let mut longer = bytes.clone();
            longer.push(extra);
            assert!(!agree(&longer, &format!("{name} + {extra:#04x}")));
        }
    }
}

#[test]
fn the_spec_reader_and_the_library_agree_on_mutations() {
    // A small deterministic generator (xorshift), so failures reproduce.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in GOLDEN {
        let bytes = golden(name);
        let original = spec_read(&bytes).unwrap();
        for _ in 0..3000 {
            let mut m = bytes.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % m.len();
                match next() % 4 {
                    0 => m[at] = next() as u8,
                    1 => m.insert(at, next() as u8),
                    2 => {
                        m.remove(at);
                    }
                    _ => m.truncate(at.max(10)),
                }
            }
            // The CRCs reject nearly every mutation; the few accepted ones
            // (a byte overwritten with itself, say) hold the original frames.
            if agree(&m, &format!("{name} mutated: {m:02x?}")) {
                assert_eq!(spec_read(&m).unwrap(), original, "{name}: {m:02x?}");
            }
        }
    }
}
