//! Alarm evaluation against failure labels.
//!
//! Protocol (the same for every method, so they compare): a method raises an
//! alarm or not on each drive-day, using only data up to that day. For a
//! horizon of `h` days:
//!
//! - a failure on day `f` is *caught* if an alarm fires on some day `d` with
//!   `1 <= f - d <= h`; its lead time is `f - d` for the earliest such `d`.
//!   Failures with no observed day in `[f - h, f - 1]` inside the evaluation
//!   window cannot be caught and are not counted;
//! - an alarm-day is *true* if the drive fails 1..=h days later, *false*
//!   otherwise, including alarms too early for a later failure and alarms in
//!   the last `h` days of the data on drives that did not fail in it (the
//!   data cannot tell whether they failed afterwards: counted against the
//!   method, for every method alike);
//! - the failure day itself is neither: it is the event, not a prediction.
//!
//! Precision = true alarm-days / alarm-days; recall = caught / eligible
//! failures; false alarms per 1,000 drive-days. Public failure counts are
//! small (Backblaze April 2013: 43 failures in 21 days), so every ratio comes
//! with a 95% Wilson interval.

/// One drive's alarms over the days it was observed.
#[derive(Debug, Clone, Copy)]
pub struct DriveAlarms<'a> {
    pub days: &'a [i32],
    pub alarms: &'a [bool],
    pub failed_on: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlarmReport {
    pub horizon: i32,
    pub drive_days: usize,
    pub alarm_days: usize,
    pub true_alarm_days: usize,
    /// Failures that could be caught (see the module doc).
    pub failures: usize,
    pub caught: usize,
    /// Lead time in days of each caught failure.
    pub lead_times: Vec<i32>,
}

/// 95% Wilson score interval of `k` successes in `n` trials.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    #[allow(clippy::cast_precision_loss)]
    let (k, n) = (k as f64, n as f64);
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[allow(clippy::cast_precision_loss)]
fn ratio(k: usize, n: usize) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        k as f64 / n as f64
    }
}

impl AlarmReport {
    pub fn precision(&self) -> f64 {
        ratio(self.true_alarm_days, self.alarm_days)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.caught, self.failures)
    }
    pub fn false_alarms_per_1000_drive_days(&self) -> f64 {
        1000.0 * ratio(self.alarm_days - self.true_alarm_days, self.drive_days)
    }
    /// Lead-time quantiles (min, median, max) of caught failures.
    pub fn lead_time_summary(&self) -> Option<(i32, i32, i32)> {
        let mut l = self.lead_times.clone();
        l.sort_unstable();
        Some((*l.first()?, l[l.len() / 2], *l.last()?))
    }
}

/// Evaluate alarms of days in `[start, end]` (inclusive) at horizon `h`.
pub fn evaluate<'a>(
    h: i32,
    start: i32,
    end: i32,
    drives: impl IntoIterator<Item = DriveAlarms<'a>>,
) -> AlarmReport {
    let mut r = AlarmReport {
        horizon: h,
        ..AlarmReport::default()
    };
    for d in drives {
        let f = d.failed_on.filter(|f| (start..=end).contains(f));
        let mut eligible = false;
        let mut earliest: Option<i32> = None;
        for (&day, &alarm) in d.days.iter().zip(d.alarms) {
            if !(start..=end).contains(&day) || Some(day) == d.failed_on {
                continue;
            }
            // Days after a failure (a re-used serial) are not this drive's.
            if d.failed_on.is_some_and(|f| day > f) {
                continue;
            }
            r.drive_days += 1;
            let lead = f.map(|f| f - day);
            let in_window = lead.is_some_and(|l| (1..=h).contains(&l));
            eligible |= in_window;
            if alarm {
                r.alarm_days += 1;
                if in_window {
                    r.true_alarm_days += 1;
                    earliest = Some(earliest.map_or(day, |e: i32| e.min(day)));
                }
            }
        }
        if eligible {
            r.failures += 1;
            if let (Some(e), Some(f)) = (earliest, f) {
                r.caught += 1;
                r.lead_times.push(f - e);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_count_by_horizon() {
        let days: Vec<i32> = (0..20).collect();
        // Fails on day 15. Alarms on days 2 (too early for h=7), 10 and 12.
        let mut a = vec![false; 20];
        a[2] = true;
        a[10] = true;
        a[12] = true;
        a[15] = true; // the failure day itself: not counted
        let healthy = vec![true; 20]; // a drive alarmed every day, never failing
        let drives = [
            DriveAlarms {
                days: &days,
                alarms: &a,
                failed_on: Some(15),
            },
            DriveAlarms {
                days: &days,
                alarms: &healthy,
                failed_on: None,
            },
        ];
        let r = evaluate(7, 0, 19, drives);
        assert_eq!(r.failures, 1);
        assert_eq!(r.caught, 1);
        assert_eq!(r.lead_times, [5]);
        // Failing drive: days 0..15 (15 days; day 15 excluded, 16.. after failure).
        assert_eq!(r.drive_days, 15 + 20);
        assert_eq!((r.alarm_days, r.true_alarm_days), (3 + 20, 2));
        assert!((r.false_alarms_per_1000_drive_days() - 1000.0 * 21.0 / 35.0).abs() < 1e-9);
        // A 2-day horizon misses it (alarms 5 and 3 days ahead).
        let r2 = evaluate(2, 0, 19, drives);
        assert_eq!((r2.failures, r2.caught), (1, 0));
        // A window that ends before the failure: not eligible.
        let r3 = evaluate(7, 0, 9, drives);
        assert_eq!(r3.failures, 0);
    }

    #[test]
    fn wilson_intervals() {
        let (lo, hi) = wilson(5, 10);
        assert!(
            (lo - 0.2366).abs() < 1e-3 && (hi - 0.7634).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson(0, 20);
        assert!(lo == 0.0 && hi > 0.1 && hi < 0.2);
    }
}
