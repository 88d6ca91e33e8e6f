//! Replays every stored fuzz input under `testdata/fuzz-regressions/<target>/`
//! through the same checks the fuzz targets run.

#[path = "support/synthetic.rs"]
mod synthetic;

#[path = "support/fuzz_checks.rs"]
mod fuzz_checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/fuzz-regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        eprintln!("replaying {}", path.display());
        check(&data);
        count += 1;
    }
    count
}

#[test]
fn container_reader_regressions() {
    replay("container_reader", fuzz_checks::container_reader);
}

#[test]
fn blocks_regressions() {
    replay("blocks", fuzz_checks::blocks);
}

#[test]
fn ans_decoder_regressions() {
    replay("ans_decoder", fuzz_checks::ans_decoder);
}

#[test]
fn prior_from_bytes_regressions() {
    replay("prior_from_bytes", fuzz_checks::prior_from_bytes);
}
