//! Code lengths under a prior, for the encoder's rate-distortion choices:
//! an encoder may pick an index that is slightly farther from the latent
//! but much cheaper to code. Floats here never reach the bitstream; they
//! only steer which (valid) indices the encoder writes.

use std::sync::OnceLock;

use constriction::stream::model::EncoderModel;

use super::PRECISION;
use super::prior::{Prior, Table};

/// Lazily computed `-log2 p` of every symbol of every table of a prior.
pub struct CodeLengths<'p> {
    prior: &'p Prior,
    /// Per stage: one slot per context table, then one for the fallback.
    cache: Vec<Vec<OnceLock<Box<[f32]>>>>,
}

fn lengths(table: &Table) -> Box<[f32]> {
    let scale = (PRECISION as f32).exp2();
    (0..table.num_symbols)
        .map(|s| {
            let p = table
                .model
                .left_cumulative_and_probability(table.rotate(s))
                .map_or(1, |(_, p)| p.get());
            -(p as f32 / scale).log2()
        })
        .collect()
}

impl Prior {
    /// Code lengths of this prior's symbols, computed table by table on first use.
    pub fn code_lengths(&self) -> CodeLengths<'_> {
        CodeLengths {
            prior: self,
            cache: self
                .stages
                .iter()
                .map(|s| (0..=s.tables.len()).map(|_| OnceLock::new()).collect())
                .collect(),
        }
    }
}

impl Prior {
    /// The same prior with every context using its stage's fallback table
    /// (the stage's smoothed unigram): what the indices cost without context.
    pub fn fallback_only(&self) -> Prior {
        let mut p = self.clone();
        for s in &mut p.stages {
            s.context_table.iter_mut().for_each(|t| *t = u32::MAX);
            s.context_ids.clear();
            s.tables.clear();
        }
        p
    }
}

impl CodeLengths<'_> {
    /// Bits each symbol of `stage` costs where the left and above neighbours
    /// (same stage) and the previous stage's index at the same place are as
    /// given (`None` at an edge or at stage 0). `None` past the last stage.
    pub fn bits(
        &self,
        stage: u8,
        left: Option<u16>,
        above: Option<u16>,
        prev: Option<u16>,
    ) -> Option<&[f32]> {
        let s = usize::from(stage);
        let sp = self.prior.stages.get(s)?;
        let prev_class = match s.checked_sub(1).and_then(|p| self.prior.stages.get(p)) {
            Some(p) => p.classes.class(prev),
            None => 0,
        };
        let ctx =
            sp.classes
                .context_id(sp.classes.class(left), sp.classes.class(above), prev_class);
        let slot = match sp.context_table.get(ctx) {
            Some(&t) if (t as usize) < sp.tables.len() => t as usize,
            _ => sp.tables.len(),
        };
        let table = sp.tables.get(slot).unwrap_or(&sp.fallback);
        Some(self.cache.get(s)?.get(slot)?.get_or_init(|| lengths(table)))
    }
}
