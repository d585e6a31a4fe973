//! Project automation. `cargo xtask codegen` regenerates `proto/src/gen/`;
//! `cargo xtask bench` runs the ingest and storage benchmarks (docs/BENCHMARKS.md).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

mod bench;
mod dist;

mod codegen {
    include!("../../proto/src/codegen.rs");
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("codegen") => run_codegen(),
        Some("bench") if args.get(1).map(String::as_str) == Some("snmp") => {
            bench::run_snmp(&root(), &args[2..])
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("agent") => {
            bench::run_agent(&root(), &args[2..])
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("predict") => {
            bench::run_predict(&root(), &args[2..])
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("ipmi") => {
            bench::run_ipmi(&root(), &args[2..])
        }
        Some("bench") => bench::run(&root(), &bench::Options::parse(&root(), &args[1..])?),
        Some("dist") => dist::docs(&root().join("dist")),
        _ => bail!("usage: cargo xtask codegen | cargo xtask bench [--help] | cargo xtask dist"),
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
