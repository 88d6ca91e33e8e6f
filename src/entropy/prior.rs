//! Context priors (spec sections "Contexts" and "Prior bytes"): per codebook
//! stage, a class map, integer frequency tables for the contexts seen in
//! training and a fallback table for the rest.
//!
//! Frequencies are fixed-point integers summing to `2^PRECISION`, every
//! symbol at least 1, so any index can be coded and decoding is bit-exact on
//! every platform.

use constriction::stream::model::{ContiguousCategoricalEntropyModel, EncoderModel};

use super::error::{EntropyError, Result};
use std::sync::Arc;

use super::learned::{Coded, LearnedStage, MAX_LEARNED_WEIGHTS, feature_sizes};
use super::{MAX_CLASSES, MAX_NUM_SYMBOLS, MAX_PRIOR_STAGES, MAX_TABLE_ENTRIES, PRECISION};
use crate::format::varint;

/// Magic bytes starting a serialized prior.
pub const PRIOR_MAGIC: [u8; 4] = *b"vqzp";
/// Version of the serialized layout of a class-context prior.
pub const PRIOR_VERSION: u8 = 1;
/// Version of the serialized layout of a learned-context prior.
pub const LEARNED_PRIOR_VERSION: u8 = 2;

/// One frequency table: a constriction model over the symbols in rotated
/// order, starting at the table's most frequent symbol (spec section
/// "Frequency tables"), so the likeliest symbol sits at cumulative 0.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) model: ContiguousCategoricalEntropyModel<u32, Vec<u32>, PRECISION>,
    /// The most frequent symbol (lowest index among ties).
    pub(crate) rotation: u16,
    pub(crate) num_symbols: u16,
}

impl Table {
    /// Position of `symbol` in the CDF.
    pub(crate) fn rotate(&self, symbol: u16) -> usize {
        let k = usize::from(self.num_symbols.max(1));
        (usize::from(symbol) + k - usize::from(self.rotation) % k) % k
    }

    /// Symbol at CDF position `position`.
    pub(crate) fn unrotate(&self, position: usize) -> u16 {
        let k = usize::from(self.num_symbols.max(1));
        ((position + usize::from(self.rotation)) % k) as u16
    }
}

/// The table of one position: one of a class-context prior's tables, or
/// one a learned prior built (shared with its cache).
pub(crate) enum TableRef<'p> {
    Borrowed(&'p Table),
    Shared(Arc<Coded>),
}

impl std::ops::Deref for TableRef<'_> {
    type Target = Table;

    fn deref(&self) -> &Table {
        match self {
            TableRef::Borrowed(t) => t,
            TableRef::Shared(c) => &c.table,
        }
    }
}

/// Builds a table from frequencies in symbol order, validating them.
pub(crate) fn table_from_freqs(freqs: &[u32]) -> std::result::Result<Table, String> {
    let total: u64 = freqs.iter().map(|&f| u64::from(f)).sum();
    if freqs.contains(&0) {
        return Err("a frequency of 0".into());
    }
    if total != 1u64 << PRECISION {
        return Err(format!("frequencies summing to {total}"));
    }
    let num_symbols = u16::try_from(freqs.len())
        .ok()
        .filter(|&k| (2..=MAX_NUM_SYMBOLS).contains(&k))
        .ok_or_else(|| format!("{} symbols", freqs.len()))?;
    let rotation = freqs
        .iter()
        .enumerate()
        .fold(
            (0usize, 0u32),
            |best, (i, &f)| if f > best.1 { (i, f) } else { best },
        )
        .0;
    let (tail, head) = freqs.split_at(rotation);
    let model = ContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(
        head.iter().chain(tail),
        false,
    )
    .map_err(|()| "frequencies the coder rejects".to_string())?;
    Ok(Table {
        model,
        rotation: rotation as u16,
        num_symbols,
    })
}

/// Frequency of `symbol` in `table` (0 when out of range).
pub(crate) fn freq(table: &Table, symbol: u16) -> u32 {
    if symbol >= table.num_symbols {
        return 0;
    }
    table
        .model
        .left_cumulative_and_probability(table.rotate(symbol))
        .map_or(0, |(_, p)| p.get())
}

