//! Training a [`Prior`] from example grids: count symbols per context, then
//! quantize the smoothed counts to integer frequency tables.
//!
//! Floats appear here, on the model side; what leaves is integer tables, so
//! the bitstream never depends on floating point.

use std::collections::HashMap;

use super::error::{EntropyError, Result};
use super::grid::{IndexGrid, Layout};
use super::prior::{Classes, Prior, PriorModel, StagePrior, Table, table_from_freqs};
use super::{MAX_CLASSES, MAX_NUM_SYMBOLS, MAX_PRIOR_STAGES, PRECISION};

/// Counts symbols per context over training grids and builds a [`Prior`].
///
/// Memory: 8 bytes per codebook entry for every context seen in training
/// (at most `(C + 1)^2 * C` per stage).
///
/// ```
/// use vqz::entropy::{IndexGrid, PriorBuilder};
///
/// let grids = vec![IndexGrid::new(2, 2, 1, 1, vec![0, 0, 0, 5])?];
/// let classes = PriorBuilder::class_maps_from_unigram(&[8], 2, &grids)?;
/// let mut builder = PriorBuilder::new(&[8], classes, 2)?;
/// for grid in &grids {
///     builder.observe(grid)?;
/// }
/// let prior = builder.build(1, 1.0)?;
/// assert_eq!(prior.num_symbols(0), Some(8));
/// # Ok::<(), vqz::entropy::EntropyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PriorBuilder {
    stages: Vec<StageCounts>,
    fallback_only: bool,
}

#[derive(Debug, Clone)]
struct StageCounts {
    num_symbols: u16,
    classes: Classes,
    unigram: Vec<u64>,
    contexts: HashMap<u32, Vec<u64>>,
}

impl PriorBuilder {
    /// A builder for codebooks of `num_symbols[s]` entries (2..=4096), where
    /// `class_maps[s][k]` is the class (`< num_classes`, at most 32) of index
    /// `k` of stage `s`.
    pub fn new(num_symbols: &[u16], class_maps: Vec<Vec<u8>>, num_classes: u8) -> Result<Self> {
        if num_symbols.is_empty() || num_symbols.len() > usize::from(MAX_PRIOR_STAGES) {
            return Err(EntropyError::InvalidArgument(format!(
                "a prior models 1..={MAX_PRIOR_STAGES} stages, not {}",
                num_symbols.len()
            )));
        }
        if class_maps.len() != num_symbols.len() {
            return Err(EntropyError::InvalidArgument(format!(
                "{} class maps for {} stages",
                class_maps.len(),
                num_symbols.len()
            )));
        }
        if !(1..=MAX_CLASSES).contains(&num_classes) {
            return Err(EntropyError::InvalidArgument(format!(
                "class count must be 1..={MAX_CLASSES}, not {num_classes}"
            )));
        }
        let mut stages = Vec::with_capacity(num_symbols.len());
        let mut prev_classes = 1;
        for (s, (&k, class_of)) in num_symbols.iter().zip(class_maps).enumerate() {
            if !(2..=MAX_NUM_SYMBOLS).contains(&k) {
                return Err(EntropyError::InvalidArgument(format!(
                    "stage {s}: codebook size must be 2..={MAX_NUM_SYMBOLS}, not {k}"
                )));
            }
            if class_of.len() != usize::from(k) || class_of.iter().any(|&c| c >= num_classes) {
                return Err(EntropyError::InvalidArgument(format!(
                    "stage {s}: class map needs {k} classes below {num_classes}"
                )));
            }
            stages.push(StageCounts {
                num_symbols: k,
                classes: Classes {
                    num_classes,
                    class_of,
                    prev_classes,
                },
                unigram: vec![0; usize::from(k)],
                contexts: HashMap::new(),
            });
            prev_classes = num_classes;
        }
        Ok(Self {
            stages,
            fallback_only: false,
        })
    }

