//! Coding index grids (spec section "Payload coding"): pick ANS or stored,
//! and decode either back to the exact indices.

use super::PRECISION;
use super::ans;
use super::error::{EntropyError, Result};
use super::grid::{IndexGrid, Layout, symbol_count};
use super::learned::{Scratch, features};
use super::prior::{Classes, Prior, PriorModel, TableRef, freq};
use super::stored;
use crate::format::CodingMode;

/// Checks the grid's shape and that every index is in its stage's codebook;
/// returns the symbol count.
pub(crate) fn check_indices(num_symbols: &[u16], grid: &IndexGrid) -> Result<usize> {
    let n = grid.check_shape()?;
    let layout = Layout::new(grid.grid_width, grid.grid_height, grid.planes);
    for (i, &index) in grid.indices.iter().enumerate() {
        let s = layout.stage(i);
        let k = num_symbols.get(s).copied().unwrap_or(0);
        if index >= k {
            return Err(EntropyError::IndexOutOfRange {
                stage: s as u8,
                position: i,
                index: u32::from(index),
                num_symbols: k,
            });
        }
    }
    Ok(n)
}

/// Context id of position `i` (stage `s`) from the indices before it.
pub(crate) fn context_at(
    classes: &[&Classes],
    layout: &Layout,
    indices: &[u16],
    i: usize,
    s: usize,
) -> usize {
    let Some(stage) = classes.get(s) else {
        return usize::MAX;
    };
    let (left, above, prev) = layout.neighbours(i);
    let at = |j: Option<usize>| j.and_then(|j| indices.get(j).copied());
    let left = stage.class(at(left));
    let above = stage.class(at(above));
    let prev = match s.checked_sub(1).and_then(|p| classes.get(p)) {
        Some(prev_stage) => prev_stage.class(at(prev)),
        None => 0,
    };
    stage.context_id(left, above, prev)
}

/// The stages of a prior that a grid of `stages` stages uses, and how to
/// get the table of each of its positions.
struct Used<'p> {
    prior: &'p Prior,
    /// Class maps of the used stages (class-context priors only).
    classes: Vec<&'p Classes>,
    num_symbols: Vec<u16>,
    scratch: Scratch,
    features: Vec<usize>,
}

impl<'p> Used<'p> {
    fn new(prior: &'p Prior, stages: u8) -> Result<Self> {
        if stages == 0 {
            return Err(EntropyError::GridShape(
                "a grid needs at least one stage".into(),
            ));
        }
        if stages > prior.num_stages() {
            return Err(EntropyError::StagesMismatch {
                grid: stages,
                prior: prior.num_stages(),
            });
        }
        let classes = prior
            .class_stages()
            .map(|st| {
                st.iter()
                    .take(usize::from(stages))
                    .map(|s| &s.classes)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            prior,
            classes,
            num_symbols: prior.symbol_counts(stages),
            scratch: Scratch::default(),
            features: Vec::new(),
        })
    }

    /// Table of position `i`, from the indices before it in `indices`.
    fn table(&mut self, layout: &Layout, indices: &[u16], i: usize) -> Result<TableRef<'p>> {
        let s = layout.stage(i);
        match &self.prior.model {
            PriorModel::Classes(stages) => {
                let context = context_at(&self.classes, layout, indices, i, s);
                stages
                    .get(s)
                    .map(|st| TableRef::Borrowed(st.table(context)))
                    .ok_or(EntropyError::StagesMismatch {
                        grid: s as u8 + 1,
                        prior: stages.len() as u8,
                    })
            }
            PriorModel::Learned(stages) => {
                let stage = stages.get(s).ok_or(EntropyError::StagesMismatch {
                    grid: s as u8 + 1,
                    prior: stages.len() as u8,
                })?;
                let (place, plane_start) = layout.place(i);
                features(
                    place,
                    &self.num_symbols,
                    |t, y, x| {
                        indices
                            .get(t * layout.per_stage + plane_start + y * layout.width + x)
                            .copied()
                            .unwrap_or(0)
                    },
                    &mut self.features,
                );
                Ok(TableRef::Shared(
                    stage.table(&self.features, &mut self.scratch)?,
                ))
            }
        }
    }
}

