//! Code lengths under a prior, for the encoder's rate-distortion choices:
//! an encoder may pick an index that is slightly farther from the latent
//! but much cheaper to code. Floats here never reach the bitstream; they
//! only steer which (valid) indices the encoder writes.

use std::cell::RefCell;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use super::learned::{Coded, Place, Scratch, features};
use super::prior::{Prior, PriorModel, bit_lengths};

/// Code lengths (`-log2 p` of every symbol) under a prior: computed table by
/// table on first use for a class-context prior, position by position for a
/// learned one.
pub struct CodeLengths<'p> {
    prior: &'p Prior,
    /// Class priors, per stage: one slot per context table, then one for the
    /// fallback.
    cache: Vec<Vec<OnceLock<Box<[f32]>>>>,
    num_symbols: Vec<u16>,
}

thread_local! {
    static LEARNED_SCRATCH: RefCell<(Scratch, Vec<usize>)> = RefCell::default();
}

impl Prior {
    /// Code lengths of this prior's symbols.
    pub fn code_lengths(&self) -> CodeLengths<'_> {
        CodeLengths {
            prior: self,
            cache: self
                .class_stages()
                .unwrap_or_default()
                .iter()
                .map(|s| (0..=s.tables.len()).map(|_| OnceLock::new()).collect())
                .collect(),
            num_symbols: self.symbol_counts(self.num_stages()),
        }
    }

    /// The same class-context prior with every context using its stage's
    /// fallback table (the stage's smoothed unigram): what the indices cost
    /// without context. `None` for a learned prior, which has no fallback.
    pub fn fallback_only(&self) -> Option<Prior> {
        let mut stages = self.class_stages()?.to_vec();
        for s in &mut stages {
            s.context_table.iter_mut().for_each(|t| *t = u32::MAX);
            s.context_ids.clear();
            s.tables.clear();
        }
        Some(Prior {
            model: PriorModel::Classes(stages),
        })
    }
}

/// Bits every symbol costs at one place: `-log2 p` per index, from a
/// [`CodeLengths`].
pub struct Lengths<'a>(LengthsInner<'a>);

enum LengthsInner<'a> {
    Borrowed(&'a [f32]),
    Shared(Arc<Coded>),
}

impl Deref for Lengths<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            LengthsInner::Borrowed(l) => l,
            LengthsInner::Shared(c) => c.lengths(),
        }
    }
}

/// Where in a plane an index is chosen.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    /// Codebook stage.
    pub stage: u8,
    /// Row.
    pub y: usize,
    /// Column.
    pub x: usize,
    /// The plane's width in cells.
    pub grid_width: usize,
    /// The plane's height in cells.
    pub grid_height: usize,
}

impl CodeLengths<'_> {
    /// Bits each symbol of stage `cell.stage` costs at `cell`, where `at(t,
    /// y, x)` is the index already chosen for stage `t` at row `y`, column
    /// `x` of the same plane (asked only for places before `cell` in coding
    /// order). `None` past the prior's last stage.
    pub fn bits(&self, cell: Cell, at: impl Fn(usize, usize, usize) -> u16) -> Option<Lengths<'_>> {
        let s = usize::from(cell.stage);
        let (y, x) = (cell.y, cell.x);
        match &self.prior.model {
            PriorModel::Classes(stages) => {
                let sp = stages.get(s)?;
                let left = (x > 0).then(|| at(s, y, x - 1));
                let above = (y > 0).then(|| at(s, y - 1, x));
                let prev = s.checked_sub(1).map(|t| at(t, y, x));
                let prev_class = match s.checked_sub(1).and_then(|p| stages.get(p)) {
                    Some(p) => p.classes.class(prev),
                    None => 0,
                };
                let ctx = sp.classes.context_id(
                    sp.classes.class(left),
                    sp.classes.class(above),
                    prev_class,
                );
                let slot = match sp.context_table.get(ctx) {
                    Some(&t) if (t as usize) < sp.tables.len() => t as usize,
                    _ => sp.tables.len(),
                };
                let table = sp.tables.get(slot).unwrap_or(&sp.fallback);
                Some(Lengths(LengthsInner::Borrowed(
                    self.cache
                        .get(s)?
                        .get(slot)?
                        .get_or_init(|| bit_lengths(table)),
                )))
            }
            PriorModel::Learned(stages) => {
                let stage = stages.get(s)?;
                let place = Place {
                    stage: s,
                    y,
                    x,
                    grid_width: cell.grid_width,
                    grid_height: cell.grid_height,
                };
                LEARNED_SCRATCH.with_borrow_mut(|(scratch, feats)| {
                    features(place, &self.num_symbols, &at, feats);
                    let coded = stage.table(feats, scratch).ok()?;
                    Some(Lengths(LengthsInner::Shared(coded)))
                })
            }
        }
    }
}