    /// Class maps from unigram frequency: in each stage the `num_classes - 1`
    /// most frequent indices get a class each (most frequent first), and all
    /// other indices share the last class.
    pub fn class_maps_from_unigram(
        num_symbols: &[u16],
        num_classes: u8,
        grids: &[IndexGrid],
    ) -> Result<Vec<Vec<u8>>> {
        if !(1..=MAX_CLASSES).contains(&num_classes) {
            return Err(EntropyError::InvalidArgument(format!(
                "class count must be 1..={MAX_CLASSES}, not {num_classes}"
            )));
        }
        let mut counts: Vec<Vec<u64>> = num_symbols
            .iter()
            .map(|&k| vec![0; usize::from(k)])
            .collect();
        for grid in grids {
            let n = grid.check_shape()?;
            let layout = Layout::new(grid.grid_width, grid.grid_height, grid.planes);
            for (i, &index) in grid.indices.iter().enumerate().take(n) {
                let slot = counts
                    .get_mut(layout.stage(i))
                    .and_then(|c| c.get_mut(usize::from(index)));
                if let Some(slot) = slot {
                    *slot += 1;
                }
            }
        }
        Ok(counts
            .iter()
            .map(|stage_counts| {
                let mut order: Vec<usize> = (0..stage_counts.len()).collect();
                order.sort_by_key(|&i| (std::cmp::Reverse(stage_counts.get(i).copied()), i));
                let mut map = vec![num_classes - 1; stage_counts.len()];
                for (class, &symbol) in order.iter().take(usize::from(num_classes) - 1).enumerate()
                {
                    if let Some(slot) = map.get_mut(symbol) {
                        *slot = class as u8;
                    }
                }
                map
            })
            .collect())
    }

    pub(crate) fn set_fallback_only(&mut self, yes: bool) {
        self.fallback_only = yes;
    }

    /// Counts the symbols of one grid under their contexts. The grid may have
    /// fewer stages than the builder.
    pub fn observe(&mut self, grid: &IndexGrid) -> Result<()> {
        let n = grid.check_shape()?;
        if usize::from(grid.stages) > self.stages.len() {
            return Err(EntropyError::StagesMismatch {
                grid: grid.stages,
                prior: self.stages.len() as u8,
            });
        }
        let num_symbols: Vec<u16> = self.stages.iter().map(|s| s.num_symbols).collect();
        super::coding::check_indices(&num_symbols, grid)?;
        let classes: Vec<&Classes> = self.stages.iter().map(|s| &s.classes).collect();
        let layout = Layout::new(grid.grid_width, grid.grid_height, grid.planes);
        let mut observations = Vec::with_capacity(n);
        for i in 0..n {
            let s = layout.stage(i);
            let context = super::coding::context_at(&classes, &layout, &grid.indices, i, s);
            observations.push((s, context, grid.indices.get(i).copied().unwrap_or(0)));
        }
        for (s, context, symbol) in observations {
            let Some(stage) = self.stages.get_mut(s) else {
                continue;
            };
            let k = usize::from(stage.num_symbols);
            if let Some(c) = stage.unigram.get_mut(usize::from(symbol)) {
                *c += 1;
            }
            let counts = stage
                .contexts
                .entry(context as u32)
                .or_insert_with(|| vec![0; k]);
            if let Some(c) = counts.get_mut(usize::from(symbol)) {
                *c += 1;
            }
        }
        Ok(())
    }

