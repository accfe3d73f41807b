//! Replays the fuzz corpora and crash reproducers on stable Rust, so CI exercises what the
//! fuzzers found without nightly or libFuzzer.
//!
//! The checks are the fuzz crate's own (`fuzz/src/`, included with `#[path]`): a file here fails
//! exactly when its fuzz target would crash on it. Every file in `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` is run through `<target>`'s check. Reproducers of bugs not fixed
//! yet live in `fuzz/regressions/<target>/open/`: they are skipped by the replay and each has an
//! ignored test below that names the bug, so fixing it means removing the `ignore` and moving the
//! file up one folder.

#[path = "../fuzz/src/lib.rs"]
mod fuzz;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The fuzz crate's folder.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The regular files directly inside `folder` (none if it does not exist), sorted.
fn files_in(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable folder entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file, catching panics so one report names every failing file.
fn replay(check: fuzz::Check, files: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for file in files {
        let data = std::fs::read(file).expect("readable fuzz input");
        if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("non-text panic");
            failures.push(format!("{}: {message}", file.display()));
        }
    }
    failures
}

#[test]
fn corpora_and_regressions_pass_their_checks() {
    let mut replayed = 0;
    let mut failures = Vec::new();
    for (target, check) in fuzz::TARGETS {
        let mut files = files_in(&fuzz_dir().join("corpus").join(target));
        assert!(!files.is_empty(), "no committed corpus for {target}");
        files.extend(files_in(&fuzz_dir().join("regressions").join(target)));
        replayed += files.len();
        failures.extend(replay(check, &files));
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} fuzz inputs fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_regression_folder_belongs_to_a_target() {
    // A reproducer in a misspelt folder would silently never be replayed.
    let Ok(folders) = std::fs::read_dir(fuzz_dir().join("regressions")) else {
        return;
    };
    for folder in folders {
        let folder = folder.expect("readable folder entry").path();
        if !folder.is_dir() {
            continue;
        }
        let name = folder
            .file_name()
            .expect("a named folder")
            .to_string_lossy();
        assert!(
            fuzz::TARGETS.iter().any(|(target, _)| *target == name),
            "fuzz/regressions/{name} is not a fuzz target"
        );
    }
}

#[test]
fn seeds_pass_their_checks() {
    for (target, check) in fuzz::TARGETS {
        let seeds = fuzz::seeds::seeds(target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for (name, data) in seeds {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(&data)));
            assert!(outcome.is_ok(), "seed {target}/{name} fails its check");
        }
    }
}

#[test]
fn received_close_codes_match_the_rfc_exhaustively() {
    // The fuzzer only meets the codes it happens to generate; all 65536 are cheap to try here.
    for code in 0..=u16::MAX {
        fuzz::close_payload::check(&code.to_be_bytes());
    }
}
