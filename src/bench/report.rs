//! The bench's results: one row per codec setting, the headline (bytes each
//! classical codec needs for vqz's PSNR), and their Markdown and CSV forms.

use std::fmt::Write as _;

use super::{Distortion, EXACT_IMAGE_PSNR_DB};

/// How a row's images per second were measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Many images through the network at once, in one process.
    Batched,
    /// One library call per image, in this process, images spread over
    /// the cores.
    InProcess,
    /// One encoder and one decoder process per image (spawn included),
    /// two at a time per core.
    Spawned,
}

impl Timing {
    pub fn label(self) -> &'static str {
        match self {
            Timing::Batched => "batched",
            Timing::InProcess => "in-process",
            Timing::Spawned => "process per image",
        }
    }
}

/// One codec at one setting, over the same images.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// "vqz", "vqz stream", "PNG", "JPEG", "WebP", ...
    pub codec: String,
    /// "level 2", "q=75", "lossless", ...
    pub setting: String,
    pub images: usize,
    /// Mean bytes of one image's file (for "vqz stream": the stream's
    /// bytes divided by the images in it).
    pub bytes_per_image: f64,
    /// vqz only: mean bytes of the entropy-coded payload alone.
    pub payload_bytes_per_image: Option<f64>,
    /// Mean over images of the per-image MSE (8-bit samples).
    pub mean_mse: f64,
    /// Mean over images of per-image PSNR, an exact image counting as
    /// [`EXACT_IMAGE_PSNR_DB`].
    pub mean_psnr_db: f64,
    /// Images that came back exactly.
    pub exact_images: usize,
    pub encode_images_per_s: f64,
    pub decode_images_per_s: f64,
    pub timing: Timing,
}

impl Row {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn measured(
        codec: &str,
        setting: &str,
        images: usize,
        total_bytes: usize,
        payload_bytes: Option<usize>,
        distortion: &Distortion,
        encode_images_per_s: f64,
        decode_images_per_s: f64,
        timing: Timing,
    ) -> Self {
        let per = |b: usize| b as f64 / images.max(1) as f64;
        Self {
            codec: codec.into(),
            setting: setting.into(),
            images,
            bytes_per_image: per(total_bytes),
            payload_bytes_per_image: payload_bytes.map(per),
            mean_mse: distortion.mean_mse(),
            mean_psnr_db: distortion.mean_psnr_db(),
            exact_images: distortion.exact,
            encode_images_per_s,
            decode_images_per_s,
            timing,
        }
    }

    pub fn bits_per_image(&self) -> f64 {
        self.bytes_per_image * 8.0
    }

    /// PSNR (peak 255) of the mean MSE; infinite when lossless.
    pub fn psnr_db(&self) -> f64 {
        crate::codec::psnr_db_from_mse(self.mean_mse)
    }

    /// Every image came back exactly.
    pub fn lossless(&self) -> bool {
        self.exact_images == self.images
    }

    fn is_vqz(&self) -> bool {
        self.codec.starts_with("vqz")
    }
}

/// For one vqz level: what each classical codec needs for the same PSNR.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    pub level: String,
    pub vqz_bytes_per_image: f64,
    pub vqz_psnr_db: f64,
    /// One cell per classical codec, in [`BenchReport::classical_codecs`] order.
    pub cells: Vec<HeadlineCell>,
}

