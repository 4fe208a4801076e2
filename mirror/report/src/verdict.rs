//! The verdict: everything the outputs show, computed once from the analysis. Its serde
//! form is the `--json` output (schema `mirror-report/1`, README "JSON output"); the
//! terminal and HTML outputs render the same values.

use crate::analysis::class::{ClassStats, Sample, TargetStats};
use crate::analysis::compare::DiffKind;
use crate::analysis::timeline::Bin;
use crate::analysis::{Analyzer, InvalidLine};
use crate::hints;
use crate::latency::{Latency, Quantiles};
use serde::Serialize;
use std::collections::BTreeMap;

pub const SCHEMA: &str = "mirror-report/1";
/// Classes listed in the rankings.
pub const RANKED: usize = 10;
/// A class counts as slower on a target when that target's summed time is at least this
/// many times main's (or main's is 0 ms) over the statements both answered.
pub const SLOWER_RATIO: f64 = 1.10;

#[derive(Serialize)]
pub struct Verdict {
    pub schema: &'static str,
    pub main: Option<String>,
    /// True when `--main` was not given and main was taken as the first target of the first report.
    pub main_inferred: bool,
    pub baseline: Option<String>,
    /// Every target seen, main first.
    pub targets: Vec<String>,
    pub input: InputSummary,
    pub sessions: u64,
    pub time: TimeSpan,
    pub conflicts: ConflictSummary,
    pub threshold: Option<ThresholdResult>,
    pub latency: Vec<TargetLatency>,
    /// Sorted by upgrade conflicts, then count (descending).
    pub classes: Vec<Class>,
    /// Ids of the classes with upgrade conflicts, most first (at most 10).
    pub rank_by_conflicts: Vec<String>,
    /// Ids of the classes that lost the most time on a compared target, most first (at most
    /// 10; only classes at least 10 % slower in total there).
    pub rank_by_slowdown: Vec<String>,
    pub timeline: TimelineOut,
    /// Things the reader should know about this input (e.g. main never answered).
    pub notes: Vec<String>,
}

#[derive(Serialize)]
pub struct InputSummary {
    pub sources: Vec<String>,
    /// Non-blank lines read.
    pub lines: u64,
    pub statements: u64,
    pub invalid_lines: u64,
    pub invalid_examples: Vec<InvalidLine>,
    /// Lines that were not valid UTF-8, read with U+FFFD.
    pub utf8_replaced: u64,
}

#[derive(Serialize)]
pub struct TimeSpan {
    /// `message_time` (Kafka message timestamps), `file_mtime` (the files' modification
    /// times: the export has no time per line) or `none` (standard input).
    pub basis: &'static str,
    /// RFC 3339, UTC.
    pub first: Option<String>,
    pub last: Option<String>,
    pub seconds: Option<f64>,
}

#[derive(Serialize)]
pub struct ConflictSummary {
    /// Statements main answered: the others' answers are compared with its.
    pub compared: u64,
    /// Statements where a compared target's checksum differs from main's.
    pub statements: u64,
    /// Those of them in classes not marked non-deterministic: the upgrade's differences.
    pub upgrade: u64,
    /// Those of them in classes the baseline marks non-deterministic.
    pub non_deterministic: u64,
    /// upgrade / compared (0..1).
    pub rate: f64,
    /// Statements where the baseline differs from main.
    pub baseline_differences: u64,
    pub classes_with_upgrade_conflicts: usize,
    pub non_deterministic_classes: usize,
}

#[derive(Serialize)]
pub struct ThresholdResult {
    pub limit: String,
    pub exceeded: bool,
}

#[derive(Serialize)]
pub struct TargetLatency {
    pub target: String,
    pub role: &'static str,
    #[serde(flatten)]
    pub quantiles: Option<Quantiles>,
    pub ratio_to_main: Option<Ratios>,
    /// The CDF for the chart: (latency ms, percentile) pairs.
    #[serde(skip)]
    pub cdf: Vec<(f64, f64)>,
}

#[derive(Serialize, Clone, Copy, Debug)]
pub struct Ratios {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// Summed durations on this target over summed durations on main, over the statements both answered.
    pub total: Option<f64>,
}

