//! The `vqz` binary driven as a user would: the main job, gzip/zstd-style
//! flags, and one clear line with a non-zero exit for every kind of bad input.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn vqz(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vqz"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// What `vqz args` in `dir` prints to standard output, as text.
fn stdout_of(args: &[&str], dir: &Path) -> String {
    String::from_utf8_lossy(&vqz(args, dir).stdout).into_owned()
}

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(testdata("digits/7.png"), dir.path().join("7.png")).unwrap();
    dir
}

/// A failure after progress lines: exit 1, and the last line the error,
/// containing `needle`.
fn assert_fails_after_progress(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("vqz: ") && last.contains(needle),
        "{needle:?} not in {err:?}"
    );
}

/// A success: exit 0 (stderr shown if not).
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A failure: non-zero exit (not a panic's 101), one line on stderr that
/// contains `needle`.
fn assert_fails(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {err}");
    assert_ne!(out.status.code(), Some(101), "panicked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
}

#[test]
fn compress_then_decompress_a_digit() {
    let dir = setup();
    let d = dir.path();
    let out = vqz(&["compress", "7.png"], d);
    assert_ok(&out);
    let vqz_len = std::fs::metadata(d.join("7.png.vqz")).unwrap().len();
    assert!(vqz_len < 120, "{vqz_len} bytes");
    assert!(d.join("7.png").exists(), "input kept by default");
    std::fs::rename(d.join("7.png"), d.join("orig.png")).unwrap();
    let out = vqz(&["decompress", "7.png.vqz"], d);
    assert_ok(&out);
    let back = image::open(d.join("7.png")).unwrap();
    assert_eq!((back.width(), back.height()), (28, 28));
    let info = vqz(&["info", "7.png.vqz"], d);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("vqz 4.0") && text.contains("known"), "{text}");
    assert!(text.contains("ends with:  final frame 0"), "{text}");
    assert_eq!(
        vqz_len,
        std::fs::read(testdata("golden/codec/7.vqz")).unwrap().len() as u64
    );
    let ok = vqz(&["verify", "7.png.vqz"], d);
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK, 1 frame"));
}

#[test]
fn never_clobbers_without_force_and_rm_removes_input() {
    let dir = setup();
    let d = dir.path();
    assert_ok(&vqz(&["compress", "7.png"], d));
    let before = std::fs::read(d.join("7.png.vqz")).unwrap();
    std::fs::write(d.join("7.png.vqz"), b"precious").unwrap();
    assert_fails(&vqz(&["compress", "7.png"], d), "already exists");
    assert_eq!(std::fs::read(d.join("7.png.vqz")).unwrap(), b"precious");
    assert_ok(&vqz(&["compress", "-f", "--rm", "7.png"], d));
    assert_eq!(std::fs::read(d.join("7.png.vqz")).unwrap(), before);
    assert!(!d.join("7.png").exists());
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn an_output_that_is_the_input_is_refused_even_with_force() {
    let dir = setup();
    let d = dir.path();
    let original = std::fs::read(d.join("7.png")).unwrap();
    // Writing over the input, then --rm, would leave nothing.
    for args in [
        &["compress", "7.png", "-o", "7.png", "-f", "--rm"][..],
        &["compress", "7.png", "-o", "./7.png", "-f"][..],
    ] {
        assert_fails(&vqz(args, d), "is the input");
        assert_eq!(std::fs::read(d.join("7.png")).unwrap(), original);
    }
    // A .vqz file whose name ends in .png decompresses by default to its
    // own name.
    assert_ok(&vqz(&["compress", "7.png", "-o", "x.png"], d));
    let stream = std::fs::read(d.join("x.png")).unwrap();
    assert_fails(
        &vqz(&["decompress", "x.png", "-f", "--rm"], d),
        "is the input",
    );
    assert_eq!(std::fs::read(d.join("x.png")).unwrap(), stream);
    // A hard link to the input is the input under another name: with --rm,
    // writing over it would leave no copy of the digit.
    std::fs::hard_link(d.join("7.png"), d.join("link.vqz")).unwrap();
    let digit = std::fs::read(d.join("7.png")).unwrap();
    assert_fails(
        &vqz(&["compress", "7.png", "-o", "link.vqz", "-f", "--rm"], d),
        "is the input",
    );
    assert_eq!(std::fs::read(d.join("7.png")).unwrap(), digit);
    assert_eq!(std::fs::read(d.join("link.vqz")).unwrap(), digit);
}

#[test]
fn decoding_stops_at_the_sample_and_work_budgets() {
    use vqz::format::{CodingMode, FileIndex, Geometry, Writer};
    let dir = setup();
    let d = dir.path();
    assert_ok(&vqz(&["compress", "7.png"], d));
    // A stream of a few bytes declaring a blank 1024x1024 image.
    let digit = std::fs::read(d.join("7.png.vqz")).unwrap();
    let index = FileIndex::from_bytes(&digit).unwrap();
    let big = Geometry {
        width: 1024,
        height: 1024,
        channels: 1,
    };
    let w = Writer::new(Vec::new(), index.header(), None).unwrap();
    let blank = w.finish_with_frame(CodingMode::Ans, 1, big, &[]).unwrap();
    assert!(blank.len() < 30, "{} bytes", blank.len());
    std::fs::write(d.join("blank.vqz"), &blank).unwrap();
    // With no base budget, only 4096 samples, or 2^24 multiply-adds, a
    // byte of frames: a blank megapixel is refused before any work, with
    // how to raise the limit, and a digit (784 samples in its 39 bytes)
    // decodes well within either.
    for flag in ["--max-samples", "--max-work"] {
        for args in [
            &["decompress", "blank.vqz", "-o", "b.png", flag, "0"][..],
            &["verify", "blank.vqz", flag, "0"][..],
        ] {
            assert_fails(&vqz(args, d), &format!("{flag} N raises it"));
        }
        assert!(!d.join("b.png").exists());
        let ok = vqz(&["verify", "7.png.vqz", flag, "0"], d);
        assert!(ok.status.success());
    }
    // The default budget takes the blank image.
    let ok = vqz(&["decompress", "blank.vqz", "-o", "b.png"], d);
    assert_ok(&ok);
    assert_eq!(image::open(d.join("b.png")).unwrap().width(), 1024);
}

#[test]
fn bench_refuses_to_overwrite_an_earlier_report_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("o")).unwrap();
    for (name, speed) in [("rd.svg", false), ("speed.md", true)] {
        std::fs::write(d.join("o").join(name), b"earlier").unwrap();
        let data = testdata("t10k-images-idx3-ubyte.gz");
        let mut args = vec!["bench", "--out", "o", "--data", data.to_str().unwrap()];
        if speed {
            args.push("--speed");
        }
        assert_fails(&vqz(&args, d), "already exists (use -f");
        assert_eq!(std::fs::read(d.join("o").join(name)).unwrap(), b"earlier");
    }
    // A file where the report's folder should be, even with -f.
    std::fs::write(d.join("afile"), b"mine").unwrap();
    let data = testdata("t10k-images-idx3-ubyte.gz");
    let args = [
        "bench",
        "--out",
        "afile",
        "-f",
        "--limit",
        "2",
        "--data",
        data.to_str().unwrap(),
    ];
    assert_fails(&vqz(&args, d), "--out afile is a file");
    assert_eq!(std::fs::read(d.join("afile")).unwrap(), b"mine");
    // Nothing to measure is an error, not a table of empty figures.
    assert_fails(
        &vqz(
            &["evaluate", "--limit", "0", "--data", data.to_str().unwrap()],
            d,
        ),
        "no images to measure",
    );
}

