//! The NAB score (Lavin & Ahmad, "Evaluating Real-time Anomaly Detection
//! Algorithms — the Numenta Anomaly Benchmark", 2015), written from its
//! published definition:
//!
//! * rows in the probationary prefix (15 % of the series, at most 750 rows)
//!   are not scored;
//! * a detection inside a labeled window scores `A_TP · σ̃(p) / σ̃(-1)`,
//!   where `p = -(right − i + 1) / width` is its position in the window and
//!   `σ̃(x) = 2·sigmoid(−5x) − 1`; only a window's best detection counts, and
//!   a window with none costs `−A_FN`;
//! * a detection outside every window scores `A_FP · σ̃(q)`, `q` its distance
//!   past the previous window's right edge in units of that window's width
//!   minus one (`σ̃(q) = −1` from `q ≥ 3`, and before any window);
//! * normalised: `100 · (S − S_null) / (S_perfect − S_null)`, the null
//!   detector flagging nothing (`−A_FN` per window) and the perfect one
//!   flagging each window's first row (`A_TP` per window).
//!
//! Detections here are alarm onsets (where a page would start), one per
//! alarm, so a long alarm is not charged once per row.

/// Application profile weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

pub const STANDARD: Profile = Profile {
    name: "standard",
    tp: 1.0,
    fp: 0.11,
    fn_: 1.0,
};
pub const REWARD_LOW_FP: Profile = Profile {
    name: "reward_low_FP_rate",
    tp: 1.0,
    fp: 0.22,
    fn_: 1.0,
};
pub const REWARD_LOW_FN: Profile = Profile {
    name: "reward_low_FN_rate",
    tp: 1.0,
    fp: 0.11,
    fn_: 2.0,
};

/// Raw score and its two reference points; sum these over series before
/// normalising.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Score {
    pub raw: f64,
    pub null: f64,
    pub perfect: f64,
}

impl Score {
    pub fn add(&mut self, o: Score) {
        self.raw += o.raw;
        self.null += o.null;
        self.perfect += o.perfect;
    }

    /// 0 = the null detector, 100 = perfect; NaN without windows.
    pub fn normalised(&self) -> f64 {
        100.0 * (self.raw - self.null) / (self.perfect - self.null)
    }
}

