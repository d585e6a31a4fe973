//! Inference throughput of the forecaster (hidden 32, 60-step windows),
//! batched candle path vs the plain single-series reference, in one process
//! on the same windows. Run by `cargo xtask bench predict` (release build).
//! Prints one JSON line.
#![allow(clippy::print_stdout)]

use predict::forecast::{Config, Forecaster};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let series: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let batch: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let cfg = Config {
        window: 60,
        horizon: 5,
        hidden: 32,
        epochs: 1,
        ..Config::default()
    };
    let mut model = Forecaster::new(cfg).expect("model");
    let mut rng = fastrand::Rng::with_seed(1);
    let mk = |rng: &mut fastrand::Rng, n: usize| -> Vec<f32> {
        let level = rng.f32() * 100.0;
        (0..n)
            .map(|t| {
                #[allow(clippy::cast_precision_loss)]
                let t = t as f32;
                level + 5.0 * (t / 10.0).sin() + rng.f32()
            })
            .collect()
    };
    // Weights from a short real training run, so activations are realistic.
    let train: Vec<Vec<f32>> = (0..8).map(|_| mk(&mut rng, 400)).collect();
    model.train(&train, |_| {}).expect("train");
    let data: Vec<Vec<f32>> = (0..series).map(|_| mk(&mut rng, 60)).collect();
    let windows: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
    // Warm up both paths.
    model
        .predict(&windows[..batch.min(series)])
        .expect("predict");
    model
        .predict_reference(&windows[..100.min(series)])
        .expect("reference");
    let t = Instant::now();
    let mut n = 0;
    for chunk in windows.chunks(batch) {
        n += model.predict(chunk).expect("predict").len();
    }
    let batched = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let m = model.predict_reference(&windows).expect("reference").len();
    let reference = t.elapsed().as_secs_f64();
    let kernel = model.kernel().expect("kernel");
    kernel.predict(&windows[..100.min(series)]).expect("kernel");
    let t = Instant::now();
    let q = kernel.predict(&windows).expect("kernel").len();
    let fast = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let p = kernel.predict_portable(&windows).expect("kernel").len();
    let portable = t.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let (b_us, r_us, k_us, p_us) = (
        batched * 1e6 / n as f64,
        reference * 1e6 / m as f64,
        fast * 1e6 / q as f64,
        portable * 1e6 / p as f64,
    );
    // Training time per epoch of the failure model on a Backblaze directory, if given.
    let training = args.get(2).map(|dir| {
        let fleet = predict::data::backblaze::load(std::path::Path::new(dir), |_, _| {}).expect("backblaze");
        let t = Instant::now();
        let m = predict::eval::backblaze::LstmFailure::train(&fleet, 1, |_, _| {}).expect("train");
        let secs = t.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let per_epoch = secs / m.model.config().epochs as f64;
        format!(
            ",\"backblaze_train_examples\":{},\"backblaze_train_s\":{secs:.2},\"backblaze_s_per_epoch\":{per_epoch:.3}",
            m.train_examples
        )
    });
    println!(
        "{{\"series\":{series},\"batch\":{batch},\"threads\":{},\"candle_batched_us_per_series\":{b_us:.2},\"reference_us_per_series\":{r_us:.2},\"kernel_us_per_series\":{k_us:.2},\"kernel_portable_us_per_series\":{p_us:.2}{}}}",
        std::thread::available_parallelism().map_or(1, usize::from),
        training.unwrap_or_default()
    );
}
