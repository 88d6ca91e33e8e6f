//! Synthetic index grids shaped like a digit's latent: a 7x7 grid over a
//! 512-entry codebook, mostly one "blank" index, with a short stroke of
//! skewed, spatially correlated indices. Deterministic (xorshift), so tests
//! and measurements are reproducible.

#![allow(dead_code)]

use vqz::entropy::IndexGrid;

/// Codebook size of the synthetic grids.
pub const K: u16 = 512;
/// The background index.
pub const BLANK: u16 = 137;

/// xorshift64* generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Roughly Zipf-distributed rank in `0..n` (log-uniform).
    pub fn zipf(&mut self, n: u64) -> u64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) - 1.0).floor().min(n as f64 - 1.0) as u64
    }
}

/// One synthetic grid with `stages` codebook stages.
pub fn digit_grid(rng: &mut Rng, stages: u8) -> IndexGrid {
    let (w, h) = (7usize, 7usize);
    let mut stage0 = vec![BLANK; w * h];
    let (mut x, mut y) = (2 + rng.below(3) as i64, 1 + rng.below(2) as i64);
    let steps = 5 + rng.below(8);
    let mut dir = rng.below(8) as i64;
    for _ in 0..steps {
        let stroke = (dir as u64 * 61 + rng.zipf(60)) % u64::from(K);
        let stroke = if stroke as u16 == BLANK {
            0
        } else {
            stroke as u16
        };
        if let Some(cell) = stage0.get_mut(y as usize * w + x as usize) {
            *cell = stroke;
        }
        if rng.below(3) == 0 {
            dir = (dir + rng.below(3) as i64 + 7) % 8;
        }
        let (dx, dy) = [
            (1, 0),
            (1, 1),
            (0, 1),
            (-1, 1),
            (-1, 0),
            (-1, -1),
            (0, -1),
            (1, -1),
        ][dir as usize];
        x = (x + dx).clamp(0, w as i64 - 1);
        y = (y + dy).clamp(0, h as i64 - 1);
    }
    // Soft edges: blank cells next to a stroke sometimes take an edge index.
    let snapshot = stage0.clone();
    for cy in 0..h {
        for cx in 0..w {
            let i = cy * w + cx;
            if snapshot[i] != BLANK {
                continue;
            }
            let near = [(0i64, 1i64), (1, 0), (0, -1), (-1, 0)]
                .iter()
                .any(|(dx, dy)| {
                    let (nx, ny) = (cx as i64 + dx, cy as i64 + dy);
                    nx >= 0
                        && ny >= 0
                        && (nx as usize) < w
                        && (ny as usize) < h
                        && snapshot[ny as usize * w + nx as usize] != BLANK
                });
            if near && rng.below(4) == 0 {
                stage0[i] = 400 + rng.zipf(100) as u16;
            }
        }
    }
    let mut indices = stage0.clone();
    for _ in 1..stages {
        for &base in &stage0 {
            let residual = if base == BLANK && rng.below(20) != 0 {
                5
            } else {
                rng.zipf(u64::from(K)) as u16
            };
            indices.push(residual);
        }
    }
    IndexGrid::new(w as u32, h as u32, 1, stages, indices).expect("valid synthetic grid")
}
