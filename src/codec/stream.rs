//! Streaming encoder and decoder: many images in one `.vqz` stream over any
//! `Write` / `Read`, like flate2's adapters.

use std::borrow::Cow;
use std::io::{Read, Write};

use image::DynamicImage;

use crate::format::{FileHeader, Frame, Geometry, Limits, Reader, Writer};
use crate::model::model_sha256;

use super::batch::{EncodedFrame, decode_frames, encode_images};
use super::model::hex;
use super::{CodecError, CompressOptions, Model};

/// Size of the one-frame file [`compress`](super::compress) would write for
/// this frame, measured by writing it into a scratch stream.
fn standalone_size(model: &Model, embed: bool, f: &EncodedFrame) -> usize {
    let header = FileHeader::new(model.id(), f.geometry, model.grid_stride_log2());
    let embedded = if embed { Some(model.bytes()) } else { None };
    let Ok(w) = Writer::new(Vec::new(), &header, embedded) else {
        return usize::MAX;
    };
    w.finish_with_frame(f.coding_mode, f.level, f.geometry, &f.payload)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

/// What one written frame cost, and whether it meets the quality asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameSummary {
    pub level: u8,
    pub coding_mode: crate::format::CodingMode,
    pub payload_bytes: usize,
    /// Bytes the frame adds to the stream (header, payload, CRC) if another
    /// frame follows it.
    pub frame_bytes: u64,
    /// Bytes it adds as the stream's final frame, which stores no payload
    /// length. For an image of the stream's default geometry, a one-image
    /// file without an embedded model is the stream's file header and this.
    pub final_frame_bytes: u64,
    /// Whether the frame meets the quality asked for: false where no level
    /// reaches [`Quality::TargetPsnr`](super::Quality::TargetPsnr) (the
    /// frame has the highest level) or fits
    /// [`Quality::MaxBytes`](super::Quality::MaxBytes) (it has level 1).
    pub meets_quality: bool,
}

/// Writes images into one `.vqz` stream. The file header is written with
/// the first image, whose size becomes the stream's default geometry.
///
/// The encoder holds the most recent frame back (one frame in memory) and
/// writes it when the next image arrives, so that [`finish`](Self::finish)
/// can write it as the stream's final frame: every stream it writes, of one
/// image or many, ends with a final frame rather than an end marker. Until
/// `finish`, the inner writer has every frame but the last.
pub struct Encoder<'m, W: Write> {
    model: &'m Model,
    options: CompressOptions,
    pending: Option<W>,
    writer: Option<Writer<W>>,
    /// The latest frame, not yet written.
    held: Option<EncodedFrame>,
}

impl<'m, W: Write> Encoder<'m, W> {
    pub fn new(inner: W, model: &'m Model, options: CompressOptions) -> Self {
        Self {
            model,
            options,
            pending: Some(inner),
            writer: None,
            held: None,
        }
    }

    /// Refuses, before any work, to embed a model too large for a section.
    fn check_embeddable(&self) -> Result<(), CodecError> {
        let most = Limits::DEFAULT.max_section_len as usize;
        if self.options.embed_model && self.model.bytes().len() > most {
            return Err(CodecError::BadModel(format!(
                "the model file is {} bytes; a model embedded in a stream may be at most {most} \
                 bytes (the container's section limit), so this one must be given to the \
                 decoder separately",
                self.model.bytes().len()
            )));
        }
        Ok(())
    }

    /// Writes the file header, with `geometry` as the default, unless written.
    fn open(&mut self, geometry: Geometry) -> Result<(), CodecError> {
        if self.writer.is_none() {
            let inner = self
                .pending
                .take()
                .ok_or_else(|| CodecError::Internal("encoder used after an error".into()))?;
            let header = FileHeader::new(self.model.id(), geometry, self.model.grid_stride_log2());
            let embedded = self.options.embed_model.then(|| self.model.bytes());
            self.writer = Some(Writer::new(inner, &header, embedded)?);
        }
        Ok(())
    }

    /// Encodes and appends one image.
    pub fn write_image(&mut self, image: &DynamicImage) -> Result<FrameSummary, CodecError> {
        let mut s = self.write_images(std::slice::from_ref(image))?;
        s.pop()
            .ok_or_else(|| CodecError::Internal("no frame written".into()))
    }

