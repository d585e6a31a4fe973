//! Naive forecasts of hourly series: the baselines a learned forecaster is
//! scored against (`eval::demand`) and served instead of where it loses
//! (the coordinator's demand forecast).

/// Steps in a seasonal period (a day of hours).
pub const DAY: usize = 24;

/// Seasonal naive: step `k` after `window` is the value one day earlier
/// (repeating the last day for `k` beyond it). `window` holds at least a
/// day.
pub fn seasonal(window: &[f32], k: usize) -> f32 {
    window[window.len() - DAY + k % DAY]
}

/// Last value: the latest finite value of `window` (NaN when none).
pub fn last_value(window: &[f32]) -> f32 {
    window
        .iter()
        .rev()
        .copied()
        .find(|v| v.is_finite())
        .unwrap_or(f32::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_repeats_the_last_day_and_last_value_skips_gaps() {
        #[allow(clippy::cast_precision_loss)]
        let w: Vec<f32> = (0..48).map(|i| i as f32).collect();
        assert_eq!(seasonal(&w, 0), 24.0);
        assert_eq!(seasonal(&w, 23), 47.0);
        assert_eq!(seasonal(&w, 24), 24.0);
        assert_eq!(last_value(&[1.0, 2.0, f32::NAN]), 2.0);
        assert!(last_value(&[f32::NAN]).is_nan());
    }
}
