//! Conflicts over the course of the input in a fixed number of bins. The export has no time
//! per line (the mirror does not write one), so a bin is a run of consecutive statements;
//! when the input carries times (Kafka message timestamps) each bin also knows its time
//! range. When the bins are full, neighbours merge and each bin holds twice as many.

use serde::Serialize;

pub const MAX_BINS: usize = 120;

#[derive(Serialize, Clone, Default, Debug, PartialEq)]
pub struct Bin {
    /// Ordinal (from 0) of the bin's first statement.
    pub first_statement: u64,
    pub statements: u64,
    /// Statements where a compared target's answer differs from main's.
    pub conflicts: u64,
    /// Of those, statements where the baseline differs from main too.
    pub baseline_differs: u64,
    /// Milliseconds since the epoch, when the input has times.
    pub first_time_ms: Option<i64>,
    pub last_time_ms: Option<i64>,
}

pub struct Timeline {
    width: u64,
    bins: Vec<Bin>,
    next: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            width: 1,
            bins: Vec::with_capacity(MAX_BINS),
            next: 0,
        }
    }
}

impl Timeline {
    pub fn push(&mut self, conflict: bool, baseline_differs: bool, time_ms: Option<i64>) {
        let n = self.next;
        self.next += 1;
        if n.is_multiple_of(self.width) {
            if self.bins.len() == MAX_BINS {
                self.merge_pairs();
            }
            if n.is_multiple_of(self.width) {
                self.bins.push(Bin {
                    first_statement: n,
                    ..Bin::default()
                });
            }
        }
        let b = self.bins.last_mut().expect("a bin was opened");
        b.statements += 1;
        b.conflicts += conflict as u64;
        b.baseline_differs += (conflict && baseline_differs) as u64;
        if let Some(t) = time_ms {
            b.first_time_ms = Some(b.first_time_ms.map_or(t, |f| f.min(t)));
            b.last_time_ms = Some(b.last_time_ms.map_or(t, |l| l.max(t)));
        }
    }

    fn merge_pairs(&mut self) {
        let old = std::mem::take(&mut self.bins);
        for pair in old.chunks(2) {
            let mut b = pair[0].clone();
            if let Some(o) = pair.get(1) {
                b.statements += o.statements;
                b.conflicts += o.conflicts;
                b.baseline_differs += o.baseline_differs;
                b.first_time_ms = min_opt(b.first_time_ms, o.first_time_ms);
                b.last_time_ms = b.last_time_ms.max(o.last_time_ms);
            }
            self.bins.push(b);
        }
        self.width *= 2;
    }

    pub fn width(&self) -> u64 {
        self.width
    }

    pub fn bins(&self) -> &[Bin] {
        &self.bins
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) | (None, x) => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_stay_bounded_and_add_up() {
        let mut t = Timeline::default();
        for i in 0..10_000u64 {
            t.push(i % 10 == 0, i % 20 == 0, Some(i as i64));
        }
        assert!(t.bins().len() <= MAX_BINS);
        assert_eq!(t.bins().iter().map(|b| b.statements).sum::<u64>(), 10_000);
        assert_eq!(t.bins().iter().map(|b| b.conflicts).sum::<u64>(), 1_000);
        assert_eq!(
            t.bins().iter().map(|b| b.baseline_differs).sum::<u64>(),
            500
        );
        for w in t.bins().windows(2) {
            assert_eq!(w[0].first_statement + w[0].statements, w[1].first_statement);
            assert_eq!(w[0].statements, t.width());
            assert_eq!(w[0].last_time_ms.unwrap() + 1, w[1].first_time_ms.unwrap());
        }
    }

    #[test]
    fn few_statements_one_bin_each() {
        let mut t = Timeline::default();
        for _ in 0..5 {
            t.push(true, false, None);
        }
        assert_eq!(t.bins().len(), 5);
        assert_eq!(t.width(), 1);
    }
}
