//! `cargo xtask bench predict [SERIES]`: forecaster inference throughput
//! (hidden 32, 60-step windows): candle batched vs the plain reference vs
//! the production kernel, in one process on the same windows; and the
//! failure model's training time per epoch on the Backblaze dev set when
//! ../shared/data/backblaze-2013-04 exists. Release build.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

pub fn run(root: &Path, series: usize) -> Result<String> {
    super::build_release(root, &["-p", "predict", "--example", "infer_bench"])?;
    let bin = root.join("target/release/examples/infer_bench");
    let data = root.join("../shared/data/backblaze-2013-04");
    let mut runs = Vec::new();
    for i in 0..3 {
        let mut cmd = Command::new(&bin);
        cmd.arg(series.to_string()).arg("1024");
        if i == 0 && data.is_dir() {
            cmd.arg(&data);
        }
        let out = cmd.output().context("running infer_bench")?;
        anyhow::ensure!(
            out.status.success(),
            "infer_bench: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        runs.push(v);
    }
    let col = |k: &str| -> Vec<f64> { runs.iter().filter_map(|r| r[k].as_f64()).collect() };
    let med = |k: &str| super::median(&mut col(k));
    let (candle, reference, kernel, portable) = (
        med("candle_batched_us_per_series"),
        med("reference_us_per_series"),
        med("kernel_us_per_series"),
        med("kernel_portable_us_per_series"),
    );
    let mut report = format!(
        "Forecaster inference, hidden 32, 60-step windows, {series} series, median of 3 runs (2 cores):\n\n\
         | path | µs/series | cores per 1M series at 1-min cadence | ratio to plain reference |\n|---|---:|---:|---:|\n"
    );
    for (name, us) in [
        ("candle, batches of 1024", candle),
        ("plain reference (naive loops)", reference),
        ("kernel, baseline x86-64 build", portable),
        (
            "kernel (production path: AVX2+FMA where the CPU has it)",
            kernel,
        ),
    ] {
        report.push_str(&format!(
            "| {name} | {us:.1} | {:.2} | {:.2}× |\n",
            us * 1e6 / 60e6,
            us / reference
        ));
    }
    if let (Some(s), Some(e), Some(n)) = (
        runs[0]["backblaze_train_s"].as_f64(),
        runs[0]["backblaze_s_per_epoch"].as_f64(),
        runs[0]["backblaze_train_examples"].as_u64(),
    ) {
        report.push_str(&format!(
            "\nFailure model on the Backblaze dev set: {n} training examples, {s:.2} s for 30 epochs (incl. feature extraction and calibration) = {e:.3} s/epoch\n"
        ));
    }
    Ok(report)
}
