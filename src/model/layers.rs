//! Building blocks of the VQ-VAE, written for candle's CPU backend.
//!
//! Activations are kept channels-last, `(batch, height, width, channels)`, so
//! that a 1x1 convolution is one matrix product and a 3x3 convolution is an
//! explicit im2col (nine shifted views, concatenated) followed by one matrix
//! product. The im2col is a custom op with a plain-Rust loop (and col2im as
//! its backward): candle's strided copies and its own `conv2d` backward (a
//! direct transposed convolution) are several times slower on small images.

use candle_core::{CpuStorage, CustomOp1, D, Layout, Result, Shape, Tensor, Var};
use rayon::prelude::*;

/// A 1x1 or 3x3 convolution with stride 1 and "same" zero padding.
///
/// The weight is stored as `[kernel, kernel, in_channels, out_channels]`
/// (HWIO), the bias as `[out_channels]`.
#[derive(Debug, Clone)]
pub struct Conv {
    pub(crate) weight: Var,
    pub(crate) bias: Var,
    kernel: usize,
    in_channels: usize,
    out_channels: usize,
    /// Sum in an order fixed by the layer's shape alone (see
    /// `fixed_order_matmul`); off only for training.
    fixed_order: bool,
}

impl Conv {
    pub fn new(weight: Var, bias: Var) -> Result<Self> {
        let (kh, kw, in_channels, out_channels) = weight.dims4()?;
        if kh != kw || !(kh == 1 || kh == 3) {
            candle_core::bail!("convolution kernel must be 1x1 or 3x3, found {kh}x{kw}");
        }
        if bias.dims1()? != out_channels {
            candle_core::bail!(
                "convolution bias has {} entries, expected {out_channels}",
                bias.dims1()?
            );
        }
        Ok(Self {
            weight,
            bias,
            kernel: kh,
            in_channels,
            out_channels,
            fixed_order: true,
        })
    }

    /// Lets the matrix product sum in whatever order is fastest for the
    /// batch at hand. Training needs no bit-exact reproducibility, and the
    /// split products of `fixed_order_matmul` cost it about 15% of a step.
    pub fn with_free_order(mut self) -> Self {
        self.fixed_order = false;
        self
    }

    /// Side of the (square) kernel: 1 or 3.
    pub fn kernel(&self) -> usize {
        self.kernel
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// `x`: `(batch, height, width, in_channels)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        if c != self.in_channels {
            candle_core::bail!(
                "convolution expects {} input channels, found {c}",
                self.in_channels
            );
        }
        let cols = if self.kernel == 1 {
            x.reshape((b * h * w, c))?
        } else {
            x.contiguous()?.apply_op1(Im2Col3)?
        };
        let k = self.kernel * self.kernel * c;
        let wmat = self.weight.reshape((k, self.out_channels))?;
        let product = if self.fixed_order {
            fixed_order_matmul(&cols, &wmat)?
        } else {
            cols.matmul(&wmat)?
        };
        product
            .broadcast_add(&self.bias)?
            .reshape((b, h, w, self.out_channels))
    }
}

/// The longest sum along `k` the CPU matrix product does in one block
/// whatever the problem's size and the machine's caches.
const K_BLOCK: usize = 512;

/// `rows x k` times `k x n`, each output summed in an order that depends
/// only on `k`: not on how many rows (images) share the product, nor on
/// the machine's cache sizes (for `n >= 2`; see the end).
///
/// The CPU matrix product splits a long `k` into blocks and adds the
/// blocks' partial sums; for outputs of at most 64x64 its blocks are 512
/// long, for larger outputs they are sized to the cache (288 + 288 for
/// `k = 576`, a 3x3 convolution over 64 channels, on common caches).
/// Floating-point sums in a different order differ in the last bits, so
/// one 7x7 latent grid (49 rows) alone would come out a little different
/// from the same grid inside a batch, or on another machine: a pixel could
/// round the other way, or a near tie in the codebook search could flip,
/// and a digit would code differently alone than in a stream. Up to 512,
/// every path sums `k` in one block; longer products are split here into
/// equal blocks of at most 512 and their partial products added in order.
///
/// Not covered: a single output column (`n = 1`, a model with latent
/// dimension 1) goes through a matrix-vector path that sums differently
/// for few and many rows; and CPUs without fused multiply-add round each
/// product separately, so their last bits differ from other machines'.
/// Every layer of the shipped model has at least 4 output columns.
fn fixed_order_matmul(cols: &Tensor, wmat: &Tensor) -> Result<Tensor> {
    let k = cols.dim(1)?;
    if k <= K_BLOCK {
        return cols.matmul(wmat);
    }
    let blocks = k.div_ceil(K_BLOCK);
    let block = |i: usize| {
        let (from, to) = (i * k / blocks, (i + 1) * k / blocks);
        cols.narrow(1, from, to - from)?
            .matmul(&wmat.narrow(0, from, to - from)?)
    };
    (1..blocks).try_fold(block(0)?, |sum, i| sum + block(i)?)
}