/// The bits every symbol of `table` costs, `-log2(f / 2^PRECISION)`: the
/// code lengths the encoder's rate-distortion choices see, under either
/// kind of prior.
pub(crate) fn bit_lengths(table: &Table) -> Box<[f32]> {
    let scale = (PRECISION as f32).exp2();
    (0..table.num_symbols)
        .map(|k| -(freq(table, k).max(1) as f32 / scale).log2())
        .collect()
}

/// How one stage's indices fall into classes, which make up contexts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classes {
    pub(crate) num_classes: u8,
    /// Class of each symbol, `< num_classes`.
    pub(crate) class_of: Vec<u8>,
    /// Classes of the previous stage (1 for stage 0).
    pub(crate) prev_classes: u8,
}

impl Classes {
    /// Number of contexts: `(C + 1)^2 * P`.
    pub(crate) fn num_contexts(&self) -> usize {
        let edge = usize::from(self.num_classes) + 1;
        edge * edge * usize::from(self.prev_classes.max(1))
    }

    /// Class of `symbol`, or the edge class `C` when there is no neighbour.
    pub(crate) fn class(&self, symbol: Option<u16>) -> usize {
        symbol
            .and_then(|s| self.class_of.get(usize::from(s)))
            .map_or(usize::from(self.num_classes), |&c| usize::from(c))
    }

    /// Context id from the classes of the left and above neighbours (edge
    /// class `C` if absent) and the previous stage's class (0 at stage 0).
    pub(crate) fn context_id(&self, left: usize, above: usize, prev: usize) -> usize {
        let edge = usize::from(self.num_classes) + 1;
        (left * edge + above) * usize::from(self.prev_classes.max(1)) + prev
    }
}

/// The prior of one codebook stage.
#[derive(Debug, Clone)]
pub(crate) struct StagePrior {
    pub(crate) num_symbols: u16,
    pub(crate) classes: Classes,
    pub(crate) fallback: Table,
    /// Context id -> index into `tables`, `u32::MAX` for the fallback.
    pub(crate) context_table: Vec<u32>,
    /// Context ids with their own table, ascending (parallel to `tables`).
    pub(crate) context_ids: Vec<u32>,
    pub(crate) tables: Vec<Table>,
}

impl StagePrior {
    pub(crate) fn table(&self, context: usize) -> &Table {
        match self.context_table.get(context) {
            Some(&t) if t != u32::MAX => self.tables.get(t as usize).unwrap_or(&self.fallback),
            _ => &self.fallback,
        }
    }
}

/// A context prior over the codebook indices of every stage: it gives each
/// index a frequency table from the indices coded before it.
///
/// A **class-context** prior (version 1) chooses the table for the index at
/// (stage `s`, plane `p`, row `y`, column `x`) by its context: the classes
/// of its left and above neighbours (or an edge class) and, for `s > 0`, the
/// class of the stage `s - 1` index at the same place. Contexts without a
/// table of their own use the stage's fallback table.
///
/// A **learned-context** prior (version 2) computes the table with a small
/// integer network from a wider neighbourhood in the same stage and every
/// earlier stage (see [`LearnedStage`]).
#[derive(Debug, Clone)]
pub struct Prior {
    pub(crate) model: PriorModel,
}

/// The two kinds of prior.
#[derive(Debug, Clone)]
pub(crate) enum PriorModel {
    Classes(Vec<StagePrior>),
    Learned(Vec<LearnedStage>),
}

impl Prior {
    /// A learned-context prior of `stages` (stage `s` built for the
    /// codebook sizes of stages `0..=s`).
    pub fn learned(stages: Vec<LearnedStage>) -> Result<Self> {
        if !(1..=usize::from(MAX_PRIOR_STAGES)).contains(&stages.len()) {
            return Err(EntropyError::InvalidArgument(format!(
                "{} stages (1..=8)",
                stages.len()
            )));
        }
        // Stage s must have been built for stage s and for the codebook
        // sizes of the stages before it: its features depend on them.
        let ks: Vec<u16> = stages.iter().map(LearnedStage::num_symbols).collect();
        for (s, stage) in stages.iter().enumerate() {
            if stage.stage() != s || stage.feature_sizes() != feature_sizes(s, &ks) {
                return Err(EntropyError::InvalidArgument(format!(
                    "learned stage {s} was built for stage {} or for other codebook sizes",
                    stage.stage()
                )));
            }
        }
        let weights: u64 = stages.iter().map(|s| s.num_weights() as u64).sum();
        if weights > MAX_LEARNED_WEIGHTS {
            return Err(EntropyError::LimitExceeded {
                what: "weights in a learned prior",
                found: weights,
                limit: MAX_LEARNED_WEIGHTS,
            });
        }
        Ok(Self {
            model: PriorModel::Learned(stages),
        })
    }

