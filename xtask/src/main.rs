//! Project automation. `cargo xtask codegen` regenerates `proto/src/gen/`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

mod codegen {
    include!("../../proto/src/codegen.rs");
}

fn main() -> Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("codegen") => run_codegen(),
        _ => bail!("usage: cargo xtask codegen"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run_codegen() -> Result<()> {
    let proto = root().join("proto");
    let out = proto.join("src/gen");
    std::fs::create_dir_all(&out)?;
    codegen::generate(&proto, &out).context("generating proto code (needs protoc)")?;
    println!("regenerated {}", out.display());
    Ok(())
}
