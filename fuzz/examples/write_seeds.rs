//! Writes the hand-written seeds (`src/seeds.rs`) into `corpus/<target>/seed-<name>`.
//!
//! Run from `fuzz/` with `cargo run --example write_seeds`. It only adds or overwrites seed
//! files; what the fuzzer found stays in the corpus beside them.

use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, _) in ringcast_fuzz::TARGETS {
        let folder = corpus.join(target);
        fs::create_dir_all(&folder)?;
        let seeds = ringcast_fuzz::seeds::seeds(target);
        for (name, data) in &seeds {
            fs::write(folder.join(format!("seed-{name}")), data)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}