#[derive(Serialize)]
pub struct Class {
    /// 16 hex digits, stable for the same command and fingerprint.
    pub id: String,
    pub command: String,
    pub fingerprint: String,
    pub example: String,
    pub count: u64,
    /// Statements where a compared target differs from main.
    pub conflicts: u64,
    /// conflicts / count.
    pub conflict_rate: f64,
    /// Main and baseline differ too (`--baseline`): its conflicts are noise, not upgrade differences.
    pub non_deterministic: bool,
    pub baseline_differences: u64,
    /// Why the class may differ without an upgrade (its SQL, or what its conflicts look like).
    pub hints: Vec<&'static str>,
    /// Statements main did not answer, not compared.
    pub without_main: u64,
    pub targets: Vec<ClassTarget>,
    /// One sample statement per kind of difference.
    pub samples: Vec<Sample>,
}

#[derive(Serialize)]
pub struct ClassTarget {
    pub target: String,
    pub role: &'static str,
    pub answered: u64,
    pub dropped: u64,
    /// Statements of the class whose report does not list this target.
    pub absent: u64,
    pub conflicts: u64,
    /// Conflicts by kind (a conflict can be of several).
    pub kinds: BTreeMap<&'static str, u64>,
    pub with_report_diff: u64,
    pub latency: Option<Quantiles>,
    pub ratio_to_main: Option<Ratios>,
    /// Milliseconds this target spent more than main on the statements both answered.
    pub extra_ms: i64,
}

#[derive(Serialize)]
pub struct TimelineOut {
    /// `statements`: a bin is a run of consecutive statements, in input order.
    pub basis: &'static str,
    pub statements_per_bin: u64,
    pub bins: Vec<Bin>,
}

/// What the verdict needs besides the analysis.
pub struct RunInfo {
    pub sources: Vec<String>,
    /// File modification times (ms), when the input is files.
    pub mtimes_ms: Vec<i64>,
    pub threshold: Option<crate::cli::Threshold>,
}

/// A class id: 16 hex digits of the 64-bit FNV-1a hash of the class key (stable across runs
/// and versions, unlike the hash map's hasher).
pub fn class_id(command: &str, fingerprint: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in command.bytes().chain([0]).chain(fingerprint.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| (a / b * 100.0).round() / 100.0)
}

fn ratios(t: &Latency, main: &Latency, paired_ms: u64, paired_main_ms: u64) -> Option<Ratios> {
    let (t, m) = (t.summary()?, main.summary()?);
    Some(Ratios {
        p50: ratio(t.p50, m.p50),
        p95: ratio(t.p95, m.p95),
        p99: ratio(t.p99, m.p99),
        total: ratio(paired_ms as f64, paired_main_ms as f64),
    })
}