#[test]
fn stdout_and_stdin() {
    let dir = setup();
    let d = dir.path();
    let out = vqz(&["compress", "-c", "7.png", "--refine", "0"], d);
    assert!(out.status.success());
    assert!(out.stdout.starts_with(b"vqz"));
    let back = vqz_with_stdin(&["decompress", "-", "-c"], d, &out.stdout);
    assert!(back.status.success());
    assert!(back.stdout.starts_with(b"\x89PNG"));
    // Standard input with -o writes the file -o names, not standard output.
    let res = vqz_with_stdin(&["decompress", "-", "-o", "back.png"], d, &out.stdout);
    assert_ok(&res);
    assert!(res.stdout.is_empty());
    assert_eq!(std::fs::read(d.join("back.png")).unwrap(), back.stdout);
    let res = vqz_with_stdin(
        &["compress", "-", "-o", "in.vqz", "--refine", "0"],
        d,
        &std::fs::read(d.join("7.png")).unwrap(),
    );
    assert_ok(&res);
    assert!(res.stdout.is_empty());
    assert_eq!(std::fs::read(d.join("in.vqz")).unwrap(), out.stdout);
    // -c and a file named with -o contradict each other.
    assert_fails(
        &vqz(&["compress", "7.png", "-c", "-o", "x.vqz"], d),
        "give one of them",
    );
    assert_fails(
        &vqz(&["decompress", "in.vqz", "-c", "-o", "y.png"], d),
        "give one of them",
    );
    assert!(!d.join("x.vqz").exists() && !d.join("y.png").exists());
}

