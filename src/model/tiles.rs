//! The network's passes over large images in spatial tiles.
//!
//! The network is fully convolutional, so an image of any size can go
//! through it in pieces: each tile of the latent grid is computed from
//! itself and a margin (halo) of its neighbours at least as wide as the
//! network's receptive radius, and only the tile's own part of the result
//! is kept. Every layer sums in an order fixed by its shape alone (see
//! `layers.rs`), so the tiles put together are bit for bit the whole
//! image's pass, while memory is that of one tile's activations (about a
//! kilobyte per pixel) instead of the whole image's.

use candle_core::{Result, Tensor};

use super::{GRID_STRIDE, VqVae};

/// Fewest latent cells on the side of a tile's own part: smaller tiles
/// would spend most of their work on their halo.
const MIN_TILE_CELLS: usize = 8;

/// One tile's extent along one side of the latent grid: cells
/// `start..end` are its own; `lo..hi`, with the halo and clipped to the
/// grid, go through the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    lo: usize,
    hi: usize,
}

impl Span {
    fn own(&self) -> usize {
        self.end - self.start
    }

    fn with_halo(&self) -> usize {
        self.hi - self.lo
    }

    /// Offset of the tile's own cells within the cells passed.
    fn skip(&self) -> usize {
        self.start - self.lo
    }
}

/// The tiles along a side of `len` cells.
fn spans(len: usize, tile: usize, halo: usize) -> impl Iterator<Item = Span> {
    (0..len).step_by(tile.max(1)).map(move |start| {
        let end = (start + tile).min(len);
        Span {
            start,
            end,
            lo: start.saturating_sub(halo),
            hi: (end + halo).min(len),
        }
    })
}

/// The own part of the tiles, `(rows, columns)` of cells, for `batch`
/// planes of a `gh x gw` latent grid such that one pass holds about
/// `max_cells` cells with the halo; `None` when the whole grid fits in one
/// pass. Tiles are square but on grids too short for that, which get tiles
/// of their whole height and as wide as the budget allows.
fn tile_shape(
    batch: usize,
    gh: usize,
    gw: usize,
    halo: usize,
    max_cells: usize,
) -> Option<(usize, usize)> {
    if batch.saturating_mul(gh).saturating_mul(gw) <= max_cells {
        return None;
    }
    let per_plane = max_cells / batch.max(1);
    let rows = per_plane
        .isqrt()
        .saturating_sub(2 * halo)
        .max(MIN_TILE_CELLS)
        .min(gh);
    let rows_passed = (rows + 2 * halo).min(gh);
    let columns = (per_plane / rows_passed)
        .saturating_sub(2 * halo)
        .max(MIN_TILE_CELLS);
    Some((rows, columns))
}

/// Cells `ty` x `tx` (with their halo) of `t`, whose spatial dimensions
/// are `dims` and hold `scale` elements per cell.
fn window(t: &Tensor, dims: (usize, usize), ty: &Span, tx: &Span, scale: usize) -> Result<Tensor> {
    t.narrow(dims.0, ty.lo * scale, ty.with_halo() * scale)?
        .narrow(dims.1, tx.lo * scale, tx.with_halo() * scale)?
        .contiguous()
}

/// The tile's own cells of a pass's output `(b, rows, columns, c)` over
/// its window, at `scale` elements per cell.
fn own_part(t: &Tensor, ty: &Span, tx: &Span, scale: usize) -> Result<Tensor> {
    t.narrow(1, ty.skip() * scale, ty.own() * scale)?
        .narrow(2, tx.skip() * scale, tx.own() * scale)
}

