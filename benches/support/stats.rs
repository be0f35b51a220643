//! Percentiles and other summaries of the samples.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::report::num;

/// The highest value (µs) a histogram records: ten minutes.
pub const HIGHEST_US: u64 = 600_000_000;

/// An HDR histogram of µs values from 1 to [`HIGHEST_US`], three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, HIGHEST_US, 3).expect("histogram bounds")
}

/// The median, 95th and 99th percentiles of something, ms.
#[derive(Clone, Copy, Default)]
pub struct Pcts {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Pcts {
    /// Of µs values, through an HDR histogram like every latency here; zeros when there are none.
    pub fn of_us(values: impl IntoIterator<Item = u64>) -> Self {
        let mut h = histogram();
        for v in values {
            let _ = h.record(v.max(1));
        }
        if h.is_empty() {
            return Self::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self { p50: ms(0.5), p95: ms(0.95), p99: ms(0.99) }
    }

    /// [`Pcts::of_us`] of ms values.
    pub fn of_ms(values: &[f64]) -> Self {
        Self::of_us(values.iter().map(|v| (v * 1000.0) as u64))
    }

    /// Nearest-rank percentiles of the values themselves (the `Server-Timing` phases come in
    /// whole ms, which a histogram would blur); `None` when there are none.
    pub fn nearest_rank(mut v: Vec<f64>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Self { p50: at(0.5), p95: at(0.95), p99: at(0.99) })
    }

    pub fn json(&self) -> Value {
        json!({ "p50": self.p50, "p95": self.p95, "p99": self.p99 })
    }

    /// `p50 / p95 / p99`, whole numbers without a decimal (see [`num`]).
    pub fn cell(&self) -> String {
        format!("{} / {} / {}", num(self.p50), num(self.p95), num(self.p99))
    }

    /// `p50 / p95 / p99`, one decimal each.
    pub fn cell_fixed(&self) -> String {
        format!("{:.1} / {:.1} / {:.1}", self.p50, self.p95, self.p99)
    }

    /// Each percentile minus the same one of `other`.
    pub fn minus(&self, other: &Self) -> Self {
        Self { p50: self.p50 - other.p50, p95: self.p95 - other.p95, p99: self.p99 - other.p99 }
    }
}

/// The mean; `None` of nothing.
pub fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The lowest and the highest value (∞ and −∞ of nothing).
pub fn range(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &d| (lo.min(d), hi.max(d)))
}
