//! What is kept per query class: counts, per-target answers and latencies, and one sample
//! statement per kind of difference. Bounded per class whatever the number of statements.

use super::compare::DiffKind;
use crate::doc::Answer;
use crate::latency::Latency;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Longest SQL kept in a sample or example, in bytes.
pub const SAMPLE_SQL_BYTES: usize = 1024;
/// Longest `report_diff` kept as JSON; a longer one is kept as a truncated string.
pub const SAMPLE_DIFF_BYTES: usize = 4096;

#[derive(Default)]
pub struct TargetStats {
    pub answered: u64,
    /// Entries that say the target did not answer (dropped).
    pub dropped: u64,
    /// Statements whose answer differs from main's.
    pub conflicts: u64,
    pub kinds: [u64; 6],
    /// Conflicts that came with a `report_diff`.
    pub with_diff: u64,
    /// `data` conflicts where both answers are OK packets (insert ids, info text).
    pub ok_data_only: u64,
    pub latency: Latency,
    /// Statements both this target and main answered, and their summed durations.
    pub paired: u64,
    pub paired_ms: u64,
    pub paired_main_ms: u64,
}

/// An answer as a sample shows it.
#[derive(Serialize, Clone, Debug)]
pub struct Brief {
    pub target: String,
    pub checksum: String,
    pub rows: u64,
    pub warnings: u64,
    pub duration: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl Brief {
    pub fn new(target: &str, a: &Answer<'_>) -> Self {
        Brief {
            target: target.into(),
            checksum: a.checksum.into(),
            rows: a.rows,
            warnings: a.warnings,
            duration: a.duration,
            kind: a.kind.name(),
        }
    }
}

#[derive(Serialize, Clone, Debug)]
pub struct Sample {
    /// The kinds of difference this statement shows (one sample stands for each kind once).
    pub kinds: Vec<&'static str>,
    pub query: String,
    pub session: u64,
    pub query_id: u64,
    pub main: Brief,
    pub other: Brief,
    /// The mirror's `report_diff` for this answer (or the statement's), when it wrote one.
    pub report_diff: Option<Value>,
}

pub struct ClassStats {
    pub command: Box<str>,
    pub fingerprint: Box<str>,
    /// The first statement of the class, as sent.
    pub example: String,
    pub count: u64,
    /// Statements where a compared target (not main, not the baseline) differs from main.
    pub conflicts: u64,
    /// Statements where the baseline differs from main.
    pub baseline_differs: u64,
    /// Statements without an answer from main (main dropped or absent): not compared.
    pub without_main: u64,
    pub max_rows: u64,
    /// Indexed like the analyzer's targets; grows as targets appear.
    pub targets: Vec<TargetStats>,
    pub samples: Vec<Sample>,
}

impl ClassStats {
    pub fn new(command: &str, fingerprint: &str, example: &str) -> Self {
        ClassStats {
            command: command.into(),
            fingerprint: fingerprint.into(),
            example: truncate(example, SAMPLE_SQL_BYTES).into(),
            count: 0,
            conflicts: 0,
            baseline_differs: 0,
            without_main: 0,
            max_rows: 0,
            targets: Vec::new(),
            samples: Vec::new(),
        }
    }

    pub fn target(&mut self, t: usize) -> &mut TargetStats {
        if self.targets.len() <= t {
            self.targets.resize_with(t + 1, TargetStats::default);
        }
        &mut self.targets[t]
    }

    pub fn has_sample(&self, kind: DiffKind) -> bool {
        self.samples.iter().any(|s| s.kinds.contains(&kind.name()))
    }
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

/// A `report_diff` as the sample keeps it: the JSON itself when small enough.
pub fn diff_value(raw: &RawValue) -> Value {
    let text = raw.get();
    if text.len() <= SAMPLE_DIFF_BYTES {
        if let Ok(v) = serde_json::from_str(text) {
            return v;
        }
    }
    Value::String(truncate(text, SAMPLE_DIFF_BYTES).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc…");
        assert_eq!(truncate("aé", 2), "a…");
    }

    #[test]
    fn large_diffs_are_cut() {
        let small: Box<RawValue> = serde_json::from_str(r#"{"row":3}"#).unwrap();
        assert_eq!(diff_value(&small), serde_json::json!({"row": 3}));
        let big = format!("\"{}\"", "x".repeat(SAMPLE_DIFF_BYTES * 2));
        let big: Box<RawValue> = serde_json::from_str(&big).unwrap();
        let Value::String(s) = diff_value(&big) else {
            panic!()
        };
        assert!(s.len() <= SAMPLE_DIFF_BYTES + 3 && s.ends_with('…'));
    }
}