    /// Encodes a batch of images together (faster than one at a time) and
    /// appends them in order (the last one is held back until the next image
    /// or [`finish`](Self::finish)).
    pub fn write_images(
        &mut self,
        images: &[DynamicImage],
    ) -> Result<Vec<FrameSummary>, CodecError> {
        if self.writer.is_none() {
            self.check_embeddable()?;
        }
        let (model, embed) = (self.model, self.options.embed_model);
        let frames = encode_images(
            model,
            images,
            self.options.quality,
            self.options.refine_steps,
            &|f| standalone_size(model, embed, f),
        )?;
        let mut out = Vec::with_capacity(frames.len());
        for (f, _, meets_quality) in frames {
            self.open(f.geometry)?;
            let w = self
                .writer
                .as_mut()
                .ok_or_else(|| CodecError::Internal("no writer".into()))?;
            // Checked now, so a bad frame is reported with its own image.
            let frame_bytes =
                w.check_frame(f.coding_mode, f.level, f.geometry, &f.payload, false)?;
            let final_frame_bytes =
                w.check_frame(f.coding_mode, f.level, f.geometry, &f.payload, true)?;
            if let Some(h) = self.held.take() {
                w.write_frame(h.coding_mode, h.level, h.geometry, &h.payload)?;
            }
            out.push(FrameSummary {
                level: f.level,
                coding_mode: f.coding_mode,
                payload_bytes: f.payload.len(),
                frame_bytes,
                final_frame_bytes,
                meets_quality,
            });
            self.held = Some(f);
        }
        Ok(out)
    }

    /// Ends the stream and returns the inner writer: the held-back frame is
    /// written as the final frame; a stream with no image ends with the end
    /// marker, after a header with a 4x4 grey default geometry.
    pub fn finish(mut self) -> Result<W, CodecError> {
        let fallback = Geometry {
            width: 4,
            height: 4,
            channels: 1,
        };
        if self.writer.is_none() {
            self.check_embeddable()?;
        }
        self.open(fallback)?;
        let w = self
            .writer
            .take()
            .ok_or_else(|| CodecError::Internal("no writer".into()))?;
        Ok(match self.held.take() {
            Some(h) => w.finish_with_frame(h.coding_mode, h.level, h.geometry, &h.payload)?,
            None => w.finish()?,
        })
    }
}

/// One decoded image of a stream.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// Frame number in the stream, from 0.
    pub number: u64,
    pub level: u8,
    pub image: DynamicImage,
}

enum ModelRef<'m> {
    Given(&'m Model),
    Embedded(Box<Model>),
}

/// Samples (pixels x channels) of decoded images [`Decoder::next_batch`]
/// holds at most, but for its last image: a few small frames' worth of
/// bytes can declare images of any size, so a batch is bounded by what it
/// decodes to, not by its frame count alone.
pub const DECODE_BATCH_SAMPLES: usize = 1 << 20;

/// Samples (pixels x channels) a [`Decoder`] decodes from one stream, all
/// images together, besides [`SAMPLES_PER_FRAME_BYTE`] per byte of the
/// stream's frames, unless told otherwise ([`Decoder::with_max_samples`]):
/// 2^28, 256 MiB of 8-bit samples: four times the largest frame the
/// default [`Limits`] allow at grid stride 4 (2^22 cells of 16 pixels).
pub const DEFAULT_MAX_STREAM_SAMPLES: u64 = 1 << 28;

/// Samples a [`Decoder`]'s sample budget grows by per byte of frames it
/// has read, so that a stream of real images, which never decodes to
/// thousands of samples a byte, is not cut short however long it is, while
/// a few bytes declaring a huge blank image still are. Only frames count:
/// an embedded model or other sections, however large, add nothing.
pub const SAMPLES_PER_FRAME_BYTE: u64 = 4096;

/// Multiply-adds a [`Decoder`] may spend on one stream, all frames
/// together, besides [`WORK_PER_FRAME_BYTE`] per byte of frames, unless
/// told otherwise ([`Decoder::with_max_work`]); each frame is charged
/// [`Model::decode_work`] before it is decoded. 2^43: 2.1 to 2.4 times the
/// largest frame the default limits allow with the shipped model (a blank
/// level-1 frame of 2^22 indices: 3.7e12 grey, 4.2e12 in RGBA, whose
/// smaller tiles pass more halo), a few minutes of two cores. The sample
/// budget alone does not bound the time: a model embedded in a stream may
/// be far wider than the shipped one, and each sample cost up to about 100
/// times as much.
pub const DEFAULT_MAX_STREAM_WORK: u64 = 1 << 43;

/// Multiply-adds a [`Decoder`]'s work budget grows by per byte of frames
/// it has read: 2^24, about 5 times what a digit at level 1 costs per byte
/// of its frame with the shipped model, and 13 times at level 6.
pub const WORK_PER_FRAME_BYTE: u64 = 1 << 24;

/// Images the iterator of a [`Decoder`] decodes at a time: the network
/// and the entropy decoder work on many frames at once far faster than on
/// one (2.4 times faster for digits at level 3).
pub const ITER_BATCH: usize = 64;