    /// Serialized version: 1 (class contexts) or 2 (learned contexts).
    pub fn version(&self) -> u8 {
        match &self.model {
            PriorModel::Classes(_) => PRIOR_VERSION,
            PriorModel::Learned(_) => LEARNED_PRIOR_VERSION,
        }
    }

    /// The stages of a class-context prior.
    pub(crate) fn class_stages(&self) -> Option<&[StagePrior]> {
        match &self.model {
            PriorModel::Classes(s) => Some(s),
            PriorModel::Learned(_) => None,
        }
    }

    /// The stages of a learned-context prior.
    pub fn learned_stages(&self) -> Option<&[LearnedStage]> {
        match &self.model {
            PriorModel::Classes(_) => None,
            PriorModel::Learned(s) => Some(s),
        }
    }

    /// Multiply-adds (or their equal in time) decoding one index of stage
    /// `stage` can take at most: its table (a learned stage's network pass
    /// when the table is not cached; nothing for class contexts, whose
    /// tables are built on load), plus a small-state ANS step (spec section
    /// 9.1), a search over the stage's `K` frequencies.
    pub fn work_per_index(&self, stage: usize) -> u64 {
        let table = match &self.model {
            PriorModel::Classes(_) => 0,
            PriorModel::Learned(s) => s.get(stage).map_or(0, |s| s.work_per_index() as u64),
        };
        let k = u8::try_from(stage)
            .ok()
            .and_then(|s| self.num_symbols(s))
            .map_or(0, u64::from);
        table + k * super::ans::SMALL_STEP_WORK_PER_SYMBOL
    }

    /// Number of stages modelled.
    pub fn num_stages(&self) -> u8 {
        match &self.model {
            PriorModel::Classes(s) => s.len() as u8,
            PriorModel::Learned(s) => s.len() as u8,
        }
    }

    /// Codebook size of `stage` (`None` past the last stage).
    pub fn num_symbols(&self, stage: u8) -> Option<u16> {
        let s = usize::from(stage);
        match &self.model {
            PriorModel::Classes(st) => st.get(s).map(|s| s.num_symbols),
            PriorModel::Learned(st) => st.get(s).map(|s| s.num_symbols()),
        }
    }

    /// Codebook sizes of the first `stages` stages (fewer if the prior has
    /// fewer).
    pub(crate) fn symbol_counts(&self, stages: u8) -> Vec<u16> {
        (0..stages).map_while(|s| self.num_symbols(s)).collect()
    }

    /// Classes of `stage` (`None` for a learned prior).
    pub fn num_classes(&self, stage: u8) -> Option<u8> {
        self.class_stages()?
            .get(usize::from(stage))
            .map(|s| s.classes.num_classes)
    }

    /// Contexts of `stage` that have a table of their own (`None` for a
    /// learned prior).
    pub fn num_context_tables(&self, stage: u8) -> Option<usize> {
        self.class_stages()?
            .get(usize::from(stage))
            .map(|s| s.tables.len())
    }

    /// A prior with one uniform-ish table per stage and no contexts: every
    /// index costs about `log2 K` bits. Useful before a prior is trained.
    pub fn uniform(num_symbols: &[u16]) -> Result<Self> {
        let mut builder = super::PriorBuilder::new(
            num_symbols,
            num_symbols
                .iter()
                .map(|&k| vec![0; usize::from(k)])
                .collect(),
            1,
        )?;
        builder.set_fallback_only(true);
        builder.build(u64::MAX, 1.0)
    }