/// `--rm` removes inputs only once their output is safely in a file: not
/// when it went to standard output, and each file once however it was named.
#[test]
fn rm_keeps_inputs_whose_output_may_be_lost() {
    let dir = setup();
    let d = dir.path();
    let out = vqz(&["compress", "--rm", "-c", "7.png", "--refine", "0"], d);
    assert!(out.status.success());
    assert!(out.stdout.starts_with(b"vqz"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rm ignored"));
    assert!(d.join("7.png").exists());
    // The same file three times, under three names (one a hard link).
    std::fs::hard_link(d.join("7.png"), d.join("seven.png")).unwrap();
    let out = vqz(
        &[
            "compress",
            "7.png",
            "./7.png",
            "seven.png",
            "-o",
            "y.vqz",
            "--rm",
            "--refine",
            "0",
        ],
        d,
    );
    assert_ok(&out);
    assert!(!d.join("7.png").exists() && !d.join("seven.png").exists());
    let out = vqz(&["info", "y.vqz"], d);
    assert!(String::from_utf8_lossy(&out.stdout).contains("frames:     3"));
}

fn vqz_with_stdin(args: &[&str], dir: &Path, input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vqz"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// A reader that goes away (`vqz info f.vqz | head -1`) ends vqz quietly,
/// as it ends `cat`: no panic, no error message.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_vqz"))
        .args(["info", &testdata("golden/codec/7.vqz").to_string_lossy()])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "stderr: {err}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}

#[test]
fn an_idx_file_round_trips_through_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = testdata("train-512-images-idx3-ubyte");
    let data = data.to_str().unwrap();
    let out = vqz(&["compress", data, "-o", "set.vqz", "-l", "1"], d);
    assert_ok(&out);
    let out = vqz(&["decompress", "set.vqz", "--idx", "-o", "set.idx"], d);
    assert_ok(&out);
    let idx = std::fs::read(d.join("set.idx")).unwrap();
    assert_eq!(idx.len(), 16 + 512 * 784);
    assert_eq!(&idx[..8], &[0, 0, 8, 3, 0, 0, 2, 0]);
    let out = vqz(&["decompress", "set.vqz", "-o", "pngs"], d);
    assert!(out.status.success());
    assert_eq!(std::fs::read_dir(d.join("pngs")).unwrap().count(), 512);
    // A stream cut in the middle still gives its complete frames, then one error line.
    let bytes = std::fs::read(d.join("set.vqz")).unwrap();
    std::fs::write(d.join("cut.vqz"), &bytes[..bytes.len() / 2]).unwrap();
    let out = vqz(&["decompress", "cut.vqz", "-o", "partial"], d);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated"), "{err}");
    let kept = std::fs::read_dir(d.join("partial")).unwrap().count();
    assert!(kept > 100 && kept < 512, "{kept} frames kept");
    // Into the folder of the whole stream, with -f: its frames are written
    // over, and the earlier run's others are left as they are, with a warning.
    let out = vqz(&["decompress", "cut.vqz", "-o", "pngs", "-f"], d);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let warning = format!("also holds {} other files named like frames", 512 - kept);
    assert!(err.contains(&warning), "{err}");
    assert_eq!(std::fs::read_dir(d.join("pngs")).unwrap().count(), 512);
    let info = stdout_of(&["info", "set.vqz"], d);
    assert!(info.contains("frames:     512"), "{info}");
    assert!(info.contains("ends with:  final frame 511"), "{info}");
    assert!(info.contains("... 502 more (-v lists all)"), "{info}");
    // -v lists every frame once, in order, at the offsets the frames have.
    let all = stdout_of(&["info", "-v", "set.vqz"], d);
    let rows: Vec<Vec<u64>> = all
        .lines()
        .skip_while(|l| !l.starts_with("  frame"))
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            vec![
                cols[0].parse().unwrap(),
                cols[1].parse().unwrap(),
                cols[2].parse().unwrap(),
            ]
        })
        .collect();
    assert_eq!(rows.len(), 512, "{all}");
    for (i, pair) in rows.windows(2).enumerate() {
        assert_eq!(pair[0][0], i as u64);
        assert_eq!(
            pair[0][1] + pair[0][2],
            pair[1][1],
            "frame {i} ends where the next starts"
        );
    }
    let last = &rows[511];
    assert_eq!(last[1] + last[2], bytes.len() as u64);
}