/// Codes a grid: ANS under `prior`, or stored when ANS would not be smaller.
///
/// ```
/// use vqz::entropy::{IndexGrid, Prior, decode_grid, encode_grid};
///
/// let prior = Prior::uniform(&[16])?;
/// let grid = IndexGrid::new(2, 2, 1, 1, vec![3, 0, 15, 7])?;
/// let (mode, payload) = encode_grid(&prior, &grid)?;
/// let back = decode_grid(&prior, mode, &payload, 2, 2, 1, 1)?;
/// assert_eq!(back, grid);
/// # Ok::<(), vqz::entropy::EntropyError>(())
/// ```
pub fn encode_grid(prior: &Prior, grid: &IndexGrid) -> Result<(CodingMode, Vec<u8>)> {
    let mut used = Used::new(prior, grid.stages)?;
    let n = check_indices(&used.num_symbols, grid)?;
    let layout = Layout::new(grid.grid_width, grid.grid_height, grid.planes);
    let widths: Vec<u32> = used
        .num_symbols
        .iter()
        .map(|&k| stored::index_bits(k))
        .collect();
    let stored_len = stored::stored_len(&layout, n, &widths);
    let payload = ans::encode(&grid.indices, true, |i| {
        used.table(&layout, &grid.indices, i)
    })?;
    if payload.len() < stored_len {
        Ok((CodingMode::Ans, payload))
    } else {
        Ok((
            CodingMode::Stored,
            stored::encode(&layout, &grid.indices, &widths),
        ))
    }
}

/// Decodes a payload to the grid of `grid_width x grid_height x planes x
/// stages` indices it codes. Fails unless the payload is exactly a valid
/// coding of that many indices.
pub fn decode_grid(
    prior: &Prior,
    mode: CodingMode,
    payload: &[u8],
    grid_width: u32,
    grid_height: u32,
    planes: u8,
    stages: u8,
) -> Result<IndexGrid> {
    let n = symbol_count(grid_width, grid_height, planes, stages)?;
    let mut used = Used::new(prior, stages)?;
    let layout = Layout::new(grid_width, grid_height, planes);
    let indices = match mode {
        CodingMode::Stored => {
            let widths: Vec<u32> = used
                .num_symbols
                .iter()
                .map(|&k| stored::index_bits(k))
                .collect();
            stored::decode(&layout, n, &widths, &used.num_symbols, payload)?
        }
        CodingMode::Ans | CodingMode::AnsPlain => {
            let small_states = mode == CodingMode::Ans;
            ans::decode(payload, n, small_states, |i, decoded| {
                used.table(&layout, decoded, i)
            })?
        }
    };
    Ok(IndexGrid {
        grid_width,
        grid_height,
        planes,
        stages,
        indices,
    })
}

/// Ideal code length of `grid` under `prior` in bits: the sum of
/// `-log2(freq / 2^16)` over its indices. Grids the prior cannot code give
/// infinity.
pub fn cross_entropy_bits(prior: &Prior, grid: &IndexGrid) -> f64 {
    let Ok(mut used) = Used::new(prior, grid.stages) else {
        return f64::INFINITY;
    };
    if check_indices(&used.num_symbols, grid).is_err() {
        return f64::INFINITY;
    }
    let layout = Layout::new(grid.grid_width, grid.grid_height, grid.planes);
    let mut bits = 0.0;
    for (i, &index) in grid.indices.iter().enumerate() {
        let Ok(table) = used.table(&layout, &grid.indices, i) else {
            return f64::INFINITY;
        };
        bits += PRECISION as f64 - f64::from(freq(&table, index)).log2();
    }
    bits
}
