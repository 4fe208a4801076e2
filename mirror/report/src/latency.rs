//! Latency of one target in constant memory: a DDSketch (relative error 1 %) for the
//! quantiles, exact count, sum and max. Durations are the mirror's whole milliseconds.

use serde::Serialize;
use sketches_ddsketch::{Config, DDSketch};

pub struct Latency {
    sketch: DDSketch,
    count: u64,
    sum: u64,
    max: u64,
}

/// What a latency sketch says, in milliseconds.
#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub struct Quantiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            sketch: DDSketch::new(Config::new(0.01, 2048, 0.5)),
            count: 0,
            sum: 0,
            max: 0,
        }
    }
}

impl Latency {
    pub fn add(&mut self, ms: u64) {
        self.sketch.add(ms as f64);
        self.count += 1;
        self.sum += ms;
        self.max = self.max.max(ms);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0..=1): the element of rank ⌊q·(n−1)⌋ of the sorted
    /// durations, within 1 %, rounded to whole milliseconds like the durations themselves
    /// (so exact below 50 ms).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        // The sketch's estimate can pass the largest value by its error; max is exact.
        Some(
            self.sketch
                .quantile(q)
                .ok()
                .flatten()?
                .round()
                .min(self.max as f64),
        )
    }

    pub fn summary(&self) -> Option<Quantiles> {
        (self.count > 0).then(|| Quantiles {
            count: self.count,
            mean: self.sum as f64 / self.count as f64,
            p50: self.quantile(0.5).unwrap_or(0.0),
            p95: self.quantile(0.95).unwrap_or(0.0),
            p99: self.quantile(0.99).unwrap_or(0.0),
            max: self.max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[u64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64) as usize] as f64
    }

    fn check(values: &[u64]) {
        let mut l = Latency::default();
        for &v in values {
            l.add(v);
        }
        let mut s = values.to_vec();
        s.sort_unstable();
        for q in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0] {
            let got = l.quantile(q).unwrap();
            let want = exact(&s, q);
            assert!(
                got <= *s.last().unwrap() as f64,
                "q={q}: {got} above the max"
            );
            assert!(
                (got - want).abs() <= want * 0.01 + 0.5,
                "q={q}: got {got}, exact {want}, values {values:?}"
            );
        }
        let sum = l.summary().unwrap();
        assert_eq!(sum.max, *s.last().unwrap());
        assert_eq!(sum.count, values.len() as u64);
        assert_eq!(
            sum.mean,
            values.iter().sum::<u64>() as f64 / values.len() as f64
        );
    }

    #[test]
    fn small_inputs_against_exact_quantiles() {
        check(&[5]);
        check(&[0]);
        check(&[0, 0, 0, 1]);
        check(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        check(&[10, 1, 7, 3, 3, 3, 1000, 2, 0, 45]);
        check(&(0..100).collect::<Vec<_>>());
        check(&(0..1000).map(|i| (i * 7919) % 5000).collect::<Vec<_>>());
        check(&[1, 60_000, 3_600_000]);
        check(&[0, 250, 250, 250, 252, 250]);
    }

    #[test]
    fn whole_milliseconds_come_back_exact_when_small() {
        let mut l = Latency::default();
        for v in [0, 1, 2, 3, 17, 42] {
            l.add(v);
        }
        let got: Vec<f64> = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
            .iter()
            .map(|&q| l.quantile(q).unwrap())
            .collect();
        assert_eq!(got, [0.0, 1.0, 2.0, 3.0, 17.0, 42.0]);
    }

    #[test]
    fn empty_has_no_summary() {
        assert!(Latency::default().summary().is_none());
        assert!(Latency::default().quantile(0.5).is_none());
    }
}