/// 3x3 im2col of a contiguous f32 `(b, h, w, c)` tensor into
/// `(b*h*w, 9c)`: row `(b, y, x)` holds the 3x3 neighbourhood of `(y, x)`,
/// tap `(dy, dx)` at columns `(3 dy + dx) c ..`, zeros outside the image.
struct Im2Col3;

/// The adjoint of [`Im2Col3`]: sums each column block back onto the pixel it came from.
struct Col2Im3 {
    b: usize,
    h: usize,
    w: usize,
    c: usize,
}

/// Calls `f(column, pixel)` for every in-image tap of a 3x3 neighbourhood
/// of an `h x w` image of `c` channels: `column` is the tap's offset in the
/// im2col matrix of one image, `pixel` the offset of the pixel it reads.
fn for_each_tap(h: usize, w: usize, c: usize, mut f: impl FnMut(usize, usize)) {
    for y in 0..h {
        for x in 0..w {
            for dy in 0..3 {
                let sy = y + dy;
                if sy < 1 || sy > h {
                    continue;
                }
                for dx in 0..3 {
                    let sx = x + dx;
                    if sx < 1 || sx > w {
                        continue;
                    }
                    let column = ((y * w + x) * 9 + dy * 3 + dx) * c;
                    f(column, ((sy - 1) * w + (sx - 1)) * c);
                }
            }
        }
    }
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("im2col supports f32 only");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("im2col needs a contiguous input"),
    }
}

impl CustomOp1 for Im2Col3 {
    fn name(&self) -> &'static str {
        "im2col3x3"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, h, w, c) = layout.shape().dims4()?;
        let src = contiguous_f32(storage, layout)?;
        let mut out = vec![0f32; b * h * w * 9 * c];
        let per_image = h * w * 9 * c;
        out.par_chunks_mut(per_image.max(1))
            .enumerate()
            .for_each(|(bi, dst)| {
                let img = &src[bi * h * w * c..(bi + 1) * h * w * c];
                for_each_tap(h, w, c, |col, pixel| {
                    dst[col..col + c].copy_from_slice(&img[pixel..pixel + c]);
                });
            });
        Ok((CpuStorage::F32(out), Shape::from((b * h * w, 9 * c))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (b, h, w, c) = arg.dims4()?;
        let g = grad_res
            .contiguous()?
            .apply_op1_no_bwd(&Col2Im3 { b, h, w, c })?;
        Ok(Some(g))
    }
}

impl CustomOp1 for Col2Im3 {
    fn name(&self) -> &'static str {
        "col2im3x3"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, h, w, c) = (self.b, self.h, self.w, self.c);
        if layout.shape().dims() != [b * h * w, 9 * c] {
            candle_core::bail!("col2im: unexpected shape {:?}", layout.shape());
        }
        let src = contiguous_f32(storage, layout)?;
        let mut out = vec![0f32; b * h * w * c];
        out.par_chunks_mut((h * w * c).max(1))
            .enumerate()
            .for_each(|(bi, img)| {
                let cols = &src[bi * h * w * 9 * c..(bi + 1) * h * w * 9 * c];
                for_each_tap(h, w, c, |col, pixel| {
                    for (o, v) in img[pixel..pixel + c].iter_mut().zip(&cols[col..col + c]) {
                        *o += v;
                    }
                });
            });
        Ok((CpuStorage::F32(out), Shape::from((b, h, w, c))))
    }
}

/// Rearranges `(b, h, w, c)` into `(b, h/2, w/2, 4c)`: every 2x2 block of
/// pixels becomes one position with four times the channels.
pub fn space_to_depth(x: &Tensor) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    if h % 2 != 0 || w % 2 != 0 {
        candle_core::bail!("space_to_depth needs even sides, found {h}x{w}");
    }
    x.reshape(vec![b, h / 2, 2, w / 2, 2, c])?
        .permute(vec![0, 1, 3, 2, 4, 5])?
        .contiguous()?
        .reshape((b, h / 2, w / 2, 4 * c))
}