/// IDX holds 8-bit grey images of one size: anything else is refused
/// before a file is written, not turned grey or cropped.
#[test]
fn idx_output_refuses_images_it_cannot_hold() {
    let dir = setup();
    let d = dir.path();
    let colour =
        image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 128]));
    colour.save(d.join("colour.png")).unwrap();
    assert_ok(&vqz(&["compress", "colour.png", "-o", "colour.vqz"], d));
    assert_fails(
        &vqz(
            &["decompress", "colour.vqz", "--idx", "-o", "colour.idx"],
            d,
        ),
        "frame 0 is a Rgb8 image; IDX holds 8-bit grey images only",
    );
    assert!(!d.join("colour.idx").exists());

    let small = image::GrayImage::from_fn(8, 12, |x, y| image::Luma([(x * y * 3) as u8]));
    small.save(d.join("small.png")).unwrap();
    let out = vqz(&["compress", "7.png", "small.png", "-o", "two.vqz"], d);
    assert_ok(&out);
    assert_fails(
        &vqz(&["decompress", "two.vqz", "--idx", "-o", "two.idx"], d),
        "frame 1 is 8x12, the first 28x28",
    );
    assert!(!d.join("two.idx").exists());
    // Grey images of one size come back as IDX.
    let out = vqz(&["compress", "7.png", "7.png", "-o", "sevens.vqz"], d);
    assert!(out.status.success());
    let out = vqz(
        &["decompress", "sevens.vqz", "--idx", "-o", "sevens.idx"],
        d,
    );
    assert_ok(&out);
    let idx = std::fs::read(d.join("sevens.idx")).unwrap();
    assert_eq!(
        &idx[..16],
        &[0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]
    );
    assert_eq!(idx.len(), 16 + 2 * 784);
    assert_eq!(idx[16..16 + 784], idx[16 + 784..]);
}

