//! Index grids: the codebook indices of one image in coding order, and the
//! context of each index (spec section "Contexts").

use super::MAX_GRID_SYMBOLS;
use super::error::{EntropyError, Result};

/// The codebook indices of one image.
///
/// `indices` is in coding order: stage, then plane, then row, then column
/// (`((s * planes + p) * grid_height + y) * grid_width + x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexGrid {
    /// Columns of the latent grid.
    pub grid_width: u32,
    /// Rows of the latent grid.
    pub grid_height: u32,
    /// Planes (the container's channel count).
    pub planes: u8,
    /// Codebook stages.
    pub stages: u8,
    /// The indices, `grid_width * grid_height * planes * stages` of them.
    pub indices: Vec<u16>,
}

/// Number of symbols of a grid, checked against [`MAX_GRID_SYMBOLS`].
pub fn symbol_count(grid_width: u32, grid_height: u32, planes: u8, stages: u8) -> Result<usize> {
    if grid_width == 0 || grid_height == 0 || planes == 0 || stages == 0 {
        return Err(EntropyError::GridShape(format!(
            "{grid_width}x{grid_height} grid, {planes} planes, {stages} stages: every dimension must be at least 1"
        )));
    }
    let count = u64::from(grid_width)
        .checked_mul(u64::from(grid_height))
        .and_then(|n| n.checked_mul(u64::from(planes)))
        .and_then(|n| n.checked_mul(u64::from(stages)))
        .unwrap_or(u64::MAX);
    if count > MAX_GRID_SYMBOLS {
        return Err(EntropyError::LimitExceeded {
            what: "symbols in a grid",
            found: count,
            limit: MAX_GRID_SYMBOLS,
        });
    }
    usize::try_from(count).map_err(|_| EntropyError::LimitExceeded {
        what: "symbols in a grid",
        found: count,
        limit: MAX_GRID_SYMBOLS,
    })
}

impl IndexGrid {
    /// A grid, checking that `indices` has the right length.
    pub fn new(
        grid_width: u32,
        grid_height: u32,
        planes: u8,
        stages: u8,
        indices: Vec<u16>,
    ) -> Result<Self> {
        let grid = Self {
            grid_width,
            grid_height,
            planes,
            stages,
            indices,
        };
        grid.check_shape()?;
        Ok(grid)
    }

    /// A grid of zeros.
    pub fn zeros(grid_width: u32, grid_height: u32, planes: u8, stages: u8) -> Result<Self> {
        let n = symbol_count(grid_width, grid_height, planes, stages)?;
        Ok(Self {
            grid_width,
            grid_height,
            planes,
            stages,
            indices: vec![0; n],
        })
    }

    /// The grid of the first `stages` stages (a lower quality level of the
    /// same image). Fails if `stages` is 0 or more than the grid has.
    pub fn first_stages(&self, stages: u8) -> Result<Self> {
        if stages == 0 || stages > self.stages {
            return Err(EntropyError::GridShape(format!(
                "cannot take {stages} stages of a grid of {}",
                self.stages
            )));
        }
        let n = symbol_count(self.grid_width, self.grid_height, self.planes, stages)?;
        Self::new(
            self.grid_width,
            self.grid_height,
            self.planes,
            stages,
            self.indices.get(..n).unwrap_or(&self.indices).to_vec(),
        )
    }

    /// Checks that the dimensions are non-zero, within limits, and match the
    /// index count; returns the count.
    pub fn check_shape(&self) -> Result<usize> {
        let n = symbol_count(self.grid_width, self.grid_height, self.planes, self.stages)?;
        if self.indices.len() != n {
            return Err(EntropyError::GridShape(format!(
                "{}x{} grid, {} planes, {} stages needs {n} indices, found {}",
                self.grid_width,
                self.grid_height,
                self.planes,
                self.stages,
                self.indices.len()
            )));
        }
        Ok(n)
    }

    /// Index at stage `s`, plane `p`, row `y`, column `x`, if in range.
    pub fn get(&self, s: u8, p: u8, y: u32, x: u32) -> Option<u16> {
        if p >= self.planes || y >= self.grid_height || x >= self.grid_width {
            return None;
        }
        let i = ((usize::from(s) * usize::from(self.planes) + usize::from(p))
            * self.grid_height as usize
            + y as usize)
            * self.grid_width as usize
            + x as usize;
        self.indices.get(i).copied()
    }
}

/// Position arithmetic for walking a grid in coding order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) width: usize,
    pub(crate) per_plane: usize,
    pub(crate) per_stage: usize,
}

impl Layout {
    pub(crate) fn new(grid_width: u32, grid_height: u32, planes: u8) -> Self {
        let width = grid_width as usize;
        let per_plane = width.saturating_mul(grid_height as usize);
        Self {
            width,
            per_plane,
            per_stage: per_plane.saturating_mul(usize::from(planes)),
        }
    }

    /// Neighbour positions of position `i` (in coding order): left, above,
    /// and the same place one stage earlier, each `None` at an edge.
    pub(crate) fn neighbours(&self, i: usize) -> (Option<usize>, Option<usize>, Option<usize>) {
        let in_plane = i % self.per_plane.max(1);
        let x = in_plane % self.width.max(1);
        let left = (x > 0).then(|| i - 1);
        let above = (in_plane >= self.width).then(|| i - self.width);
        let prev = i.checked_sub(self.per_stage);
        (left, above, prev)
    }

    /// Where position `i` lies, and where its plane starts within its stage.
    pub(crate) fn place(&self, i: usize) -> (super::learned::Place, usize) {
        let stage = self.stage(i);
        let in_stage = i % self.per_stage.max(1);
        let plane_start = in_stage - in_stage % self.per_plane.max(1);
        let cell = in_stage - plane_start;
        let width = self.width.max(1);
        (
            super::learned::Place {
                stage,
                y: cell / width,
                x: cell % width,
                grid_width: self.width,
                grid_height: self.per_plane / width,
            },
            plane_start,
        )
    }

    /// Stage of position `i`.
    pub(crate) fn stage(&self, i: usize) -> usize {
        i / self.per_stage.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_respect_edges() {
        // 3x2 grid, 2 planes, 2 stages: 6 cells per plane, 12 per stage.
        let layout = Layout::new(3, 2, 2);
        assert_eq!(layout.neighbours(0), (None, None, None));
        assert_eq!(layout.neighbours(1), (Some(0), None, None));
        assert_eq!(layout.neighbours(3), (None, Some(0), None));
        assert_eq!(layout.neighbours(4), (Some(3), Some(1), None));
        assert_eq!(layout.neighbours(6), (None, None, None)); // plane 1 starts fresh
        assert_eq!(layout.neighbours(16), (Some(15), Some(13), Some(4)));
        assert_eq!(layout.stage(11), 0);
        assert_eq!(layout.stage(12), 1);
    }

    #[test]
    fn shapes_are_checked() {
        assert!(IndexGrid::new(2, 2, 1, 1, vec![0; 4]).is_ok());
        assert!(IndexGrid::new(2, 2, 1, 1, vec![0; 5]).is_err());
        assert!(IndexGrid::new(0, 2, 1, 1, vec![]).is_err());
        let grid = IndexGrid::new(2, 1, 1, 2, vec![1, 2, 3, 4]).unwrap();
        assert_eq!(grid.get(1, 0, 0, 1), Some(4));
        assert_eq!(grid.get(0, 1, 0, 0), None);
        assert!(matches!(
            symbol_count(1 << 16, 1 << 16, 4, 8),
            Err(EntropyError::LimitExceeded { .. })
        ));
    }
}
