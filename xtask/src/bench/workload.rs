//! The batches both peers receive: identical samples, identical batch shape.

use super::data::Series;

#[derive(Debug, Clone)]
pub struct BatchSeries {
    /// Index of the series within its host (the agent-side compact id - 1).
    pub index: u32,
    pub metric: &'static str,
    pub component: String,
    pub ts_ms: Vec<i64>,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct Batch {
    pub host: String,
    pub series: Vec<BatchSeries>,
}

impl Batch {
    pub fn samples(&self) -> u64 {
        self.series.iter().map(|s| s.values.len() as u64).sum()
    }
}

/// Throughput workload: `hosts` agents, each with `series` series, each batch
/// carrying `per_batch` consecutive samples of every series of one host,
/// 1 s apart, ending now. Values cycle through the real series.
pub fn throughput(
    real: &[Series],
    hosts: usize,
    series: usize,
    per_batch: usize,
    total_samples: u64,
    now_ms: i64,
) -> Vec<Vec<Batch>> {
    let per_host_batch = (series * per_batch) as u64;
    let batches_per_host = (total_samples / (per_host_batch * hosts as u64)).max(1);
    let steps = i64::try_from(batches_per_host * per_batch as u64).expect("fits");
    let start = now_ms - steps * 1000;
    (0..hosts)
        .map(|h| {
            (0..batches_per_host)
                .map(|b| Batch {
                    host: format!("bench-{h:03}"),
                    series: (0..series)
                        .map(|k| {
                            let src = &real[(h * series + k) % real.len()];
                            let first = usize::try_from(b).expect("fits") * per_batch;
                            let ts_ms = (0..per_batch)
                                .map(|i| start + i64::try_from(first + i).expect("fits") * 1000)
                                .collect();
                            let values = (0..per_batch)
                                .map(|i| src.values[(first + i) % src.values.len()])
                                .collect();
                            BatchSeries {
                                index: u32::try_from(k).expect("fits"),
                                metric: "bench_value",
                                component: format!("s{k:03}"),
                                ts_ms,
                                values,
                            }
                        })
                        .collect(),
                })
                .collect()
        })
        .collect()
}

/// Compression workload: every real series with its real timestamps, one
/// host, batches of `per_batch` samples of one series.
pub fn real(real: &[Series], per_batch: usize) -> Vec<Batch> {
    let mut out = Vec::new();
    for (k, s) in real.iter().enumerate() {
        for (ts, vs) in s.ts_ms.chunks(per_batch).zip(s.values.chunks(per_batch)) {
            out.push(Batch {
                host: "real-data".into(),
                series: vec![BatchSeries {
                    index: u32::try_from(k).expect("fits"),
                    metric: "real_value",
                    component: s.name.replace(['/', ' '], "_"),
                    ts_ms: ts.to_vec(),
                    values: vs.to_vec(),
                }],
            });
        }
    }
    out
}