#[test]
fn train_refuses_options_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = testdata("train-512-images-idx3-ubyte");
    let data = data.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--data", data, "--out", "m.safetensors"];
        args.extend_from_slice(extra);
        vqz(&args, d)
    };
    assert_fails(&train(&["--restart-until", "1.5"]), "--restart-until 1.5");
    assert_fails(&train(&["--commitment=-1"]), "--commitment -1");
    let model = testdata("models/mnist-5.safetensors");
    let from = ["--from", model.to_str().unwrap()];
    assert_fails(
        &train(&[&from[..], &["--target-entropy", "1"]].concat()),
        "--target-entropy does not apply",
    );
    assert_fails(
        &train(&[&from[..], &["--prior", "classes", "--prior-rounds", "0"]].concat()),
        "--prior-rounds 1 or more",
    );
    // The checkpoint, rewritten every epoch, never replaces a file unasked.
    assert_fails(
        &train(&["--checkpoint", "m.safetensors"]),
        "would overwrite --out",
    );
    assert_fails(
        &train(&["--checkpoint", "./m.safetensors"]),
        "would overwrite --out",
    );
    assert_fails(&train(&["--checkpoint", data]), "would overwrite --data");
    std::fs::write(d.join("m.safetensors.ckpt"), b"precious").unwrap();
    assert_fails(
        &train(&[]),
        "already exists; use -f to overwrite it, or --resume",
    );
    assert_eq!(
        std::fs::read(d.join("m.safetensors.ckpt")).unwrap(),
        b"precious"
    );
    assert!(!d.join("m.safetensors").exists());
    // Refused before any training: values that mean nothing, an output
    // over an input (even with -f), an output that could not be written.
    let fresh = ["--checkpoint", "fresh.ckpt"];
    for (extra, needle) in [
        (&["--lr", "NaN"][..], "--lr NaN"),
        (&["--lr", "0"], "--lr 0"),
        (&["--batch-size", "0"], "--batch-size 0"),
        (&["--epochs", "0"], "--epochs 0 trains nothing"),
        (
            &["--prior-hidden", "600"],
            "--prior-hidden 600: expected 1 to 512",
        ),
        (&["--prior-embed", "0"], "--prior-embed 0"),
        (&["--prior-classes", "40"], "--prior-classes 40"),
        (&["--prior-smoothing", "NaN"], "--prior-smoothing NaN"),
    ] {
        assert_fails(&train(&[&fresh[..], extra].concat()), needle);
    }
    let over_data = vqz(
        &[
            "train",
            "--data",
            data,
            "--out",
            data,
            "-f",
            "--checkpoint",
            "c.ckpt",
        ],
        d,
    );
    assert_fails(&over_data, "is --data");
    std::fs::copy(&model, d.join("m5.safetensors")).unwrap();
    let from_model = vqz(
        &[
            "train",
            "--from",
            "m5.safetensors",
            "--data",
            data,
            "--out",
            "./m5.safetensors",
            "-f",
            "--checkpoint",
            "c.ckpt",
        ],
        d,
    );
    assert_fails(&from_model, "is --from");
    assert_fails(
        &vqz(
            &["train", "--data", data, "--out", "missing/m.safetensors"],
            d,
        ),
        "the folder missing does not exist",
    );
    assert_fails(
        &vqz(
            &[
                "train",
                "--data",
                data,
                "--out",
                "m2.safetensors",
                "--checkpoint",
                "missing/c.ckpt",
            ],
            d,
        ),
        "the folder missing does not exist",
    );
    assert!(!d.join("fresh.ckpt").exists() && !d.join("c.ckpt").exists());
    // Training options mean nothing to --prior-only, which trains no network.
    let out = vqz(
        &[
            "train",
            "--prior-only",
            "m5.safetensors",
            "--data",
            data,
            "--out",
            "p.st",
            "--lr",
            "0.1",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with '--lr"));
    // Batches whose activations would not fit in memory: an error, not an
    // abort part-way through allocating them.
    let mut big = vec![0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 4, 0, 0, 0, 4, 0];
    big.resize(16 + 4 * 1024 * 1024, 0);
    std::fs::write(d.join("big.idx"), big).unwrap();
    let big = [
        "train",
        "--data",
        "big.idx",
        "--out",
        "big.st",
        "--validation",
        "1",
    ];
    let out = vqz(&big, d);
    assert_fails_after_progress(&out, "a batch of 3 images of 1024x1024 needs about");
}

/// A run whose loss stops being a number ends with an error and leaves the
/// checkpoint alone; a checkpoint resumes only with its run's options and
/// data.
#[test]
fn training_keeps_its_checkpoint_and_resumes_only_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = testdata("train-512-images-idx3-ubyte");
    let tiny = [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--channels-low",
        "8",
        "--channels-high",
        "8",
        "--codebook-size",
        "16",
        "--stages",
        "2",
        "--prior",
        "classes",
        "--prior-rounds",
        "0",
        "--validation",
        "32",
        "--checkpoint",
        "run.ckpt",
        "--epochs",
        "2",
    ];
    let out = vqz(
        &[&tiny[..], &["--out", "a.st", "--limit", "128"]].concat(),
        d,
    );
    assert_ok(&out);
    let good = std::fs::read(d.join("run.ckpt")).unwrap();
    let out = vqz(
        &[
            &tiny[..],
            &["--out", "b.st", "--limit", "128", "--lr", "1e30", "-f"],
        ]
        .concat(),
        d,
    );
    assert_fails_after_progress(&out, "training diverged: the loss became");
    assert_eq!(std::fs::read(d.join("run.ckpt")).unwrap(), good);
    assert!(!d.join("b.st").exists());
    // Resumed with another option, or other images: refused.
    let resume = |extra: &[&str]| {
        vqz(
            &[&tiny[..], &["--out", "c.st", "--resume", "run.ckpt"], extra].concat(),
            d,
        )
    };
    assert_fails(
        &resume(&["--limit", "128", "--lr", "0.01", "--seed", "7"]),
        "the checkpoint's run had --lr 0.002 (now 0.01), --seed 1 (now 7)",
    );
    let out = resume(&["--limit", "160"]);
    assert_fails_after_progress(
        &out,
        "the checkpoint's run trained on other images (128x28x28",
    );
    assert_eq!(std::fs::read(d.join("run.ckpt")).unwrap(), good);
    assert_fails(
        &resume(&["--limit", "128", "--latent-dim", "32"]),
        "--latent-dim 32: the model resumed keeps its shape",
    );
    // The same run resumes (here with nothing left to train).
    let out = resume(&["--limit", "128"]);
    assert_ok(&out);
}