    /// The prior's bytes (spec section "Prior bytes").
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&PRIOR_MAGIC);
        out.push(self.version());
        out.push(PRECISION as u8);
        out.push(self.num_stages());
        let stages = match &self.model {
            PriorModel::Classes(stages) => stages,
            PriorModel::Learned(stages) => {
                for stage in stages {
                    stage.write(&mut out);
                }
                &Vec::new()
            }
        };
        for stage in stages {
            varint::encode(u64::from(stage.num_symbols), &mut out);
            out.push(stage.classes.num_classes);
            out.extend_from_slice(&stage.classes.class_of);
            varint::encode(stage.tables.len() as u64, &mut out);
            write_table(&stage.fallback, stage.num_symbols, &mut out);
            for (id, table) in stage.context_ids.iter().zip(&stage.tables) {
                varint::encode(u64::from(*id), &mut out);
                write_table(table, stage.num_symbols, &mut out);
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and validates prior bytes. Hostile bytes give an error; every
    /// allocation is bounded by the limits in the spec and by the input length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let body_len = bytes.len().checked_sub(4).ok_or_else(|| {
            bad(
                bytes.len(),
                "length",
                "at least 4 bytes",
                bytes.len().to_string(),
            )
        })?;
        let (body, crc_bytes) = bytes.split_at(body_len);
        let mut cursor = Cursor {
            bytes: body,
            pos: 0,
        };
        let magic = cursor.take(4, "magic")?;
        if magic != PRIOR_MAGIC {
            return Err(bad(0, "magic", "\"vqzp\"", format!("{magic:02x?}")));
        }
        let version = cursor.u8("version")?;
        if version != PRIOR_VERSION && version != LEARNED_PRIOR_VERSION {
            return Err(bad(4, "version", "1 or 2", version.to_string()));
        }
        let precision = cursor.u8("precision")?;
        if u32::from(precision) != PRECISION as u32 {
            return Err(bad(5, "precision", "16", precision.to_string()));
        }
        let num_stages = cursor.u8("stage count")?;
        if !(1..=MAX_PRIOR_STAGES).contains(&num_stages) {
            return Err(bad(6, "stage count", "1..=8", num_stages.to_string()));
        }
        let stored_crc = u32::from_le_bytes(
            crc_bytes
                .try_into()
                .map_err(|_| bad(body_len, "CRC-32", "4 bytes", "fewer".into()))?,
        );
        let computed = crc32fast::hash(body);
        if stored_crc != computed {
            return Err(bad(
                body_len,
                "CRC-32",
                format!("{computed:#010x} (computed)"),
                format!("{stored_crc:#010x}"),
            ));
        }
        let model = if version == PRIOR_VERSION {
            let mut stages: Vec<StagePrior> = Vec::with_capacity(usize::from(num_stages));
            let mut entries_left = MAX_TABLE_ENTRIES;
            for _ in 0..num_stages {
                let prev_classes = stages.last().map_or(1, |s| s.classes.num_classes);
                let stage = read_stage(&mut cursor, prev_classes, &mut entries_left)?;
                stages.push(stage);
            }
            PriorModel::Classes(stages)
        } else {
            let mut stages = Vec::with_capacity(usize::from(num_stages));
            let mut num_symbols = Vec::with_capacity(usize::from(num_stages));
            let mut weights_left = MAX_LEARNED_WEIGHTS;
            for s in 0..usize::from(num_stages) {
                stages.push(LearnedStage::read(
                    &mut cursor,
                    s,
                    &mut num_symbols,
                    &mut weights_left,
                )?);
            }
            PriorModel::Learned(stages)
        };
        if cursor.pos != body.len() {
            return Err(bad(
                cursor.pos,
                "end of prior",
                "the CRC-32 right after the last stage",
                format!("{} extra bytes", body.len() - cursor.pos),
            ));
        }
        Ok(Self { model })
    }
}

fn write_table(table: &Table, num_symbols: u16, out: &mut Vec<u8>) {
    for symbol in 0..num_symbols {
        varint::encode(u64::from(freq(table, symbol).saturating_sub(1)), out);
    }
}

pub(crate) fn bad(
    offset: usize,
    field: &'static str,
    expected: impl Into<String>,
    found: String,
) -> EntropyError {
    EntropyError::BadPrior {
        offset,
        field,
        expected: expected.into(),
        found,
    }
}

pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n);
        let slice = end
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or_else(|| {
                bad(
                    self.pos,
                    field,
                    format!("{n} more bytes"),
                    format!("{} bytes", self.remaining()),
                )
            })?;
        self.pos += n;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.take(1, field)?.first().copied().unwrap_or(0))
    }

    /// A stage's codebook size `K`: a varint in 2..=4096.
    pub(crate) fn num_symbols(&mut self) -> Result<u16> {
        let offset = self.pos;
        let k = self.varint("codebook size")?;
        u16::try_from(k)
            .ok()
            .filter(|k| (2..=MAX_NUM_SYMBOLS).contains(k))
            .ok_or_else(|| bad(offset, "codebook size", "2..=4096", k.to_string()))
    }

    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u32> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let (value, len) = varint::decode_u32(rest)
            .map_err(|e| bad(self.pos, field, "a canonical 32-bit varint", e.to_string()))?;
        self.pos += len;
        Ok(value)
    }
}

fn read_table(cursor: &mut Cursor<'_>, num_symbols: u16) -> Result<Table> {
    let start = cursor.pos;
    let mut freqs = Vec::with_capacity(usize::from(num_symbols));
    for _ in 0..num_symbols {
        let f = cursor.varint("frequency")?;
        if f >= 1 << PRECISION {
            return Err(bad(start, "frequency", "below 2^16", f.to_string()));
        }
        freqs.push(f + 1);
    }
    table_from_freqs(&freqs).map_err(|found| {
        bad(
            start,
            "frequency table",
            "frequencies >= 1 summing to 2^16",
            found,
        )
    })
}

fn read_stage(
    cursor: &mut Cursor<'_>,
    prev_classes: u8,
    entries_left: &mut u64,
) -> Result<StagePrior> {
    let num_symbols = cursor.num_symbols()?;
    let c_offset = cursor.pos;
    let num_classes = cursor.u8("class count")?;
    if !(1..=MAX_CLASSES).contains(&num_classes) {
        return Err(bad(
            c_offset,
            "class count",
            "1..=32",
            num_classes.to_string(),
        ));
    }
    let map_offset = cursor.pos;
    let class_of = cursor.take(usize::from(num_symbols), "class map")?.to_vec();
    if let Some((i, &c)) = class_of
        .iter()
        .enumerate()
        .find(|&(_, &c)| c >= num_classes)
    {
        return Err(bad(
            map_offset + i,
            "class map",
            format!("a class below {num_classes}"),
            c.to_string(),
        ));
    }
    let classes = Classes {
        num_classes,
        class_of,
        prev_classes,
    };
    let num_contexts = classes.num_contexts();
    let t_offset = cursor.pos;
    let num_tables = cursor.varint("table count")? as usize;
    if num_tables > num_contexts {
        return Err(bad(
            t_offset,
            "table count",
            format!("at most {num_contexts} (the contexts of this stage)"),
            num_tables.to_string(),
        ));
    }
    let entries = (num_tables as u64 + 1) * u64::from(num_symbols);
    if entries > *entries_left {
        return Err(EntropyError::LimitExceeded {
            what: "frequency table entries in a prior",
            found: MAX_TABLE_ENTRIES - *entries_left + entries,
            limit: MAX_TABLE_ENTRIES,
        });
    }
    // Each table entry takes at least one byte: a short input cannot ask for
    // more tables than it holds.
    if entries > cursor.remaining() as u64 {
        return Err(bad(
            t_offset,
            "table count",
            format!("at most {} bytes of tables", cursor.remaining()),
            format!("{num_tables} tables of {num_symbols} entries"),
        ));
    }
    *entries_left -= entries;
    let fallback = read_table(cursor, num_symbols)?;
    let mut context_table = vec![u32::MAX; num_contexts];
    let mut context_ids = Vec::with_capacity(num_tables);
    let mut tables = Vec::with_capacity(num_tables);
    for t in 0..num_tables {
        let id_offset = cursor.pos;
        let id = cursor.varint("context id")?;
        let after_previous = context_ids.last().map_or(0, |&last: &u32| last + 1);
        if id < after_previous || id as usize >= num_contexts {
            return Err(bad(
                id_offset,
                "context id",
                format!("ascending ids in {after_previous}..{num_contexts}"),
                id.to_string(),
            ));
        }
        if let Some(slot) = context_table.get_mut(id as usize) {
            *slot = t as u32;
        }
        context_ids.push(id);
        tables.push(read_table(cursor, num_symbols)?);
    }
    Ok(StagePrior {
        num_symbols,
        classes,
        fallback,
        context_table,
        context_ids,
        tables,
    })
}