/// Reads images from a `.vqz` stream one batch at a time, never holding
/// more than a batch of frames.
///
/// As an iterator it yields images one by one but reads and decodes
/// [`ITER_BATCH`] frames at a time (fewer if the input ends or the batch
/// reaches [`DECODE_BATCH_SAMPLES`]); a reader that needs each image as
/// soon as its frame arrives calls [`Decoder::next_batch`] with 1.
pub struct Decoder<'m, R: Read> {
    reader: Reader<R>,
    model: ModelRef<'m>,
    /// Decoded images the iterator has not returned yet.
    buffered: std::collections::VecDeque<DecodedImage>,
    /// An error met after complete frames were read; reported next call.
    pending_error: Option<CodecError>,
    done: bool,
    /// Bytes of the frames read so far, which the budgets grow with.
    frame_bytes: u64,
    /// Samples of every frame read so far, against their budget.
    samples: Budget,
    /// Work ([`Model::decode_work`]) of every frame read so far, against
    /// its budget.
    work: Budget,
}

/// What a stream has used of something, against a base allowance that
/// grows with the bytes of its frames.
struct Budget {
    used: u64,
    base: u64,
    per_frame_byte: u64,
}

impl Budget {
    fn new(base: u64, per_frame_byte: u64) -> Self {
        Self {
            used: 0,
            base,
            per_frame_byte,
        }
    }

    /// Adds `amount`; returns the limit if the total is now over it.
    fn charge(&mut self, amount: u64, frame_bytes: u64) -> Option<u64> {
        self.used = self.used.saturating_add(amount);
        let limit = self
            .base
            .saturating_add(self.per_frame_byte.saturating_mul(frame_bytes));
        (self.used > limit).then_some(limit)
    }
}

impl<'m, R: Read> Decoder<'m, R> {
    /// Reads the stream header and picks the model: the one embedded in the
    /// stream if any, else the one of `models` whose id the stream names.
    pub fn new(inner: R, models: &[&'m Model]) -> Result<Self, CodecError> {
        let reader = Reader::new(inner)?;
        let want = reader.header().model_id;
        let model =
            if let Some(bytes) = reader.embedded_model() {
                // The id is checked before the model is parsed (a cheap hash
                // against building a network from untrusted bytes).
                let sha = model_sha256(bytes);
                if sha[..4] != want.0 {
                    return Err(CodecError::BadModel(format!(
                        "the embedded model has id {}, the stream header names {}",
                        hex(&sha[..4]),
                        hex(&want.0)
                    )));
                }
                ModelRef::Embedded(Box::new(Model::from_bytes(Cow::Owned(bytes.to_vec()))?))
            } else {
                let m = models.iter().find(|m| m.id() == want).ok_or_else(|| {
                    CodecError::UnknownModel {
                        needed: hex(&want.0),
                        available: models
                            .iter()
                            .map(|m| format!("{} ({} {})", m.id_hex(), m.name(), m.version()))
                            .collect(),
                    }
                })?;
                ModelRef::Given(m)
            };
        Ok(Self {
            reader,
            model,
            buffered: Default::default(),
            pending_error: None,
            done: false,
            frame_bytes: 0,
            samples: Budget::new(DEFAULT_MAX_STREAM_SAMPLES, SAMPLES_PER_FRAME_BYTE),
            work: Budget::new(DEFAULT_MAX_STREAM_WORK, WORK_PER_FRAME_BYTE),
        })
    }

    /// Sets the sample budget: the decoder stops with
    /// [`CodecError::SampleLimit`] before a frame that would take the
    /// stream's images (pixels x channels, all frames together) past
    /// `max_samples` plus [`SAMPLES_PER_FRAME_BYTE`] per byte of frames
    /// read so far; `max_samples` is [`DEFAULT_MAX_STREAM_SAMPLES`] unless
    /// set. A frame of a few bytes can declare a large image, so this bounds
    /// what a small hostile stream costs in memory and time; raise it for
    /// trusted streams of mostly blank large images.
    pub fn with_max_samples(mut self, max_samples: u64) -> Self {
        self.samples.base = max_samples;
        self
    }

    /// Sets the work budget: the decoder stops with
    /// [`CodecError::WorkLimit`] before a frame that would take the
    /// decoding work of the stream's frames ([`Model::decode_work`], all
    /// frames together) past `max_work` plus [`WORK_PER_FRAME_BYTE`] per
    /// byte of frames read so far; `max_work` is [`DEFAULT_MAX_STREAM_WORK`]
    /// unless set. Beside the sample budget, this bounds the time a stream
    /// costs whatever its model: an embedded model can make every sample
    /// many times as costly as the shipped model does.
    pub fn with_max_work(mut self, max_work: u64) -> Self {
        self.work.base = max_work;
        self
    }

    pub fn header(&self) -> &FileHeader {
        self.reader.header()
    }

    /// The model decoding this stream.
    pub fn model(&self) -> &Model {
        match &self.model {
            ModelRef::Given(m) => m,
            ModelRef::Embedded(m) => m,
        }
    }

    /// Whether the model came from the stream itself.
    pub fn model_embedded(&self) -> bool {
        matches!(self.model, ModelRef::Embedded(_))
    }

    /// Decodes up to `max` further images, fewer once they reach
    /// [`DECODE_BATCH_SAMPLES`] samples; an empty vector at the end of a
    /// complete stream. The first bad frame (cut short, corrupt, or not
    /// decodable with the model) ends the stream: the frames before it come
    /// back first, then the error, which names the frame; after it, only
    /// empty batches.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<DecodedImage>, CodecError> {
        if let Some(e) = self.pending_error.take() {
            self.done = true;
            return Err(e);
        }
        if self.done {
            return Ok(Vec::new());
        }
        let batch = self.read_and_decode(max);
        if batch.is_err() {
            // One error ends the stream; any later one it held goes.
            self.done = true;
            self.pending_error = None;
        }
        batch
    }