fn role(i: usize, a: &Analyzer) -> &'static str {
    if Some(i) == a.main {
        "main"
    } else if Some(i) == a.baseline {
        "baseline"
    } else {
        "compared"
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn time_span(a: &Analyzer, run: &RunInfo) -> TimeSpan {
    let (first, last, basis) = match (a.first_time_ms, a.last_time_ms) {
        (Some(f), Some(l)) => (Some(f), Some(l), "message_time"),
        _ if !run.mtimes_ms.is_empty() => (
            run.mtimes_ms.iter().min().copied(),
            run.mtimes_ms.iter().max().copied(),
            "file_mtime",
        ),
        _ => (None, None, "none"),
    };
    let basis = if first.is_none() { "none" } else { basis };
    // One file's modification time is where its span ends, not a span.
    let seconds = first
        .zip(last)
        .filter(|(f, l)| basis == "message_time" || f != l)
        .map(|(f, l)| (l - f) as f64 / 1000.0);
    TimeSpan {
        basis,
        first: first.map(rfc3339),
        last: last.map(rfc3339),
        seconds,
    }
}

/// The target order of the outputs: main, then the compared targets, then the baseline.
fn target_order(a: &Analyzer) -> Vec<usize> {
    let mut order: Vec<usize> = (0..a.targets.len()).collect();
    order.sort_by_key(|&i| (Some(i) != a.main, Some(i) == a.baseline, i));
    order
}

fn class_out(c: &ClassStats, a: &Analyzer, order: &[usize]) -> Class {
    let empty = TargetStats::default();
    let main_stats = a.main.and_then(|m| c.targets.get(m)).unwrap_or(&empty);
    let non_deterministic = a.baseline.is_some() && c.baseline_differs > 0;
    let mut targets = Vec::new();
    let (mut data_only, mut ok_data_only) = (0, 0);
    for &i in order {
        let Some(t) = c.targets.get(i) else { continue };
        if t.answered + t.dropped == 0 {
            continue;
        }
        data_only += t.kinds[DiffKind::Data.index()];
        ok_data_only += t.ok_data_only;
        let is_main = Some(i) == a.main;
        targets.push(ClassTarget {
            target: a.targets[i].clone(),
            role: role(i, a),
            answered: t.answered,
            dropped: t.dropped,
            absent: c.count - t.answered - t.dropped,
            conflicts: t.conflicts,
            kinds: DiffKind::CONFLICT_KINDS
                .iter()
                .filter(|k| t.kinds[k.index()] > 0)
                .map(|k| (k.name(), t.kinds[k.index()]))
                .collect(),
            with_report_diff: t.with_diff,
            latency: t.latency.summary(),
            ratio_to_main: if is_main {
                None
            } else {
                ratios(
                    &t.latency,
                    &main_stats.latency,
                    t.paired_ms,
                    t.paired_main_ms,
                )
            },
            extra_ms: t.paired_ms as i64 - t.paired_main_ms as i64,
        });
    }
    let mut hints = hints::from_sql(&c.fingerprint);
    hints.extend(hints::from_conflicts(
        &c.fingerprint,
        c.max_rows,
        data_only,
        ok_data_only,
    ));
    Class {
        id: class_id(&c.command, &c.fingerprint),
        command: c.command.to_string(),
        fingerprint: c.fingerprint.to_string(),
        example: c.example.clone(),
        count: c.count,
        conflicts: c.conflicts,
        conflict_rate: if c.count > 0 {
            c.conflicts as f64 / c.count as f64
        } else {
            0.0
        },
        non_deterministic,
        baseline_differences: c.baseline_differs,
        hints,
        without_main: c.without_main,
        targets,
        samples: c.samples.clone(),
    }
}

impl Class {
    pub fn upgrade_conflicts(&self) -> u64 {
        if self.non_deterministic {
            0
        } else {
            self.conflicts
        }
    }

    /// The most time a compared target lost on this class (ms), and which target; None if
    /// no compared target is slower by `SLOWER_RATIO`.
    pub fn slowdown(&self) -> Option<(&ClassTarget, i64)> {
        self.targets
            .iter()
            .filter(|t| t.role == "compared" && t.extra_ms > 0)
            .filter(|t| {
                t.ratio_to_main
                    .and_then(|r| r.total)
                    .is_none_or(|r| r >= SLOWER_RATIO)
            })
            .map(|t| (t, t.extra_ms))
            .max_by_key(|(_, e)| *e)
    }
}

/// Percentiles at which the latency chart samples each target's distribution.
fn cdf(l: &Latency) -> Vec<(f64, f64)> {
    let mut qs: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
    qs.extend([0.995, 0.999]);
    qs.sort_by(f64::total_cmp);
    qs.iter()
        .filter_map(|&q| l.quantile(q).map(|v| (v, q * 100.0)))
        .collect()
}

pub fn build(a: &Analyzer, run: RunInfo) -> Verdict {
    let order = target_order(a);
    let mut classes: Vec<Class> = a.classes.iter().map(|c| class_out(c, a, &order)).collect();
    classes.sort_by(|x, y| {
        y.upgrade_conflicts()
            .cmp(&x.upgrade_conflicts())
            .then(y.conflicts.cmp(&x.conflicts))
            .then(y.count.cmp(&x.count))
            .then(x.id.cmp(&y.id))
    });

    let upgrade: u64 = classes.iter().map(Class::upgrade_conflicts).sum();
    let compared: u64 = classes.iter().map(|c| c.count - c.without_main).sum();
    let rate = if compared > 0 {
        upgrade as f64 / compared as f64
    } else {
        0.0
    };
    let conflicts = ConflictSummary {
        compared,
        statements: a.conflict_statements,
        upgrade,
        non_deterministic: a.conflict_statements - upgrade,
        rate,
        baseline_differences: a.baseline_statements,
        classes_with_upgrade_conflicts: classes
            .iter()
            .filter(|c| c.upgrade_conflicts() > 0)
            .count(),
        non_deterministic_classes: classes.iter().filter(|c| c.non_deterministic).count(),
    };
    let rank_by_conflicts = classes
        .iter()
        .filter(|c| c.upgrade_conflicts() > 0)
        .take(RANKED)
        .map(|c| c.id.clone())
        .collect();
    let mut slow: Vec<(&Class, i64)> = classes
        .iter()
        .filter_map(|c| c.slowdown().map(|(_, e)| (c, e)))
        .collect();
    slow.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.id.cmp(&y.0.id)));
    let rank_by_slowdown = slow
        .iter()
        .take(RANKED)
        .map(|(c, _)| c.id.clone())
        .collect();

    let main_latency = a.main.map(|m| &a.latency[m]);
    let latency = order
        .iter()
        .map(|&i| {
            let l = &a.latency[i];
            let (paired, paired_main) = a
                .classes
                .iter()
                .filter_map(|c| c.targets.get(i))
                .fold((0, 0), |s, t| (s.0 + t.paired_ms, s.1 + t.paired_main_ms));
            TargetLatency {
                target: a.targets[i].clone(),
                role: role(i, a),
                quantiles: l.summary(),
                ratio_to_main: if Some(i) == a.main {
                    None
                } else {
                    main_latency.and_then(|m| ratios(l, m, paired, paired_main))
                },
                cdf: cdf(l),
            }
        })
        .collect();

    let mut notes = Vec::new();
    if a.main_inferred {
        notes.push(format!("main is taken to be '{}', the first target of the first report; give --main if it is not", a.targets[a.main.unwrap_or(0)]));
    }
    for (role, idx, name) in [
        ("main", a.main, &a.opts.main),
        ("baseline", a.baseline, &a.opts.baseline),
    ] {
        if let (Some(i), Some(n)) = (idx, name) {
            if a.latency[i].count() == 0 && a.statements > 0 {
                notes.push(format!(
                    "{role} target '{n}' never answered in this export (targets seen: {})",
                    a.targets
                        .iter()
                        .filter(|t| *t != n)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    let suspect: Vec<&str> = classes
        .iter()
        .filter(|c| c.upgrade_conflicts() > 0 && !c.hints.is_empty())
        .map(|c| &c.id[..8])
        .collect();
    if a.baseline.is_none() && !suspect.is_empty() {
        notes.push(format!(
            "{} conflicting classes look non-deterministic from their SQL or their conflicts ({}: see hints); a --baseline target on the old version would tell",
            suspect.len(),
            suspect.join(", ")
        ));
    }
    if a.statements > 0 && a.conflict_statements == a.statements {
        notes.push("every statement conflicts: an export written with report=on_conflict holds only conflicts, so its rates are not the traffic's".into());
    }
    if classes
        .iter()
        .any(|c| c.fingerprint == crate::analysis::OVERFLOW_CLASS)
    {
        notes.push(format!(
            "more classes than --max-classes ({}): the rest are counted together",
            a.opts.max_classes
        ));
    }

    let threshold = run.threshold.map(|t| ThresholdResult {
        limit: t.to_string(),
        exceeded: t.exceeded(upgrade, rate),
    });
    Verdict {
        schema: SCHEMA,
        main: a.main.map(|m| a.targets[m].clone()),
        main_inferred: a.main_inferred,
        baseline: a.baseline.map(|b| a.targets[b].clone()),
        targets: order.iter().map(|&i| a.targets[i].clone()).collect(),
        input: InputSummary {
            sources: run.sources.clone(),
            lines: a.lines,
            statements: a.statements,
            invalid_lines: a.invalid,
            invalid_examples: a.invalid_examples.clone(),
            utf8_replaced: a.utf8_replaced,
        },
        sessions: a.sessions.len(),
        time: time_span(a, &run),
        conflicts,
        threshold,
        latency,
        classes,
        rank_by_conflicts,
        rank_by_slowdown,
        timeline: TimelineOut {
            basis: "statements",
            statements_per_bin: a.timeline.width(),
            bins: a.timeline.bins().to_vec(),
        },
        notes,
    }
}

impl Verdict {
    pub fn class(&self, id: &str) -> Option<&Class> {
        self.classes.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_ids_are_stable() {
        assert_eq!(
            class_id("COM_QUERY", "select ?"),
            class_id("COM_QUERY", "select ?")
        );
        assert_ne!(
            class_id("COM_QUERY", "select ?"),
            class_id("COM_STMT_PREPARE", "select ?")
        );
        // Pinned: the id must not change between versions.
        assert_eq!(class_id("COM_QUERY", "select ?"), "2cbc88e752b37b52");
    }

    #[test]
    fn ratios_need_a_nonzero_main() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
    }
}