impl Headline {
    /// The classical codec needing the fewest bytes per image at this PSNR:
    /// its index in [`Headline::cells`] and its bytes.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.cells
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.bytes_per_image().map(|b| (i, b)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// A classical codec's bytes per image at a given PSNR.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeadlineCell {
    /// Interpolated linearly in PSNR between two of its settings (or one
    /// setting hit exactly).
    Interpolated(f64),
    /// A lossless codec: its size reaches every PSNR.
    Lossless(f64),
    /// The PSNR is below that of its lowest setting: its smallest file that
    /// reaches at least the PSNR, and the PSNR that file has. The codec
    /// cannot make smaller files, so this is what it needs.
    Floor { bytes: f64, psnr_db: f64 },
    /// The PSNR is above the range of its settings.
    NotReached,
}

impl HeadlineCell {
    pub fn bytes_per_image(self) -> Option<f64> {
        match self {
            HeadlineCell::Interpolated(b)
            | HeadlineCell::Lossless(b)
            | HeadlineCell::Floor { bytes: b, .. } => Some(b),
            HeadlineCell::NotReached => None,
        }
    }
}

/// All rows of a bench run, with how they were measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub rows: Vec<Row>,
    pub images: usize,
    /// Images the external tools ran on, when any ran.
    pub external_images: Option<usize>,
    pub repeats: usize,
    pub cores: usize,
    /// Skipped codecs and other remarks.
    pub notes: Vec<String>,
    pub headline: Vec<Headline>,
}

impl BenchReport {
    pub(crate) fn new(
        rows: Vec<Row>,
        images: usize,
        external_images: Option<usize>,
        repeats: usize,
        notes: Vec<String>,
        max_level: u8,
    ) -> Self {
        let mut report = Self {
            rows,
            images,
            external_images,
            repeats,
            cores: super::cores(),
            notes,
            headline: Vec::new(),
        };
        report.headline = (1..=max_level)
            .filter_map(|l| report.headline_for(&format!("level {l}")))
            .collect();
        report
    }

    /// Codec names other than vqz, in the order they were measured.
    pub fn classical_codecs(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for r in self.rows.iter().filter(|r| !r.is_vqz()) {
            if !names.contains(&r.codec.as_str()) {
                names.push(&r.codec);
            }
        }
        names
    }

