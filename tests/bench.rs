//! `vqz::bench` on a few digits with the in-process codecs only: the
//! report has every row it should, the numbers are sane, the files are
//! written. Nothing here looks at how fast anything was.
#![cfg(feature = "cli")]

use std::path::Path;

use vqz::bench::{self, BenchOptions, HeadlineCell, NoProgress};
use vqz::codec::Model;
use vqz::train::Dataset;

fn digits(n: usize) -> Dataset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/t10k-images-idx3-ubyte.gz");
    let mut data = Dataset::load(&path).unwrap();
    data.truncate(n);
    data
}

#[test]
fn bench_reports_every_codec_and_writes_its_files() {
    let model = Model::default_model().unwrap();
    let data = digits(20);
    let options = BenchOptions {
        repeats: 2,
        external: false,
        contact_images: 4,
        ..BenchOptions::default()
    };
    let result = bench::run(&model, &data, &options, &NoProgress).unwrap();
    let report = &result.report;
    assert_eq!(report.images, 20);
    assert!(report.cores >= 1);

    for level in 1..=model.max_level() {
        let setting = format!("level {level}");
        for codec in ["vqz", "vqz stream"] {
            let row = report
                .rows
                .iter()
                .find(|r| r.codec == codec && r.setting == setting)
                .unwrap_or_else(|| panic!("no {codec} {setting} row"));
            assert_eq!(row.images, 20);
            let payload = row.payload_bytes_per_image.unwrap();
            assert!(payload > 0.0 && payload < row.bytes_per_image);
            assert!(row.psnr_db() > 15.0 && row.psnr_db() < 60.0, "{row:?}");
            assert!(row.encode_images_per_s > 0.0 && row.decode_images_per_s > 0.0);
        }
        let file = report
            .rows
            .iter()
            .find(|r| r.codec == "vqz" && r.setting == setting)
            .unwrap();
        let stream = report
            .rows
            .iter()
            .find(|r| r.codec == "vqz stream" && r.setting == setting)
            .unwrap();
        // One stream shares its header among all images.
        assert!(stream.bytes_per_image < file.bytes_per_image);
        assert_eq!(stream.mean_mse, file.mean_mse);
    }
    let levels: Vec<f64> = report
        .rows
        .iter()
        .filter(|r| r.codec == "vqz")
        .map(|r| r.bytes_per_image)
        .collect();
    assert!(levels.windows(2).all(|w| w[0] < w[1]), "{levels:?}");

    let png: Vec<_> = report.codec_rows("PNG").collect();
    assert_eq!(png.len(), 1);
    assert!(png[0].lossless());
    assert!(png[0].psnr_db().is_infinite());
    assert_eq!(png[0].mean_psnr_db, bench::EXACT_IMAGE_PSNR_DB);

    let jpeg: Vec<_> = report.codec_rows("JPEG").collect();
    assert_eq!(jpeg.len(), options.jpeg_qualities.len());
    assert!(jpeg.iter().all(|r| !r.lossless() && r.psnr_db() > 10.0));
    assert!(jpeg.windows(2).all(|w| w[0].psnr_db() < w[1].psnr_db()));
    assert!(
        report
            .rows
            .iter()
            .all(|r| !matches!(r.codec.as_str(), "WebP" | "AVIF" | "JPEG XL"))
    );

    assert_eq!(report.headline.len(), usize::from(model.max_level()));
    let png_column = report
        .classical_codecs()
        .iter()
        .position(|&c| c == "PNG")
        .unwrap();
    for h in &report.headline {
        assert_eq!(
            h.cells[png_column],
            HeadlineCell::Lossless(png[0].bytes_per_image)
        );
    }

    let markdown = report.to_markdown();
    assert!(markdown.contains("| vqz | level 1 |"));
    assert!(markdown.contains("lossless"));
    let csv = report.to_csv();
    assert_eq!(csv.lines().count(), 1 + report.rows.len());

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench-out");
    result.write_to(&out).unwrap();
    for name in ["bench.md", "bench.csv", "rd.svg", "contact.png"] {
        assert!(out.join(name).metadata().unwrap().len() > 0, "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("bench.md")).unwrap(),
        markdown
    );
    assert!(result.rd_svg.starts_with("<svg"));
    let sheet = image::open(out.join("contact.png")).unwrap();
    // Originals plus one row per level, four digits across, scaled up.
    assert!(sheet.width() >= 4 * 28 * 2);
    assert!(sheet.height() >= (1 + u32::from(model.max_level())) * 28 * 2);
}

#[test]
fn speed_reports_every_figure() {
    let data = digits(8);
    let report = bench::speed::run(
        &Model::default_model,
        &data,
        1,
        vqz::codec::DEFAULT_REFINE_STEPS,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.rows.len(), 10);
    assert!(report.rows.iter().all(|r| r.images_per_s > 0.0));
    assert!(report.to_markdown().contains("network encode, batch 1"));
}
