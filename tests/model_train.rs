//! The network and the training loop on a tiny model and a few hundred
//! digits: training lowers the loss, model files round-trip bit for bit,
//! encoding is deterministic, broken model files are clear errors.
#![cfg(feature = "codec")]

use std::path::Path;

use candle_core::{Device, Tensor};
use vqz::codec::Model;
use vqz::entropy::cross_entropy_bits;
use vqz::model::{ModelConfig, ModelError, ModelFile, ParamStore, VqVae, codebook_name};
use vqz::train::prior::{
    PriorOptions, encode_dataset, encode_dataset_with_codec, fit_prior, refit_prior_to_codec,
};
use vqz::train::{Checkpoint, Dataset, EpochReport, TrainObserver, TrainOptions, Trainer};

fn tiny() -> ModelConfig {
    ModelConfig {
        codebook_size: 16,
        latent_dim: 4,
        stages: 2,
        channels_low: 8,
        channels_high: 4,
    }
}

fn digits(n: usize) -> Dataset {
    let mut d = Dataset::load(Path::new("testdata/train-512-images-idx3-ubyte")).unwrap();
    d.truncate(n);
    d
}

/// Keeps every epoch report, and a copy of the checkpoint as it was after
/// the second epoch (as if the run had been killed then).
struct Record(Vec<EpochReport>, Option<(std::path::PathBuf, Vec<u8>)>);
impl TrainObserver for Record {
    fn epoch(&mut self, r: &EpochReport) {
        self.0.push(r.clone());
        if let Some((path, copy)) = &mut self.1
            && r.epoch == 1
        {
            *copy = std::fs::read(path).unwrap();
        }
    }
}

fn options(epochs: usize) -> TrainOptions {
    TrainOptions {
        epochs,
        batch_size: 32,
        learning_rate: 3e-3,
        warmup_steps: 5,
        validation_images: 64,
        ..TrainOptions::default()
    }
}