impl VqVae {
    /// [`VqVae::encode_latents`] of `x` `(b, 4 gh, 4 gw, 1)`, computed in
    /// spatial tiles when the batch holds more than `max_cells` latent
    /// cells: the same values, with the memory of one tile. The result is
    /// detached (no gradient), so no tile's activations outlive its pass.
    pub fn encode_latents_tiled(&self, x: &Tensor, max_cells: usize) -> Result<Tensor> {
        let (b, h, w, _) = x.dims4()?;
        let (gh, gw) = (h / GRID_STRIDE, w / GRID_STRIDE);
        let halo = self.encoder_halo();
        let Some((rows, columns)) = tile_shape(b, gh, gw, halo, max_cells) else {
            return self.encode_latents(x).map(|z| z.detach());
        };
        let columns: Vec<Span> = spans(gw, columns, halo).collect();
        let mut bands = Vec::new();
        for ty in spans(gh, rows, halo) {
            let mut band = Vec::new();
            for tx in &columns {
                let part = window(x, (1, 2), &ty, tx, GRID_STRIDE)?;
                let z = self.encode_latents(&part)?.detach();
                band.push(own_part(&z, &ty, tx, 1)?);
            }
            bands.push(Tensor::cat(&band, 2)?);
        }
        Tensor::cat(&bands, 1)
    }

