//! The model-file fuzz check. A model file is untrusted input: a stream
//! may embed one. Any bytes given to `ModelFile::from_bytes` and to
//! `Model::from_bytes` (as the decoder does with an embedded model) must
//! give a model or an error, never a panic nor a huge allocation. A file
//! that parses must serialize and parse back to the same model, and a
//! model that loads must decode a small frame at each of its levels to an
//! image of the frame's size or to an error.

use std::borrow::Cow;

use vqz::codec::{self, Model};
use vqz::entropy::Prior;
use vqz::format::{CodingMode, FileHeader, Geometry, Writer};
use vqz::model::{ModelConfig, ModelFile, ParamStore};

/// A small valid model file: two stages of 16 codes, a narrow network and
/// a uniform prior; the seed the fuzzer and the generated inputs mutate.
pub fn tiny_model_bytes() -> Vec<u8> {
    let config = ModelConfig {
        codebook_size: 16,
        latent_dim: 4,
        stages: 2,
        channels_low: 8,
        channels_high: 4,
    };
    ModelFile {
        name: "tiny".into(),
        version: "1".into(),
        config,
        params: ParamStore::init(&config, 3).expect("random weights"),
        prior: Some(Prior::uniform(&[16, 16]).expect("a prior").to_bytes()),
        rate_weights: vec![0.5, 0.0],
    }
    .to_bytes()
    .expect("a valid model serializes")
}

/// Runs the check; returns whether the bytes loaded as a model.
pub fn model_file(data: &[u8]) -> bool {
    let parsed = ModelFile::from_bytes(data);
    let loaded = Model::from_bytes(Cow::Owned(data.to_vec()));
    if loaded.is_ok() {
        assert!(
            parsed.is_ok(),
            "a model loaded from bytes that do not parse"
        );
    }
    if let Ok(file) = &parsed {
        let again = file.to_bytes().expect("a parsed model file serializes");
        let back = ModelFile::from_bytes(&again).expect("its serialization parses");
        assert_eq!(back.config, file.config);
        assert_eq!(back.to_bytes().expect("serializes"), again);
    }
    let Ok(model) = loaded else {
        return false;
    };
    let g = Geometry {
        width: 8,
        height: 8,
        channels: 1,
    };
    let header = FileHeader::new(model.id(), g, model.grid_stride_log2());
    for level in 1..=model.max_level() {
        // An empty payload decodes every index to its table's likeliest.
        let w = Writer::new(Vec::new(), &header, None).expect("valid header");
        let bytes = w
            .finish_with_frame(CodingMode::Ans, level, g, &[])
            .expect("writing to memory");
        if let Ok(image) = codec::decompress(&bytes, &model) {
            assert_eq!((image.width(), image.height()), (8, 8), "level {level}");
        }
    }
    true
}