#[test]
fn training_lowers_the_loss_and_resumes_exactly() {
    let data = digits(320);
    // Entropy-constrained VQ on the second stage only, so the resumed run
    // must also restore the rate controller's state.
    let options = |epochs| TrainOptions {
        target_entropy: vec![0.0, 1.0],
        ..options(epochs)
    };
    let mut t = Trainer::new(tiny(), options(3)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    let mut rec = Record(Vec::new(), Some((ckpt.clone(), Vec::new())));
    t.run(&data, Some(&ckpt), &mut rec).unwrap();
    let mse: Vec<f64> = rec.0.iter().map(|r| r.train_mse).collect();
    assert_eq!(mse.len(), 3);
    assert!(mse[2] < mse[0] * 0.8, "training MSE did not fall: {mse:?}");
    let val = &rec.0[2].validation;
    assert_eq!(val.mse_per_level.len(), 2);
    assert!(val.codes_used[0] > 1, "codebook collapsed: {val:?}");

    // Resuming from the checkpoint of epoch 2 gives the same weights as the
    // run that went on uninterrupted.
    let after_two = rec.1.take().unwrap().1;
    let resumed_from = Checkpoint::from_bytes(&after_two).unwrap();
    assert_eq!(resumed_from.epochs_done, 2);
    assert_eq!(resumed_from.priced_by, None, "a plain run");
    let mut b = Trainer::resume(resumed_from, options(3)).unwrap();
    b.run(&data, None, &mut rec).unwrap();
    for ((n1, v1), (n2, v2)) in t.params().iter().zip(b.params().iter()) {
        assert_eq!(n1, n2);
        let x = v1
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let y = v2
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(x, y, "{n1} differs after resume");
    }
    let weights = t.rate_weights();
    assert_eq!(weights[0], 0.0, "stage 1 has no target: {weights:?}");
    assert!(weights[1] > 0.0, "stage 2 has a target: {weights:?}");
    assert_eq!(weights, b.rate_weights());
}

#[test]
fn ema_codebooks_train_too() {
    let data = digits(256);
    let mut opts = options(2);
    opts.ema = true;
    let mut t = Trainer::new(tiny(), opts).unwrap();
    let mut rec = Record(Vec::new(), None);
    t.run(&data, None, &mut rec).unwrap();
    assert!(rec.0[1].train_mse < rec.0[0].train_mse);
    assert!(rec.0[1].validation.codes_used[0] > 1);
}

fn model_file(params: ParamStore, prior: Option<Vec<u8>>) -> ModelFile {
    ModelFile {
        name: "tiny".into(),
        version: "1".into(),
        config: tiny(),
        params,
        prior,
        rate_weights: vec![],
    }
}

#[test]
fn model_file_round_trips_bit_for_bit_and_encoding_is_deterministic() {
    let params = ParamStore::init(&tiny(), 7).unwrap();
    let data = digits(64);
    let net = VqVae::new(tiny(), &params).unwrap();
    let grids = encode_dataset(&net, &data, &(0..64).collect::<Vec<_>>(), None).unwrap();
    let prior = fit_prior(&[16, 16], &grids, PriorOptions::default()).unwrap();
    let bytes = model_file(params, Some(prior.to_bytes()))
        .to_bytes()
        .unwrap();
    let back = ModelFile::from_bytes(&bytes).unwrap();
    assert_eq!(back.to_bytes().unwrap(), bytes);
    assert_eq!(back.config, tiny());

    let x = Tensor::rand(0f32, 1.0, (3, 28, 28, 1), &Device::Cpu).unwrap();
    let net2 = VqVae::new(back.config, &back.params).unwrap();
    let indices = |net: &VqVae| -> Vec<u32> {
        net.encode(&x, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<u32>()
            .unwrap()
    };
    let (i1, i2, i3) = (indices(&net), indices(&net2), indices(&net2));
    assert_eq!(i1, i2);
    assert_eq!(i2, i3);
    // Same seed, same weights.
    let again = model_file(
        ParamStore::init(&tiny(), 7).unwrap(),
        Some(prior.to_bytes()),
    );
    assert_eq!(again.to_bytes().unwrap(), bytes);
}

#[test]
fn broken_model_files_are_clear_errors() {
    let params = ParamStore::init(&tiny(), 1).unwrap();
    let bytes = model_file(params.clone(), None).to_bytes().unwrap();
    for cut in [0, 1, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = ModelFile::from_bytes(&bytes[..cut]).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    // Wrong shape: a codebook of the wrong size under the right name.
    let mut other = tiny();
    other.codebook_size = 32;
    let big = ParamStore::init(&other, 1).unwrap();
    let mut tensors = std::collections::BTreeMap::new();
    for (n, v) in params.iter() {
        tensors.insert(n.clone(), v.as_tensor().clone());
    }
    tensors.insert(
        codebook_name(0),
        big.get(&codebook_name(0)).unwrap().as_tensor().clone(),
    );
    match ParamStore::from_tensors(&tiny(), tensors) {
        Err(ModelError::WrongShape { name, .. }) => assert_eq!(name, codebook_name(0)),
        other => panic!("expected a shape error, got {other:?}"),
    }
    // Wrong configuration text.
    let at = bytes
        .windows(8)
        .position(|w| w == b"stages=2")
        .expect("config text in the header");
    let mut bad = bytes.clone();
    bad[at + 7] = b'9';
    let s = ModelFile::from_bytes(&bad).unwrap_err().to_string();
    assert!(s.contains("stages = 9"), "{s}");
    let s = ModelFile::from_bytes(b"not a model at all")
        .unwrap_err()
        .to_string();
    assert!(s.contains("safetensors"), "{s}");
    // The metadata, edited in place (same length, so the header still parses):
    let edit = |from: &[u8], to: &[u8]| {
        assert_eq!(from.len(), to.len());
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("text in the header");
        let mut bad = bytes.clone();
        bad[at..at + to.len()].copy_from_slice(to);
        ModelFile::from_bytes(&bad).unwrap_err().to_string()
    };
    // a key twice,
    let s = edit(b"version: 1", b"name: tiny");
    assert!(s.contains("name twice"), "{s}");
    // a name with a control character (a tab, escaped in the JSON text).
    let s = edit(b"name: tiny", b"name: t\\ty");
    assert!(s.contains("printable"), "{s}");
}

#[test]
fn the_prior_refits_to_the_codecs_own_choices() {
    let params = ParamStore::init(&tiny(), 3).unwrap();
    let data = digits(64);
    let ids: Vec<usize> = (0..64).collect();
    let net = VqVae::new(tiny(), &params).unwrap();
    let grids = encode_dataset(&net, &data, &ids, None).unwrap();
    let prior = fit_prior(&[16, 16], &grids, PriorOptions::default()).unwrap();
    // A rate weight on stage 1, so the codec trades distance for code
    // length and its indices differ from the nearest codes the prior saw.
    let mut file = model_file(params, Some(prior.to_bytes()));
    file.rate_weights = vec![0.05, 0.0];
    let model = Model::from_bytes(file.to_bytes().unwrap().into()).unwrap();
    let chosen = encode_dataset_with_codec(&model, &data, &ids).unwrap();
    assert_eq!(chosen.len(), 64);
    assert_ne!(chosen, grids, "the rate term changed no index");
    let (refit, report) =
        refit_prior_to_codec(&model, &data, &ids, &ids, PriorOptions::default()).unwrap();
    // Fitted to exactly these grids, the new prior codes them in fewer bits.
    let bits = |p: &vqz::entropy::Prior| -> f64 {
        chosen.iter().map(|g| cross_entropy_bits(p, g)).sum::<f64>() / 64.0
    };
    assert!(
        bits(&refit) < bits(&prior),
        "{} vs {}",
        bits(&refit),
        bits(&prior)
    );
    assert!((report.context_bits[1] - bits(&refit)).abs() < 1e-6);
}

#[path = "support/synthetic.rs"]
mod synthetic;

#[test]
fn a_learned_prior_beats_class_contexts_and_codes_through_the_codec() {
    use synthetic::{K, Rng, digit_grid};
    use vqz::codec::{CompressOptions, Quality, compress, decompress};
    use vqz::entropy::{PriorBuilder, decode_grid, encode_grid};
    use vqz::train::learned_prior::{LearnedPriorOptions, train_learned_prior};

    // Synthetic digit-like grids: the network sees more of each position's
    // neighbourhood than the class contexts do.
    let mut rng = Rng(17);
    let train: Vec<_> = (0..1500).map(|_| digit_grid(&mut rng, 2)).collect();
    let test: Vec<_> = (0..300).map(|_| digit_grid(&mut rng, 2)).collect();
    let classes = PriorBuilder::class_maps_from_unigram(&[K, K], 8, &train).unwrap();
    let mut builder = PriorBuilder::new(&[K, K], classes, 8).unwrap();
    for g in &train {
        builder.observe(g).unwrap();
    }
    let class_prior = builder.build(16, 4.0).unwrap();
    let options = LearnedPriorOptions {
        embed: 8,
        hidden: 32,
        epochs: 3,
        batch_size: 256,
        ..LearnedPriorOptions::default()
    };
    let mut lines = 0;
    let (learned, reports) =
        train_learned_prior(&[K, K], &train, &test, options, |_| lines += 1).unwrap();
    assert_eq!(lines, 6);
    assert_eq!(reports.len(), 2);
    let bits = |p: &vqz::entropy::Prior| -> f64 {
        test.iter().map(|g| cross_entropy_bits(p, g)).sum::<f64>() / test.len() as f64
    };
    let (learned_bits, class_bits) = (bits(&learned), bits(&class_prior));
    assert!(learned_bits < class_bits, "{learned_bits} vs {class_bits}");
    // The integer network keeps what the float one learned.
    let float_bits: f64 = reports.iter().map(|r| r.float_bits).sum();
    assert!(
        learned_bits < float_bits * 1.05,
        "{learned_bits} vs {float_bits}"
    );
    for g in test.iter().take(50) {
        let (mode, payload) = encode_grid(&learned, g).unwrap();
        assert_eq!(
            decode_grid(&learned, mode, &payload, 7, 7, 1, 2).unwrap(),
            *g
        );
    }

    // A model whose prior is learned compresses and decompresses images.
    let params = ParamStore::init(&tiny(), 3).unwrap();
    let data = digits(96);
    let ids: Vec<usize> = (0..96).collect();
    let net = VqVae::new(tiny(), &params).unwrap();
    let grids = encode_dataset(&net, &data, &ids, None).unwrap();
    let small = LearnedPriorOptions {
        embed: 4,
        hidden: 8,
        epochs: 2,
        batch_size: 128,
        ..LearnedPriorOptions::default()
    };
    let (prior, _) = train_learned_prior(&[16, 16], &grids, &grids, small, |_| {}).unwrap();
    let class_prior = fit_prior(&[16, 16], &grids, PriorOptions::default()).unwrap();
    let with_prior = |p: &vqz::entropy::Prior| {
        let file = model_file(params.clone(), Some(p.to_bytes()));
        Model::from_bytes(file.to_bytes().unwrap().into()).unwrap()
    };
    let (learned_model, class_model) = (with_prior(&prior), with_prior(&class_prior));
    assert_eq!(learned_model.prior().version(), 2);
    // Plain quantisation picks the same indices under either prior, so the
    // two models must decode to the same pixels: the learned prior coded
    // every index exactly.
    for level in 1..=2 {
        let plain = CompressOptions {
            quality: Quality::Level(level),
            embed_model: false,
            refine_steps: 0,
        };
        for i in 0..16 {
            let image = data.grey_image(i).unwrap();
            let a = compress(&learned_model, &image, &plain).unwrap();
            let b = compress(&class_model, &image, &plain).unwrap();
            assert_eq!(
                decompress(&a, &learned_model).unwrap(),
                decompress(&b, &class_model).unwrap()
            );
        }
    }
    // With a rate term and refinement the encoder consults the learned
    // prior's code lengths; its files still decode.
    let mut file = model_file(params, Some(prior.to_bytes()));
    file.rate_weights = vec![0.05, 0.02];
    let model = Model::from_bytes(file.to_bytes().unwrap().into()).unwrap();
    let options = CompressOptions {
        quality: Quality::Level(2),
        embed_model: false,
        refine_steps: 2,
    };
    for i in 0..8 {
        let image = data.grey_image(i).unwrap();
        let back = decompress(&compress(&model, &image, &options).unwrap(), &model).unwrap();
        assert_eq!((back.width(), back.height()), (28, 28));
    }
}

#[test]
fn training_can_pick_indices_as_the_codec_does() {
    let data = digits(192);
    let ids: Vec<usize> = (128..192).collect();
    let params = ParamStore::init(&tiny(), 5).unwrap();
    let net = VqVae::new(tiny(), &params).unwrap();
    let all: Vec<usize> = (0..192).collect();
    let grids = encode_dataset(&net, &data, &all, None).unwrap();
    let prior = fit_prior(&[16, 16], &grids, PriorOptions::default()).unwrap();
    // A heavy rate weight on stage 1: the codec's choice is far from the
    // nearest codes.
    let mut file = model_file(params, Some(prior.to_bytes()));
    file.rate_weights = vec![0.5, 0.0];
    let opts = TrainOptions {
        validation_images: 64,
        restart_every: 0,
        ..options(2)
    };
    let mut t = Trainer::from_model(&file, opts.clone()).unwrap();
    t.price_with(prior.clone(), file.rate_weights.clone(), "test".into())
        .unwrap();
    let mut rec = Record(Vec::new(), None);
    t.run(&data, None, &mut rec).unwrap();
    assert!(
        rec.0[1].train_mse < rec.0[0].train_mse,
        "training MSE did not fall"
    );
    // Its checkpoints name the model whose codec picks the indices.
    let ckpt = Checkpoint::from_bytes(&t.checkpoint().to_bytes().unwrap()).unwrap();
    assert_eq!(ckpt.priced_by.as_deref(), Some("test"));

    // The validation of the run is the codec's own encoding of those images
    // with the trained network: the same indices, so the same codes in use
    // and the same error at each level.
    let val = &rec.0[1].validation;
    let trained = ModelFile {
        params: t.params().clone(),
        ..file
    };
    let model = Model::from_bytes(trained.to_bytes().unwrap().into()).unwrap();
    let chosen = encode_dataset_with_codec(&model, &data, &ids).unwrap();
    let used = |s: usize, grids: &[vqz::entropy::IndexGrid]| {
        let mut seen = [false; 16];
        for g in grids {
            for &i in &g.indices[s * 49..(s + 1) * 49] {
                seen[usize::from(i)] = true;
            }
        }
        seen.iter().filter(|&&b| b).count()
    };
    assert_eq!(val.codes_used, vec![used(0, &chosen), used(1, &chosen)]);
    let net = VqVae::new(tiny(), t.params()).unwrap();
    let nearest = encode_dataset(&net, &data, &ids, None).unwrap();
    assert_ne!(chosen, nearest, "the rate term changed no index");
    let x = {
        let v: Vec<f32> = ids
            .iter()
            .flat_map(|&i| data.image(i).iter().map(|&p| f32::from(p) / 255.0))
            .collect();
        Tensor::from_vec(v, (ids.len(), 28, 28, 1), &Device::Cpu).unwrap()
    };
    for level in 1..=2usize {
        let idx: Vec<u32> = chosen
            .iter()
            .flat_map(|g| g.indices[..level * 49].iter().map(|&i| u32::from(i)))
            .collect();
        let idx = Tensor::from_vec(idx, (ids.len(), level, 7, 7), &Device::Cpu).unwrap();
        let y = net.decode(&idx).unwrap();
        let mse = (y - &x)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let reported = val.mse_per_level[level - 1];
        assert!(
            (f64::from(mse) - reported).abs() < 1e-4 * reported,
            "level {level}: {mse} vs {reported}"
        );
    }
}