/// The inverse of [`space_to_depth`]: `(b, h, w, 4c)` into `(b, 2h, 2w, c)`.
pub fn depth_to_space(x: &Tensor) -> Result<Tensor> {
    let (b, h, w, c4) = x.dims4()?;
    if c4 % 4 != 0 {
        candle_core::bail!("depth_to_space needs a multiple of 4 channels, found {c4}");
    }
    let c = c4 / 4;
    x.reshape(vec![b, h, w, 2, 2, c])?
        .permute(vec![0, 1, 3, 2, 4, 5])?
        .contiguous()?
        .reshape((b, 2 * h, 2 * w, c))
}

/// Squared Euclidean distances between the rows of `z` `(n, d)` and the rows
/// of `codebook` `(k, d)`, as `||z||^2 - 2 z.e + ||e||^2` with one matmul.
pub fn squared_distances(z: &Tensor, codebook: &Tensor) -> Result<Tensor> {
    let z2 = z.sqr()?.sum_keepdim(D::Minus1)?;
    let e2 = codebook.sqr()?.sum_keepdim(D::Minus1)?.t()?;
    let ze = z.matmul(&codebook.t()?)?;
    z2.broadcast_add(&e2)?.broadcast_sub(&(ze * 2.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn space_depth_round_trip() -> Result<()> {
        let x = Tensor::arange(0f32, 2.0 * 4.0 * 6.0 * 3.0, &Device::Cpu)?.reshape((2, 4, 6, 3))?;
        let y = space_to_depth(&x)?;
        assert_eq!(y.dims(), &[2, 2, 3, 12]);
        let back = depth_to_space(&y)?;
        let diff = (back - &x)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }

    #[test]
    fn convolution_of_an_image_does_not_depend_on_its_batch() -> Result<()> {
        // A 3x3 convolution over 64 channels (k = 576) on 7x7 grids: alone,
        // an image is a 49-row product; in a batch of 20, 980 rows. The
        // results must agree to the bit.
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (3, 3, 64, 64), &dev)?)?;
        let bias = Var::from_tensor(&Tensor::randn(0f32, 0.1, 64, &dev)?)?;
        let conv = Conv::new(w, bias)?;
        let x = Tensor::randn(0f32, 1.0, (20, 7, 7, 64), &dev)?;
        let batch = conv.forward(&x)?;
        for i in [0, 7, 19] {
            let alone = conv.forward(&x.narrow(0, i, 1)?)?;
            let in_batch = batch.narrow(0, i, 1)?;
            let alone = alone.flatten_all()?.to_vec1::<f32>()?;
            let in_batch = in_batch.flatten_all()?.to_vec1::<f32>()?;
            let differing = alone
                .iter()
                .zip(&in_batch)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differing, 0, "image {i}: {differing} outputs differ");
        }
        Ok(())
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() -> Result<()> {
        // <im2col(x), g> == <x, col2im(g)> for random x and g.
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev)?;
        let g = Tensor::randn(0f32, 1.0, (2 * 3 * 4, 45), &dev)?;
        let lhs = (x.apply_op1(Im2Col3)? * &g)?
            .sum_all()?
            .to_scalar::<f32>()?;
        let back = g.apply_op1_no_bwd(&Col2Im3 {
            b: 2,
            h: 3,
            w: 4,
            c: 5,
        })?;
        let rhs = (x * back)?.sum_all()?.to_scalar::<f32>()?;
        assert!(
            (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        Ok(())
    }

    #[test]
    fn conv3x3_matches_direct_sum() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 1.0 * 3.0 * 3.0 * 2.0, &dev)?.reshape((1, 3, 3, 2))?;
        let w = Tensor::arange(0f32, 3.0 * 3.0 * 2.0, &dev)?.reshape((3, 3, 2, 1))?;
        let b = Tensor::new(&[0.5f32], &dev)?;
        let conv = Conv::new(Var::from_tensor(&w)?, Var::from_tensor(&b)?)?;
        let y = conv.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let xv = x.flatten_all()?.to_vec1::<f32>()?;
        let wv = w.flatten_all()?.to_vec1::<f32>()?;
        for oy in 0..3i64 {
            for ox in 0..3i64 {
                let mut acc = 0.5f32;
                for ky in 0..3i64 {
                    for kx in 0..3i64 {
                        let (iy, ix) = (oy + ky - 1, ox + kx - 1);
                        if !(0..3).contains(&iy) || !(0..3).contains(&ix) {
                            continue;
                        }
                        for c in 0..2i64 {
                            acc += xv[((iy * 3 + ix) * 2 + c) as usize]
                                * wv[((ky * 3 + kx) * 2 + c) as usize];
                        }
                    }
                }
                assert!((y[(oy * 3 + ox) as usize] - acc).abs() < 1e-4);
            }
        }
        Ok(())
    }
}