#[test]
fn train_fits_a_learned_prior_and_refits_an_existing_model() {
    let dir = setup();
    let d = dir.path();
    let data = testdata("train-512-images-idx3-ubyte");
    let data = data.to_str().unwrap();
    let tiny = [
        "--codebook-size",
        "16",
        "--latent-dim",
        "4",
        "--stages",
        "2",
        "--channels-low",
        "8",
        "--channels-high",
        "4",
        "--validation",
        "64",
        "--limit",
        "256",
        "--epochs",
        "1",
    ];
    let small_prior = [
        "--prior-embed",
        "4",
        "--prior-hidden",
        "8",
        "--prior-epochs",
        "1",
    ];
    let mut args = vec!["train", "--data", data, "--out", "classes.safetensors"];
    args.extend_from_slice(&tiny);
    args.extend_from_slice(&["--prior", "classes"]);
    let out = vqz(&args, d);
    assert_ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("learned prior"), "{err}");

    // A new, learned prior for the same network.
    let mut args = vec![
        "train",
        "--prior-only",
        "classes.safetensors",
        "--data",
        data,
        "--out",
        "learned.safetensors",
        "--validation",
        "64",
        "--limit",
        "256",
        "--model-version",
        "2",
    ];
    args.extend_from_slice(&small_prior);
    let out = vqz(&args, d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("trained the learned prior"), "{err}");
    // Not again without -f.
    assert_fails(&vqz(&args, d), "already exists");

    // Further training of the learned model's network, its indices priced
    // by its own prior, then a new learned prior.
    let mut args = vec![
        "train",
        "--from",
        "learned.safetensors",
        "--data",
        data,
        "--out",
        "tuned.safetensors",
        "--restart-every",
        "0",
        "--prior-rounds",
        "0",
    ];
    args.extend_from_slice(&tiny[10..]);
    args.extend_from_slice(&small_prior);
    let out = vqz(&args, d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("epoch 1/1"), "{err}");
    assert!(err.contains("trained the learned prior"), "{err}");
    // Its checkpoint resumes only with the same --from model.
    let resume = |ckpt: &str, from: Option<&str>| {
        let mut a = vec![
            "train",
            "--resume",
            ckpt,
            "--data",
            data,
            "--out",
            "resumed.safetensors",
        ];
        if let Some(m) = from {
            a.extend_from_slice(&["--from", m]);
        }
        vqz(&a, d)
    };
    let tuned = "tuned.safetensors.ckpt";
    assert_fails(&resume(tuned, None), "resume it with --from and that model");
    assert_fails(
        &resume(tuned, Some("classes.safetensors")),
        "not on --from's",
    );
    // And a plain run's checkpoint only without.
    assert_fails(
        &resume("classes.safetensors.ckpt", Some("learned.safetensors")),
        "resume it without --from",
    );
    assert!(!d.join("resumed.safetensors").exists());

    let models = [
        "classes.safetensors",
        "learned.safetensors",
        "tuned.safetensors",
    ];
    for model in models {
        let out = vqz(
            &["compress", "7.png", "--model", model, "-o", "7.vqz", "-f"],
            d,
        );
        assert_ok(&out);
        let out = vqz(
            &[
                "decompress",
                "7.vqz",
                "--model",
                model,
                "-o",
                "7.out.png",
                "-f",
            ],
            d,
        );
        assert_ok(&out);
    }
    // Each run wrote a model of its own (another prior or network, another id).
    let files: Vec<Vec<u8>> = models
        .iter()
        .map(|m| std::fs::read(d.join(m)).unwrap())
        .collect();
    assert_ne!(files[0], files[1]);
    assert_ne!(files[1], files[2]);
}

#[test]
fn info_reads_a_version_1_file() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = testdata("golden/digits-v1.vqz");
    let out = vqz(&["info", v1.to_str().unwrap()], dir.path());
    assert_ok(&out);
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("format:     vqz 1.0"), "{info}");
    assert!(info.contains("frames:     10"), "{info}");
    assert!(
        info.contains("ends with:  end marker (frame count 10)"),
        "{info}"
    );
}