fn scaled_sigmoid(x: f64) -> f64 {
    if x >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// Rows of the probationary prefix.
pub fn probation_rows(n: usize) -> usize {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let p = (0.15 * n as f64).floor().min(750.0) as usize;
    p
}

/// Score one series: `ts` its row times, `windows` the labeled (start,
/// end) times (inclusive), `detected` one flag per row.
pub fn score(ts: &[i64], windows: &[(i64, i64)], detected: &[bool], profile: &Profile) -> Score {
    assert_eq!(ts.len(), detected.len(), "one flag per row");
    let probation = probation_rows(ts.len());
    // Windows as row ranges.
    let ranges: Vec<(usize, usize)> = windows
        .iter()
        .filter_map(|&(a, b)| {
            let l = ts.iter().position(|&t| t >= a)?;
            let r = ts.iter().rposition(|&t| t <= b)?;
            (l <= r).then_some((l, r))
        })
        .collect();
    let max_tp = scaled_sigmoid(-1.0);
    // Per scored window: best detection so far (starts at the miss cost).
    let mut best: Vec<Option<f64>> = ranges
        .iter()
        .map(|&(_, r)| (r >= probation).then_some(-profile.fn_))
        .collect();
    let mut fp = 0.0;
    let mut prev: Option<(usize, usize)> = None; // (right edge, width)
    let mut w = 0;
    for (i, &d) in detected.iter().enumerate() {
        while w < ranges.len() && ranges[w].1 < i {
            let (l, r) = ranges[w];
            prev = Some((r, r - l + 1));
            w += 1;
        }
        let inside = ranges.get(w).is_some_and(|&(l, _)| l <= i);
        if !d || i < probation {
            continue;
        }
        #[allow(clippy::cast_precision_loss)]
        if inside {
            let (l, r) = ranges[w];
            let width = (r - l + 1) as f64;
            let pos = -((r - i + 1) as f64) / width;
            let s = scaled_sigmoid(pos) * profile.tp / max_tp;
            if let Some(b) = best[w].as_mut() {
                *b = b.max(s);
            }
        } else {
            let q = match prev {
                None => 3.0,
                // A one-row window has no width to measure by: far past it.
                Some((_, 1)) => 3.0,
                Some((r, width)) => (i - r) as f64 / (width - 1) as f64,
            };
            fp += scaled_sigmoid(q) * profile.fp;
        }
    }
    let scored = best.iter().filter(|b| b.is_some()).count();
    #[allow(clippy::cast_precision_loss)]
    let n = scored as f64;
    Score {
        raw: fp + best.iter().flatten().sum::<f64>(),
        null: -profile.fn_ * n,
        perfect: profile.tp * n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| i * 60).collect()
    }

    fn flags(n: usize, at: &[usize]) -> Vec<bool> {
        (0..n).map(|i| at.contains(&i)).collect()
    }

    #[test]
    fn the_published_curve_points() {
        assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-5);
        assert!((scaled_sigmoid(-0.5) - 0.84828).abs() < 1e-5);
        assert!(scaled_sigmoid(0.0).abs() < 1e-12);
        assert!((scaled_sigmoid(1.0) + 0.98661).abs() < 1e-5);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
    }

    #[test]
    fn hand_computed_series() {
        // 1000 rows: probation 150; one window rows 400..=499 (width 100).
        let ts = rows(1000);
        let win = [(400 * 60, 499 * 60)];
        let p = &STANDARD;
        // Nothing flagged: the null score; first row of the window: perfect.
        let none = score(&ts, &win, &flags(1000, &[]), p);
        assert_eq!((none.raw, none.null, none.perfect), (-1.0, -1.0, 1.0));
        assert_eq!(none.normalised(), 0.0);
        let perfect = score(&ts, &win, &flags(1000, &[400]), p);
        assert!((perfect.raw - 1.0).abs() < 1e-12);
        assert!((perfect.normalised() - 100.0).abs() < 1e-9);
        // Halfway in: σ̃(-0.51)/σ̃(-1); only the best of two counts.
        let mid = score(&ts, &win, &flags(1000, &[450, 470]), p);
        let want = scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0);
        assert!((mid.raw - want).abs() < 0.02, "{mid:?}");
        // Before any window (after probation): a full false positive.
        let early = score(&ts, &win, &flags(1000, &[200, 400]), p);
        assert!((early.raw - (1.0 - 0.11)).abs() < 1e-12, "{early:?}");
        // Right after the window: almost a full false positive; far after: full.
        let after = score(&ts, &win, &flags(1000, &[400, 599]), p);
        let q = (599.0 - 499.0) / 99.0;
        assert!((after.raw - (1.0 + 0.11 * scaled_sigmoid(q))).abs() < 1e-12);
        // Probationary rows are ignored, detections and windows alike.
        let prob = score(&ts, &[(10 * 60, 20 * 60)], &flags(1000, &[10, 100]), p);
        assert_eq!((prob.raw, prob.null, prob.perfect), (0.0, 0.0, 0.0));
        assert!(prob.normalised().is_nan());
    }

    #[test]
    fn profiles_weigh_misses_and_false_alarms() {
        let ts = rows(1000);
        let win = [(400 * 60, 499 * 60)];
        let miss = score(&ts, &win, &flags(1000, &[]), &REWARD_LOW_FN);
        assert_eq!(miss.raw, -2.0);
        let fa = score(&ts, &win, &flags(1000, &[200, 400]), &REWARD_LOW_FP);
        assert!((fa.raw - (1.0 - 0.22)).abs() < 1e-12);
    }
}