    /// [`Decoder::next_batch`] once the stream is known to go on: reads up to
    /// `max` frames and decodes them. The first bad frame ends the batch: an
    /// error is returned at once if no good frame came before it, else kept
    /// in `pending_error` for the next call (and [`Decoder::next_batch`]
    /// ends the stream on any error).
    fn read_and_decode(&mut self, max: usize) -> Result<Vec<DecodedImage>, CodecError> {
        let stride = self.reader.header().grid_stride_log2;
        let model_stride = self.model().grid_stride_log2();
        if stride != model_stride {
            return Err(CodecError::BadModel(format!(
                "stream has a latent grid stride of {}, the model {}",
                1u32 << stride,
                1u32 << model_stride
            )));
        }
        let max_level = self.model().max_level();
        let mut frames: Vec<Frame> = Vec::new();
        let mut samples = 0usize;
        while frames.len() < max.max(1) && samples < DECODE_BATCH_SAMPLES {
            let (f, offset) = match self.reader.next_frame_located() {
                Ok(Some(located)) => located,
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.pending_error = Some(e.into());
                    break;
                }
            };
            self.frame_bytes = self
                .frame_bytes
                .saturating_add(self.reader.bytes_read().saturating_sub(offset));
            let g = f.header.geometry;
            let n = g.width as usize * g.height as usize * g.channels as usize;
            if let Some(limit) = self.samples.charge(n as u64, self.frame_bytes) {
                self.pending_error = Some(CodecError::SampleLimit {
                    frame: f.number,
                    limit,
                });
                break;
            }
            if f.header.stages > max_level {
                self.pending_error = Some(CodecError::BadModel(format!(
                    "frame {} is at level {}, the model has {max_level} levels",
                    f.number, f.header.stages,
                )));
                break;
            }
            let work = self.model().decode_work(g, f.header.stages);
            if let Some(limit) = self.work.charge(work, self.frame_bytes) {
                self.pending_error = Some(CodecError::WorkLimit {
                    frame: f.number,
                    limit,
                });
                break;
            }
            samples += n;
            frames.push(f);
        }
        if frames.is_empty() {
            return self.pending_error.take().map_or(Ok(Vec::new()), Err);
        }
        let model = self.model();
        let args: Vec<_> = frames
            .iter()
            .map(|f| {
                (
                    f.header.geometry,
                    f.header.stages,
                    f.header.coding_mode,
                    f.payload.as_slice(),
                )
            })
            .collect();
        let (images, failure) =
            decode_frames(model, &args, stride).map_err(|e| match frames.first() {
                Some(f) if frames.len() == 1 => CodecError::InFrame {
                    frame: f.number,
                    source: Box::new(e),
                },
                _ => e,
            })?;
        if let Some((k, e)) = failure {
            // The frames before the bad one are good; the error waits for
            // the next call (an error later in the stream matters no more).
            let e = CodecError::InFrame {
                frame: frames[k].number,
                source: Box::new(e),
            };
            if k == 0 {
                return Err(e);
            }
            self.pending_error = Some(e);
        }
        Ok(frames
            .iter()
            .zip(images)
            .map(|(f, image)| DecodedImage {
                number: f.number,
                level: f.header.stages,
                image,
            })
            .collect())
    }
}

impl<R: Read> Iterator for Decoder<'_, R> {
    type Item = Result<DecodedImage, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() {
            match self.next_batch(ITER_BATCH) {
                Ok(v) => self.buffered.extend(v),
                Err(e) => return Some(Err(e)),
            }
        }
        self.buffered.pop_front().map(Ok)
    }
}
