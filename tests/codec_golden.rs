//! Golden files of the shipped model (`golden/codec`) and of two models it
//! replaced (`golden/mnist-7` and `golden/mnist-5`, with those models' files
//! in `testdata/models`): the ten digits of `testdata/digits` compressed at
//! the default level. The encoder must still produce these exact bytes, and
//! they must still decode to the stored reconstructions. A change of the default model or of the
//! encoder changes them; that is a deliberate act (new golden files, listed
//! in `testdata/MANIFEST`), never a way to make this test pass.
#![cfg(feature = "codec")]

use std::path::{Path, PathBuf};

use vqz::codec::{self, CompressOptions, Model};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

fn golden_in(dir: &str, name: &str) -> Vec<u8> {
    let p = testdata(&format!("golden/{dir}/{name}"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn testdata_model(name: &str) -> Model {
    Model::load(testdata(&format!("models/{name}"))).unwrap()
}

/// `mnist 5`, the last shipped model with a class-context prior.
fn mnist_5() -> Model {
    testdata_model("mnist-5.safetensors")
}

/// `mnist 7`, shipped before today's model: the same network with a
/// learned-context prior trained for fewer epochs.
fn mnist_7() -> Model {
    testdata_model("mnist-7.safetensors")
}

#[test]
fn digits_encode_to_the_golden_bytes_and_decode_to_the_golden_pixels() {
    check_digits(&Model::default_model().unwrap(), "codec");
}

#[test]
fn earlier_models_digits_still_code_and_decode_with_them() {
    let shipped = Model::default_model().unwrap();
    for (model, prior_version, dir) in [(mnist_5(), 1, "mnist-5"), (mnist_7(), 2, "mnist-7")] {
        assert_eq!(model.prior().version(), prior_version, "{dir}");
        assert_ne!(model.id(), shipped.id(), "{dir}");
        check_digits(&model, dir);
    }
}

/// `mnist 7`'s digits as the format 3.0 encoder wrote them (plain ANS
/// steps, learned-context prior): they still decode, to the same pixels as
/// the 4.0 files.
#[test]
fn format_3_0_files_of_a_learned_prior_still_decode() {
    let model = mnist_7();
    let mut saved = 0;
    for n in 0..10 {
        let old = golden_in("codec-v3", &format!("{n}.vqz"));
        let new = golden_in("mnist-7", &format!("{n}.vqz"));
        assert_eq!(old[3], 0x30, "digit {n}: format 3.0");
        assert_eq!(new[3], 0x40, "digit {n}: format 4.0");
        let back = codec::decompress(&old, &model).unwrap();
        let expected =
            image::load_from_memory(&golden_in("codec-v3", &format!("{n}.png"))).unwrap();
        let worst = worst_difference(&back, &expected);
        assert!(worst <= 1, "digit {n}: a pixel differs by {worst}");
        assert_eq!(
            back.as_bytes(),
            codec::decompress(&new, &model).unwrap().as_bytes(),
            "digit {n}: the same indices in either format"
        );
        saved += old.len() - new.len();
    }
    assert!(saved >= 10, "4.0 files are {saved} bytes smaller in all");
}

/// The largest difference between two images' samples.
fn worst_difference(a: &image::DynamicImage, b: &image::DynamicImage) -> u8 {
    a.as_bytes()
        .iter()
        .zip(b.as_bytes())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap()
}

fn check_digits(model: &Model, dir: &str) {
    let golden = |name: &str| golden_in(dir, name);
    for n in 0..10 {
        let digit = image::open(testdata(&format!("digits/{n}.png"))).unwrap();
        let want = golden(&format!("{n}.vqz"));
        let got = codec::compress(model, &digit, &CompressOptions::default()).unwrap();
        assert_eq!(got, want, "{dir}: digit {n}: encoder output changed");
        let back = codec::decompress(&want, model).unwrap();
        let expected = image::load_from_memory(&golden(&format!("{n}.png"))).unwrap();
        assert_eq!(back.color(), expected.color());
        // The network is floating point: allow one grey level of difference
        // for another summation order, nothing more.
        let worst = worst_difference(&back, &expected);
        assert!(worst <= 1, "{dir}: digit {n}: a pixel differs by {worst}");
    }
}

/// A 532x532 mosaic of 361 test digits is larger than one pass of the
/// network, so it is encoded and decoded in tiles. `mosaic-v3.vqz` and
/// `mosaic.png` were made by an earlier encoder, which ran the network over
/// the whole image at once: the tiles must put together exactly the same
/// pixels, and `mosaic.vqz` (format 4.0) must decode to them too.
#[test]
fn an_image_larger_than_one_network_pass_codes_as_if_it_went_through_whole() {
    // The goldens predate the learned prior; the tiling is the network's.
    let model = mnist_5();
    let golden = |name: &str| golden_in("mnist-5", name);
    let mosaic = image::open(testdata("digits-mosaic.png")).unwrap();
    assert_eq!((mosaic.width(), mosaic.height()), (532, 532));
    assert!(
        532 * 532 > model.pass_pixels(),
        "the mosaic must not fit one pass"
    );
    let want = golden("mosaic.vqz");
    let plain = CompressOptions {
        quality: codec::Quality::Level(3),
        refine_steps: 0,
        ..CompressOptions::default()
    };
    assert_eq!(
        codec::compress(&model, &mosaic, &plain).unwrap(),
        want,
        "tiled encoder output changed"
    );
    // Refinement runs on whole images of up to one pass: an image over
    // that is kept as the plain encoder codes it.
    let default = CompressOptions {
        quality: codec::Quality::Level(3),
        ..CompressOptions::default()
    };
    assert!(default.refine_steps > 0);
    assert_eq!(codec::compress(&model, &mosaic, &default).unwrap(), want);
    let back = codec::decompress(&want, &model).unwrap();
    let expected = image::load_from_memory(&golden("mosaic.png")).unwrap();
    assert_eq!(
        back.as_bytes(),
        expected.as_bytes(),
        "tiled decoder output changed"
    );
    let whole = codec::decompress(&golden("mosaic-v3.vqz"), &model).unwrap();
    assert_eq!(whole.as_bytes(), expected.as_bytes());
}