    /// [`VqVae::decode`] of `indices` `(b, stages, gh, gw)`, computed in
    /// spatial tiles when the batch holds more than `max_cells` latent
    /// cells; each tile looks up only its own codebook vectors. Calls
    /// `emit(y, x, pixels)` for each tile, in raster order, with its pixels
    /// `(b, th, tw, 1)` (contiguous) whose top left is at row `y`, column
    /// `x` of the image; once, with the whole image, when it fits in one
    /// pass.
    pub fn decode_tiled(
        &self,
        indices: &Tensor,
        max_cells: usize,
        mut emit: impl FnMut(usize, usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let (b, _, gh, gw) = indices.dims4()?;
        let halo = self.decoder_halo();
        let Some((rows, columns)) = tile_shape(b, gh, gw, halo, max_cells) else {
            return emit(0, 0, &self.decode(indices)?.contiguous()?);
        };
        let columns: Vec<Span> = spans(gw, columns, halo).collect();
        for ty in spans(gh, rows, halo) {
            for tx in &columns {
                let latents = self.dequantize(&window(indices, (2, 3), &ty, tx, 1)?)?;
                let pixels = self.decode_latents(&latents)?;
                let pixels = own_part(&pixels, &ty, tx, GRID_STRIDE)?.contiguous()?;
                emit(ty.start * GRID_STRIDE, tx.start * GRID_STRIDE, &pixels)?;
            }
        }
        Ok(())
    }
}

impl VqVae {
    /// Latent cells, halos included, that [`VqVae::decode_tiled`] passes
    /// through the decoder for `batch` planes of a `gh x gw` grid with a
    /// pass of `max_cells`: the grid's own cells when it fits in one pass,
    /// else every tile's window (up to four times the grid, as a tile's
    /// own part is at least 8 cells a side and its halo reaches 4 further
    /// on each side for the shipped model's decoder).
    pub fn decode_passed_cells(&self, batch: usize, gh: usize, gw: usize, max_cells: usize) -> u64 {
        let halo = self.decoder_halo();
        let cells = |v: usize| v as u64;
        let Some((rows, columns)) = tile_shape(batch, gh, gw, halo, max_cells) else {
            return cells(batch)
                .saturating_mul(cells(gh))
                .saturating_mul(cells(gw));
        };
        let passed = |len: usize, tile: usize| -> u64 {
            spans(len, tile, halo).map(|s| cells(s.with_halo())).sum()
        };
        cells(batch)
            .saturating_mul(passed(gh, rows))
            .saturating_mul(passed(gw, columns))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::{ModelConfig, ParamStore};

    fn network() -> VqVae {
        let config = ModelConfig {
            stages: 2,
            ..ModelConfig::default()
        };
        let params = ParamStore::init(&config, 7).unwrap();
        VqVae::new(config, &params).unwrap()
    }

    #[test]
    fn spans_cover_the_side_once_with_clipped_halos() {
        let s: Vec<Span> = spans(20, 8, 3).collect();
        let own: Vec<(usize, usize)> = s.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(own, [(0, 8), (8, 16), (16, 20)]);
        let passed: Vec<(usize, usize)> = s.iter().map(|s| (s.lo, s.hi)).collect();
        assert_eq!(passed, [(0, 11), (5, 19), (13, 20)]);
        assert!(spans(0, 8, 3).next().is_none());
    }

    #[test]
    fn passed_cells_count_every_tile_window_with_its_halo() {
        let net = network();
        assert_eq!(net.decoder_halo(), 4);
        // One pass: the grid's own cells.
        assert_eq!(net.decode_passed_cells(3, 7, 7, 147), 147);
        // 8x8 tiles of a 32x32 grid pass windows of 12, 16, 16 and 12
        // cells a side (halos clipped at the edges): 56 x 56.
        assert_eq!(tile_shape(1, 32, 32, 4, 256), Some((8, 8)));
        assert_eq!(net.decode_passed_cells(1, 32, 32, 256), 56 * 56);
        assert_eq!(net.decode_passed_cells(2, 32, 32, 512), 2 * 56 * 56);
        // Large tiles spend little on their halos.
        let (cells, passed) = (1000 * 1000, net.decode_passed_cells(1, 1000, 1000, 1 << 14));
        assert!(passed > cells && passed < cells * 3 / 2, "{passed}");
    }

    #[test]
    fn tiles_only_when_the_batch_is_over_the_budget() {
        assert_eq!(tile_shape(2, 7, 7, 4, 98), None);
        assert_eq!(tile_shape(2, 7, 7, 4, 97), Some((7, MIN_TILE_CELLS)));
        assert_eq!(tile_shape(1, 1000, 1000, 4, 1 << 14), Some((120, 120)));
        assert_eq!(tile_shape(4, 1000, 1000, 4, 1 << 14), Some((56, 56)));
        // A strip: tiles of its whole height, as wide as the budget allows.
        assert_eq!(tile_shape(4, 1, 4096, 4, 9404), Some((1, 2343)));
        assert_eq!(tile_shape(1, 4096, 2, 4, 1000), Some((23, 24)));
    }

    #[test]
    fn a_wider_network_holds_more_floats_per_pixel() {
        let narrow = network().floats_per_pixel();
        let config = ModelConfig {
            stages: 2,
            channels_low: 256,
            channels_high: 128,
            ..ModelConfig::default()
        };
        let wide = VqVae::new(config, &ParamStore::init(&config, 7).unwrap()).unwrap();
        assert!(
            wide.floats_per_pixel() > 3 * narrow,
            "{narrow} vs {}",
            wide.floats_per_pixel()
        );
    }

    #[test]
    fn tiled_passes_equal_the_whole_image_pass_bit_for_bit() {
        let net = network();
        let (b, gh, gw) = (2, 37, 29);
        let x = Tensor::rand(
            0f32,
            1.0,
            (b, gh * GRID_STRIDE, gw * GRID_STRIDE, 1),
            &Device::Cpu,
        )
        .unwrap();
        // A budget of a few 8-cell tiles with their halos.
        let budget = b * (MIN_TILE_CELLS + 2 * net.encoder_halo().max(net.decoder_halo())).pow(2);
        let whole = net.encode_latents(&x).unwrap();
        let tiled = net.encode_latents_tiled(&x, budget).unwrap();
        assert_eq!(whole.dims(), tiled.dims());
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(flat(&whole) == flat(&tiled), "tiled encoder differs");

        let k = net.config().codebook_size as f32;
        let indices = (Tensor::rand(0f32, k, (b, 2, gh, gw), &Device::Cpu).unwrap())
            .floor()
            .unwrap()
            .to_dtype(DType::U32)
            .unwrap();
        let whole = net.decode(&indices).unwrap();
        let (h, w) = (gh * GRID_STRIDE, gw * GRID_STRIDE);
        let mut pieced = vec![f32::NAN; b * h * w];
        let mut tiles = 0;
        net.decode_tiled(&indices, budget, |y0, x0, pixels| {
            let (pb, th, tw, _) = pixels.dims4()?;
            assert_eq!(pb, b);
            let v = pixels.flatten_all()?.to_vec1::<f32>()?;
            for q in 0..b {
                for y in 0..th {
                    let src = &v[(q * th + y) * tw..][..tw];
                    pieced[(q * h + y0 + y) * w + x0..][..tw].copy_from_slice(src);
                }
            }
            tiles += 1;
            Ok(())
        })
        .unwrap();
        assert!(
            tiles > 4,
            "the budget should split the grid, got {tiles} tile(s)"
        );
        assert!(flat(&whole) == pieced, "tiled decoder differs");
    }
}