    /// The rows of one codec, in the order they were measured.
    pub fn codec_rows<'a>(&'a self, codec: &'a str) -> impl Iterator<Item = &'a Row> + 'a {
        self.rows.iter().filter(move |r| r.codec == codec)
    }

    fn headline_for(&self, level: &str) -> Option<Headline> {
        let vqz = self
            .rows
            .iter()
            .find(|r| r.codec == "vqz" && r.setting == level)?;
        let psnr = vqz.psnr_db();
        let cells = self
            .classical_codecs()
            .into_iter()
            .map(|c| bytes_at_psnr(self.codec_rows(c), psnr))
            .collect();
        Some(Headline {
            level: level.into(),
            vqz_bytes_per_image: vqz.bytes_per_image,
            vqz_psnr_db: psnr,
            cells,
        })
    }

    /// The whole report as Markdown: headline, every row, how it was measured.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# vqz bench\n\n{} images, each coded as its own file{}; {} timed runs, median; {} CPU cores.\n",
            self.images,
            match self.external_images {
                Some(n) if n < self.images => format!(
                    " (WebP, AVIF and JPEG XL: the first {n} of them only, as one process per image is slow)"
                ),
                _ => String::new(),
            },
            self.repeats,
            self.cores,
        );
        let classical = self.classical_codecs();
        if !self.headline.is_empty() && !classical.is_empty() {
            let _ = writeln!(
                s,
                "## Bytes per image at vqz's PSNR\n\n\
                 For each vqz level, the bytes per image each other codec needs for the same PSNR \
                 (of the mean MSE), interpolated linearly in PSNR between its two nearest settings. \
                 Below a codec's lowest setting, its smallest file that still reaches the PSNR \
                 (marked with the PSNR it has): the codec makes nothing smaller. \"not reached\": \
                 the PSNR is above its settings' range. Lossless codecs reach every PSNR at their \
                 one size. In brackets: vqz's size as a fraction of it. \"best\" is the classical \
                 codec needing the fewest bytes at that level's PSNR.\n"
            );
            let _ = write!(s, "| vqz | bytes | PSNR dB | best classical | vqz / best |");
            for c in &classical {
                let _ = write!(s, " {c} |");
            }
            let _ = write!(s, "\n|---|---:|---:|---|---:|");
            for _ in &classical {
                let _ = write!(s, "---:|");
            }
            s.push('\n');
            for h in &self.headline {
                let _ = write!(
                    s,
                    "| {} | {:.1} | {:.2} |",
                    h.level, h.vqz_bytes_per_image, h.vqz_psnr_db
                );
                match h.best() {
                    Some((i, b)) => {
                        let _ = write!(
                            s,
                            " {} ({b:.1}) | {:.2}x |",
                            classical.get(i).copied().unwrap_or("?"),
                            h.vqz_bytes_per_image / b
                        );
                    }
                    None => s.push_str(" - | - |"),
                }
                for cell in &h.cells {
                    let ratio = |b: f64| h.vqz_bytes_per_image / b;
                    let _ = match *cell {
                        HeadlineCell::Floor { bytes, psnr_db } => {
                            write!(s, " {bytes:.1} ({:.2}x) at {psnr_db:.2} dB |", ratio(bytes))
                        }
                        HeadlineCell::Interpolated(b) | HeadlineCell::Lossless(b) => {
                            write!(s, " {b:.1} ({:.2}x) |", ratio(b))
                        }
                        HeadlineCell::NotReached => write!(s, " not reached |"),
                    };
                }
                s.push('\n');
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "## Every setting\n\n\
             | codec | setting | bytes/image | payload bytes | bits/image | PSNR dB (mean MSE) | mean PSNR dB | encode img/s | decode img/s | timing |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in &self.rows {
            let payload = r
                .payload_bytes_per_image
                .map_or_else(|| "-".to_string(), |p| format!("{p:.1}"));
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {} | {:.0} | {} | {} | {:.0} | {:.0} | {} |",
                r.codec,
                r.setting,
                r.bytes_per_image,
                payload,
                r.bits_per_image(),
                psnr_text(r.psnr_db()),
                if r.lossless() {
                    "lossless".to_string()
                } else {
                    format!("{:.2}", r.mean_psnr_db)
                },
                r.encode_images_per_s,
                r.decode_images_per_s,
                r.timing.label(),
            );
        }
        let _ = writeln!(
            s,
            "\n## How this was measured\n\n\
             - Every file is decoded and PSNR (peak 255) is computed on the decoded pixels. \
             \"PSNR (mean MSE)\" is the PSNR of the MSE averaged over images; \"mean PSNR\" is the \
             average of per-image PSNR, an exactly reproduced image counting as {EXACT_IMAGE_PSNR_DB:.0} dB. \
             \"lossless\": every image came back exactly (infinite PSNR).\n\
             - vqz: bytes are those of a complete one-image `.vqz` file; \"payload bytes\" is the \
             entropy-coded indices alone. \"vqz stream\" is all images in one multi-frame stream; \
             its bytes per image is the stream's size over the image count, so the difference to \
             \"vqz\" is the per-file overhead.\n\
             - vqz timing (batched): encoding sends the images through the network in batches \
             (as `vqz compress` does with many inputs) and writes each frame out as its own file; \
             decoding decodes each file on its own (network batch of 1), files spread over the cores. \
             The stream row decodes the stream in batches. The first timed run covers all images, \
             further runs the first {vqz_timing_images}.\n\
             - PNG and JPEG (image crate, in-process): one encode and one decode call per image, \
             images spread over the cores.\n\
             - WebP, AVIF, JPEG XL (process per image): the reference command-line tools, one \
             encoder process and one decoder process per image from and to PNG files in a \
             temporary folder, as many at once as there are cores. Process start-up dominates \
             their images per second; the library would be much faster. Their first timed run \
             covers all their images, further runs the first {timing_images}.\n\
             - Images per second are medians of the timed runs (each run's images over its time), in one process.",
            timing_images = super::external::TIMING_IMAGES,
            vqz_timing_images = super::learned::TIMING_IMAGES,
        );
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// Every row as CSV, with a header line. Lossless PSNR is `inf`.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "codec,setting,images,bytes_per_image,payload_bytes_per_image,bits_per_image,psnr_mean_mse_db,mean_psnr_db,exact_images,encode_images_per_s,decode_images_per_s,timing\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{},{},{},{:.3},{},{:.3},{},{:.4},{},{:.2},{:.2},{}",
                r.codec,
                r.setting,
                r.images,
                r.bytes_per_image,
                r.payload_bytes_per_image
                    .map_or_else(String::new, |p| format!("{p:.3}")),
                r.bits_per_image(),
                if r.psnr_db().is_finite() {
                    format!("{:.4}", r.psnr_db())
                } else {
                    "inf".into()
                },
                r.mean_psnr_db,
                r.exact_images,
                r.encode_images_per_s,
                r.decode_images_per_s,
                r.timing.label(),
            );
        }
        s
    }
}

