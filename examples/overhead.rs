//! Measures what the container and the entropy coder add around the
//! information in a grid: the bytes of a one-frame file around its payload,
//! the per-frame overhead in a 10,000-frame stream, and ANS payload size
//! against the prior's cross-entropy, on synthetic digit-like 7x7 grids
//! (K = 512, mostly one blank index).
//!
//! `cargo run --release --no-default-features --example overhead`

#[path = "../tests/support/synthetic.rs"]
mod synthetic;

use synthetic::{K, Rng, digit_grid};
use vqz::entropy::{PriorBuilder, cross_entropy_bits, encode_grid};
use vqz::format::{FileHeader, Geometry, ModelId, Reader, Writer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for stages in [1u8, 2] {
        let train: Vec<_> = (0..20_000).map(|_| digit_grid(&mut rng, stages)).collect();
        let ks = vec![K; usize::from(stages)];
        let classes = PriorBuilder::class_maps_from_unigram(&ks, 8, &train)?;
        let mut builder = PriorBuilder::new(&ks, classes, 8)?;
        for grid in &train {
            builder.observe(grid)?;
        }
        let prior = builder.build(32, 4.0)?;
        let prior_bytes = prior.to_bytes().len();

        let test: Vec<_> = (0..10_000).map(|_| digit_grid(&mut rng, stages)).collect();
        let geometry = Geometry {
            width: 28,
            height: 28,
            channels: 1,
        };
        let header = FileHeader::new(ModelId([0xde, 0xad, 0xbe, 0xef]), geometry, 2);

        let mut ce_bits = 0.0;
        let mut payload_bytes = 0u64;
        let mut worst_excess_bits: f64 = 0.0;
        let mut stored = 0;
        // Goal: payload bits <= 1.01 * cross-entropy + one 32-bit flush.
        let mut over_goal = 0;
        let mut writer = Writer::new(Vec::new(), &header, None)?;
        for grid in &test {
            let ce = cross_entropy_bits(&prior, grid);
            let (mode, payload) = encode_grid(&prior, grid)?;
            if mode == vqz::format::CodingMode::Stored {
                stored += 1;
            }
            ce_bits += ce;
            payload_bytes += payload.len() as u64;
            worst_excess_bits = worst_excess_bits.max(payload.len() as f64 * 8.0 - ce);
            if payload.len() as f64 * 8.0 > 1.01 * ce + 32.0 {
                over_goal += 1;
            }
            writer.write_frame(mode, stages, geometry, &payload)?;
        }
        let stream = writer.finish()?;
        let n = test.len() as f64;

        // One-frame file, its frame final (as the codec writes it):
        // everything but the payload.
        let (mode, payload) = encode_grid(&prior, &test[0])?;
        let one = Writer::new(Vec::new(), &header, None)?
            .finish_with_frame(mode, stages, geometry, &payload)?;

        let frames = Reader::new(&stream[..])?.count();
        assert_eq!(frames, test.len());
        let header_bytes = header.to_bytes()?.len();
        // The stream ends with the end marker: tag and a 2-byte count.
        let per_frame =
            (stream.len() as f64 - header_bytes as f64 - 3.0 - payload_bytes as f64) / n;

        println!("== {stages} stage(s), K = {K}, 7x7 grid, prior {prior_bytes} bytes ==");
        println!(
            "one-frame file: {} bytes = {} payload + {} overhead (header {header_bytes}, final frame {})",
            one.len(),
            payload.len(),
            one.len() - payload.len(),
            one.len() - payload.len() - header_bytes,
        );
        println!(
            "10,000-frame stream: {} bytes, payload {:.2} B/frame, container overhead {:.3} B/frame",
            stream.len(),
            payload_bytes as f64 / n,
            per_frame
        );
        println!(
            "ANS vs cross-entropy: {:.2} vs {:.2} bits/frame ({:+.2}%, {:+.2} bits/frame); worst frame {:+.1} bits; stored chosen {stored}x",
            payload_bytes as f64 * 8.0 / n,
            ce_bits / n,
            (payload_bytes as f64 * 8.0 / ce_bits - 1.0) * 100.0,
            payload_bytes as f64 * 8.0 / n - ce_bits / n,
            worst_excess_bits
        );
        println!(
            "frames over the goal (payload > 1.01 x cross-entropy + 32 bits): {over_goal} of {}",
            test.len()
        );
    }
    Ok(())
}