    /// Builds the prior. A context observed at least `min_count` times gets
    /// its own table: its counts plus `smoothing` pseudo-observations spread
    /// like the stage's fallback table. The fallback table is the stage's
    /// unigram counts plus one half per symbol.
    pub fn build(&self, min_count: u64, smoothing: f64) -> Result<Prior> {
        if !smoothing.is_finite() || smoothing < 0.0 {
            return Err(EntropyError::InvalidArgument(format!(
                "smoothing must be a finite non-negative pseudo-count, not {smoothing}"
            )));
        }
        let mut stages = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            let weights: Vec<f64> = stage.unigram.iter().map(|&c| c as f64 + 0.5).collect();
            let total: f64 = weights.iter().sum();
            let fallback_freqs = quantize(&weights);
            let fallback =
                table_from_freqs(&fallback_freqs).map_err(EntropyError::InvalidArgument)?;
            let mut ids: Vec<u32> = if self.fallback_only {
                Vec::new()
            } else {
                stage
                    .contexts
                    .iter()
                    .filter(|(_, counts)| counts.iter().sum::<u64>() >= min_count.max(1))
                    .map(|(&id, _)| id)
                    .collect()
            };
            ids.sort_unstable();
            let num_contexts = stage.classes.num_contexts();
            let mut context_table = vec![u32::MAX; num_contexts];
            let mut tables: Vec<Table> = Vec::with_capacity(ids.len());
            for (t, id) in ids.iter().enumerate() {
                let counts = stage
                    .contexts
                    .get(id)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let weights: Vec<f64> = counts
                    .iter()
                    .zip(&weights)
                    .map(|(&c, &w)| c as f64 + smoothing * w / total)
                    .collect();
                tables.push(
                    table_from_freqs(&quantize(&weights)).map_err(EntropyError::InvalidArgument)?,
                );
                if let Some(slot) = context_table.get_mut(*id as usize) {
                    *slot = t as u32;
                }
            }
            stages.push(StagePrior {
                num_symbols: stage.num_symbols,
                classes: stage.classes.clone(),
                fallback,
                context_table,
                context_ids: ids,
                tables,
            });
        }
        Ok(Prior {
            model: PriorModel::Classes(stages),
        })
    }
}

/// Quantizes non-negative weights to frequencies >= 1 summing to 2^16: each
/// symbol gets 1 plus its share of the rest rounded down, and what rounding
/// leaves goes to the heaviest symbol.
pub(crate) fn quantize(weights: &[f64]) -> Vec<u32> {
    let total_freq: u64 = 1 << PRECISION;
    let k = weights.len() as u64;
    let free = total_freq.saturating_sub(k) as f64;
    let sum: f64 = weights.iter().filter(|w| w.is_finite() && **w > 0.0).sum();
    let mut freqs: Vec<u32> = weights
        .iter()
        .map(|&w| {
            let share = if sum > 0.0 && w.is_finite() && w > 0.0 {
                (free * (w / sum)).floor()
            } else {
                0.0
            };
            1 + share.clamp(0.0, free) as u32
        })
        .collect();
    let assigned: u64 = freqs.iter().map(|&f| u64::from(f)).sum();
    let heaviest = weights
        .iter()
        .enumerate()
        .fold(
            (0, f64::MIN),
            |best, (i, &w)| if w > best.1 { (i, w) } else { best },
        )
        .0;
    if let Some(f) = freqs.get_mut(heaviest) {
        let left = total_freq.saturating_sub(assigned);
        *f = f.saturating_add(left as u32);
    }
    freqs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_tables_are_valid() {
        for weights in [
            vec![1.0, 1.0],
            vec![0.0, 0.0, 0.0],
            vec![1e9, 1e-9, 0.0, 3.0],
            vec![f64::NAN, 1.0, f64::INFINITY],
            vec![1.0; 4096],
        ] {
            let freqs = quantize(&weights);
            assert_eq!(freqs.len(), weights.len());
            assert!(freqs.iter().all(|&f| f >= 1));
            assert_eq!(
                freqs.iter().map(|&f| u64::from(f)).sum::<u64>(),
                1 << PRECISION
            );
        }
        let freqs = quantize(&[99.0, 1.0]);
        assert!(freqs[0] > 64_000, "{freqs:?}");
    }

    #[test]
    fn class_maps_rank_by_frequency() {
        let grid = IndexGrid::new(3, 1, 1, 1, vec![2, 2, 1]).unwrap();
        let maps = PriorBuilder::class_maps_from_unigram(&[4], 3, &[grid]).unwrap();
        assert_eq!(maps, [vec![2, 1, 0, 2]]);
    }
}