#[test]
fn bad_inputs_give_one_clear_line() {
    let dir = setup();
    let d = dir.path();
    assert_ok(&vqz(&["compress", "7.png"], d));
    let good = std::fs::read(d.join("7.png.vqz")).unwrap();

    assert_fails(&vqz(&["decompress", "7.png"], d), "not a vqz file");
    assert_fails(
        &vqz(&["compress", "7.png.vqz", "-o", "x.vqz"], d),
        "already a vqz file",
    );
    std::fs::write(d.join("cut.vqz"), &good[..good.len() - 3]).unwrap();
    assert_fails(&vqz(&["decompress", "cut.vqz"], d), "truncated");
    assert_fails(&vqz(&["verify", "cut.vqz"], d), "truncated");
    let mut long = good.clone();
    long.extend_from_slice(&[0x81, 0x01]);
    std::fs::write(d.join("long.vqz"), &long).unwrap();
    assert_fails(
        &vqz(&["verify", "long.vqz"], d),
        "data after the final frame",
    );
    assert_fails(&vqz(&["info", "long.vqz"], d), "data after the final frame");
    let mut bad = good.clone();
    let last = bad.len() - 4;
    bad[last] ^= 0x10;
    std::fs::write(d.join("bad.vqz"), &bad).unwrap();
    assert_fails(&vqz(&["verify", "bad.vqz"], d), "frame 0");
    let mut other = good.clone();
    other[6] ^= 0x5a;
    std::fs::write(d.join("other.vqz"), &other).unwrap();
    assert_fails(&vqz(&["decompress", "other.vqz"], d), "--model");
    std::fs::write(d.join("empty.png"), b"").unwrap();
    assert_fails(&vqz(&["compress", "empty.png"], d), "empty");
    std::fs::write(d.join("junk.png"), b"this is not an image").unwrap();
    assert_fails(&vqz(&["compress", "junk.png"], d), "not an image");
    std::fs::create_dir(d.join("folder")).unwrap();
    assert_fails(&vqz(&["compress", "folder"], d), "directory");
    // An IDX file with more images than its header counts, in plain and
    // gzip form, and a gzip file with data after its end: all refused, as
    // reading them would quietly drop the rest (and --rm delete it).
    let mut idx = vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2];
    idx.extend_from_slice(&[9; 8]);
    std::fs::write(d.join("long.idx"), &idx).unwrap();
    let gz = |data: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(d.join("long.idx.gz"), gz(&idx)).unwrap();
    let mut junk = gz(&idx[..20]);
    junk.extend_from_slice(b"not gzip");
    std::fs::write(d.join("junk.idx.gz"), junk).unwrap();
    for f in ["long.idx", "long.idx.gz"] {
        let out = vqz(&["compress", f, "--rm"], d);
        assert_fails(
            &out,
            "header counts 1 images of 2x2 (4 bytes), the file holds 8",
        );
        assert!(d.join(f).exists());
    }
    assert_fails(
        &vqz(&["compress", "junk.idx.gz"], d),
        "inflating junk.idx.gz",
    );
    // An animated PNG: its frames after the first would be lost.
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut h = crc32fast::Hasher::new();
        h.update(kind);
        h.update(data);
        c.extend_from_slice(&h.finalize().to_be_bytes());
        c
    };
    let mut apng = b"\x89PNG\r\n\x1a\n".to_vec();
    apng.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
    apng.extend(chunk(b"acTL", &[0, 0, 0, 2, 0, 0, 0, 0]));
    apng.extend(chunk(
        b"IDAT",
        &[0x78, 0x01, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    ));
    apng.extend(chunk(b"IEND", &[]));
    std::fs::write(d.join("anim.png"), apng).unwrap();
    assert_fails(
        &vqz(&["compress", "anim.png", "--rm"], d),
        "anim.png is an animated PNG",
    );
    assert!(d.join("anim.png").exists());
    assert_fails(&vqz(&["decompress", "missing.vqz"], d), "missing.vqz");
    assert_fails(
        &vqz(&["compress", "-l", "9", "7.png", "-o", "y.vqz"], d),
        "level 9",
    );
    assert_fails(
        &vqz(&["compress", "--model", "7.png", "7.png", "-o", "z.vqz"], d),
        "model",
    );
}

#[test]
fn an_embedded_model_decodes_with_another_default() {
    let dir = setup();
    let d = dir.path();
    let out = vqz(&["compress", "--embed-model", "7.png"], d);
    assert!(out.status.success());
    let info = stdout_of(&["info", "7.png.vqz"], d);
    assert!(info.contains("embedded"), "{info}");
    assert_ok(&vqz(&["verify", "7.png.vqz"], d));
}