fn psnr_text(db: f64) -> String {
    if db.is_finite() {
        format!("{db:.2}")
    } else {
        "lossless".into()
    }
}

/// Bytes per image a codec needs for `psnr_db`: interpolated linearly in
/// PSNR between the two settings around it.
fn bytes_at_psnr<'a>(rows: impl Iterator<Item = &'a Row>, psnr_db: f64) -> HeadlineCell {
    let rows: Vec<&Row> = rows.collect();
    if let Some(best) = rows
        .iter()
        .filter(|r| r.lossless())
        .map(|r| r.bytes_per_image)
        .min_by(f64::total_cmp)
    {
        return HeadlineCell::Lossless(best);
    }
    let mut points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.psnr_db(), r.bytes_per_image))
        .filter(|(p, _)| p.is_finite())
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in points.windows(2) {
        let ((p0, b0), (p1, b1)) = (pair[0], pair[1]);
        if (p0..=p1).contains(&psnr_db) {
            let t = if p1 > p0 {
                (psnr_db - p0) / (p1 - p0)
            } else {
                0.0
            };
            return HeadlineCell::Interpolated(b0 + t * (b1 - b0));
        }
    }
    match points.as_slice() {
        [(p, b)] if *p == psnr_db => HeadlineCell::Interpolated(*b),
        [(lowest, _), ..] if psnr_db < *lowest => points
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(HeadlineCell::NotReached, |&(p, b)| HeadlineCell::Floor {
                bytes: b,
                psnr_db: p,
            }),
        _ => HeadlineCell::NotReached,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(codec: &str, bytes: f64, mse: f64) -> Row {
        Row {
            codec: codec.into(),
            setting: String::new(),
            images: 1,
            bytes_per_image: bytes,
            payload_bytes_per_image: None,
            mean_mse: mse,
            mean_psnr_db: 0.0,
            exact_images: usize::from(mse == 0.0),
            encode_images_per_s: 1.0,
            decode_images_per_s: 1.0,
            timing: Timing::InProcess,
        }
    }

    fn mse_at(db: f64) -> f64 {
        255.0 * 255.0 / 10f64.powf(db / 10.0)
    }

    #[test]
    fn interpolates_between_settings() {
        let rows = [row("J", 100.0, mse_at(20.0)), row("J", 200.0, mse_at(30.0))];
        match bytes_at_psnr(rows.iter(), 25.0) {
            HeadlineCell::Interpolated(b) => assert!((b - 150.0).abs() < 1e-6),
            other => panic!("{other:?}"),
        }
        assert_eq!(bytes_at_psnr(rows.iter(), 31.0), HeadlineCell::NotReached);
    }

    #[test]
    fn below_the_lowest_setting_takes_the_smallest_file() {
        let rows = [
            row("W", 96.0, mse_at(22.7)),
            row("W", 90.0, mse_at(23.5)),
            row("W", 140.0, mse_at(28.0)),
        ];
        assert_eq!(
            bytes_at_psnr(rows.iter(), 19.0),
            HeadlineCell::Floor {
                bytes: 90.0,
                psnr_db: 23.5
            }
        );
    }

    #[test]
    fn lossless_reaches_every_psnr() {
        let rows = [row("P", 274.0, 0.0)];
        assert_eq!(
            bytes_at_psnr(rows.iter(), 50.0),
            HeadlineCell::Lossless(274.0)
        );
    }
}
