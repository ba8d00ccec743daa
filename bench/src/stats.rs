//! Samples, medians with min and max, percentiles.

use serde::Serialize;

/// One run's figure. `complete` is false when the run hit its deadline: the
/// value is then what was achieved until then (a bound, not a result).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub value: f64,
    pub complete: bool,
}

impl Sample {
    pub fn complete(value: f64) -> Sample {
        Sample { value, complete: true }
    }

    pub fn incomplete(value: f64) -> Sample {
        Sample { value, complete: false }
    }
}

/// Median, min and max of the runs of one figure.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
    /// Runs that hit their deadline.
    pub incomplete: usize,
}

/// `None` without samples.
pub fn summarize(samples: &[Sample]) -> Option<Summary> {
    let runs: Vec<f64> = samples.iter().map(|s| s.value).filter(|v| v.is_finite()).collect();
    if runs.is_empty() {
        return None;
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    Some(Summary {
        median: median(&sorted),
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        runs,
        incomplete: samples.iter().filter(|s| !s.complete).count(),
    })
}

/// The median of sorted values (the mean of the middle two for an even count).
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The nearest-rank percentile `p` (0–100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn summaries_count_incomplete_runs() {
        let s = summarize(&[Sample::complete(3.0), Sample::incomplete(1.0), Sample::complete(2.0)]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.incomplete), (2.0, 1.0, 3.0, 1));
        assert!(summarize(&[]).is_none());
    }
}