/// A private input gives private outputs, as with gzip.
#[cfg(unix)]
#[test]
fn outputs_take_the_permissions_of_their_input() {
    use std::os::unix::fs::PermissionsExt;
    let dir = setup();
    let d = dir.path();
    let mode = |f: &str| std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
    std::fs::set_permissions(d.join("7.png"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_ok(&vqz(&["compress", "7.png", "--refine", "0"], d));
    assert_eq!(mode("7.png.vqz"), 0o600);
    assert_ok(&vqz(&["decompress", "7.png.vqz", "-o", "back.png"], d));
    assert_eq!(mode("back.png"), 0o600);
}

/// A file of the model shipped before (`mnist 7`) names the model it needs,
/// and decodes once that model's file is given.
#[test]
fn a_file_of_an_earlier_model_names_it_and_decodes_with_it() {
    let dir = setup();
    let d = dir.path();
    std::fs::copy(testdata("golden/mnist-7/7.vqz"), d.join("old.vqz")).unwrap();
    let info = stdout_of(&["info", "old.vqz"], d);
    assert!(
        info.contains("model:      2eb036fb (not available here"),
        "{info}"
    );
    assert_fails(
        &vqz(&["decompress", "old.vqz", "-o", "old.png"], d),
        "encoded with model 2eb036fb, which is not available",
    );
    assert!(!d.join("old.png").exists());
    let mnist_7 = testdata("models/mnist-7.safetensors");
    let mnist_7 = mnist_7.to_str().unwrap();
    assert_ok(&vqz(
        &["decompress", "old.vqz", "--model", mnist_7, "-o", "old.png"],
        d,
    ));
    let info = stdout_of(&["info", "old.vqz", "--model", mnist_7], d);
    assert!(info.contains("(known: mnist 7)"), "{info}");
}

/// `--model` adds a model: a stream of the built-in model still decodes.
#[test]
fn a_model_option_does_not_hide_the_built_in_model() {
    let dir = setup();
    let d = dir.path();
    assert_ok(&vqz(&["compress", "7.png", "--refine", "0"], d));
    let other = testdata("models/mnist-5.safetensors");
    let other = other.to_str().unwrap();
    let out = vqz(
        &[
            "decompress",
            "7.png.vqz",
            "--model",
            other,
            "-o",
            "back.png",
        ],
        d,
    );
    assert_ok(&out);
    assert_ok(&vqz(&["verify", "7.png.vqz", "--model", other], d));
    let info = stdout_of(&["info", "7.png.vqz", "--model", other], d);
    assert!(info.contains("(known: mnist 8)"), "{info}");
    // A --model that does not load is an error, for info too.
    assert_fails(
        &vqz(&["info", "7.png.vqz", "--model", "missing.safetensors"], d),
        "loading model missing.safetensors",
    );
}

/// `info` reads standard input like the other commands, and a failed write
/// of any command's report is one error line, not a panic.
#[test]
fn info_and_verify_report_to_standard_output_or_fail_cleanly() {
    let dir = setup();
    let d = dir.path();
    assert_ok(&vqz(&["compress", "7.png", "--refine", "0"], d));
    let bytes = std::fs::read(d.join("7.png.vqz")).unwrap();
    let piped = vqz_with_stdin(&["info", "-"], d, &bytes);
    assert_ok(&piped);
    let named = vqz(&["info", "7.png.vqz"], d);
    let piped =
        String::from_utf8_lossy(&piped.stdout).replace("file:       -", "file:       7.png.vqz");
    assert_eq!(piped, String::from_utf8_lossy(&named.stdout));
    // `-` is standard input even beside a file named `-`: `-v` lists every
    // frame from the one pass a pipe allows.
    let mut args = vec!["compress", "-o", "many.vqz", "--refine", "0"];
    args.extend(["7.png"; 12]);
    assert_ok(&vqz(&args, d));
    std::fs::write(d.join("-"), b"not this").unwrap();
    let many = std::fs::read(d.join("many.vqz")).unwrap();
    let piped = vqz_with_stdin(&["info", "-", "-v"], d, &many);
    assert_ok(&piped);
    let listed = String::from_utf8_lossy(&piped.stdout);
    assert!(listed.contains("frames:     12"), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("  11 ")), "{listed}");
    // Only `-` itself is standard input: `-/` names the file `-` as a
    // folder, as it would for any other command.
    assert_fails(
        &vqz_with_stdin(&["info", "--", "-/"], d, &many),
        "opening -/",
    );
    if Path::new("/dev/full").exists() {
        for cmd in ["info", "verify"] {
            let full = std::fs::File::create("/dev/full").unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_vqz"))
                .args([cmd, "7.png.vqz"])
                .current_dir(d)
                .stdin(Stdio::null())
                .stdout(full)
                .output()
                .unwrap();
            assert_fails(&out, "writing standard output");
        }
    }
    assert_fails(
        &vqz(
            &["compress", "7.png", "-o", "nan.vqz", "--target-psnr", "NaN"],
            d,
        ),
        "not a number",
    );
    // A budget or target no level meets is coded anyway, with a warning.
    let out = vqz(
        &[
            "compress",
            "7.png",
            "-o",
            "tiny.vqz",
            "--max-bytes",
            "5",
            "--refine",
            "0",
        ],
        d,
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: the image fits in 5 bytes at no level; coded at the smallest, 1"),
        "{err}"
    );
}
