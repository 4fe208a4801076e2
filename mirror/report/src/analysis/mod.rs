//! The streaming part: each line of the export is folded into per-class statistics and
//! dropped. What is kept grows with the number of classes (bounded by `max_classes`),
//! targets and sessions (a compressed bitmap), never with the number of statements.

pub mod class;
pub mod compare;
pub mod timeline;

use crate::doc::{self, Answer, Doc, Parsed};
use crate::fingerprint::fingerprint;
use crate::latency::Latency;
use class::{diff_value, truncate, Brief, ClassStats, Sample};
use compare::{compare, DiffKind};
use roaring::RoaringTreemap;
use rustc_hash::FxHashMap;
use serde::Serialize;
use timeline::Timeline;

/// Invalid lines shown in the report (all are counted).
pub const INVALID_SHOWN: usize = 5;
/// The class that takes the statements of classes beyond `max_classes`.
pub const OVERFLOW_CLASS: &str = "(other classes, beyond --max-classes)";

pub struct Options {
    pub main: Option<String>,
    pub baseline: Option<String>,
    pub max_classes: usize,
}

/// Where a line came from, for the invalid-line examples.
pub struct Origin<'a> {
    pub source: &'a str,
    pub line: u64,
    /// When the line was written, if the input says (Kafka message timestamps).
    pub time_ms: Option<i64>,
}

#[derive(Serialize, Clone, Debug)]
pub struct InvalidLine {
    pub source: String,
    pub line: u64,
    pub error: String,
    pub text: String,
}

pub struct Analyzer {
    pub opts: Options,
    pub targets: Vec<String>,
    pub main: Option<usize>,
    pub main_inferred: bool,
    pub baseline: Option<usize>,
    index: FxHashMap<Box<str>, usize>,
    pub classes: Vec<ClassStats>,
    overflow: Option<usize>,
    pub lines: u64,
    pub statements: u64,
    pub invalid: u64,
    pub invalid_examples: Vec<InvalidLine>,
    pub utf8_replaced: u64,
    pub sessions: RoaringTreemap,
    pub latency: Vec<Latency>,
    pub timeline: Timeline,
    pub conflict_statements: u64,
    pub baseline_statements: u64,
    pub first_time_ms: Option<i64>,
    pub last_time_ms: Option<i64>,
    fp: String,
    key: String,
    lossy: String,
}

impl Analyzer {
    pub fn new(opts: Options) -> Self {
        let mut a = Analyzer {
            targets: Vec::new(),
            main: None,
            main_inferred: false,
            baseline: None,
            index: FxHashMap::default(),
            classes: Vec::new(),
            overflow: None,
            lines: 0,
            statements: 0,
            invalid: 0,
            invalid_examples: Vec::new(),
            utf8_replaced: 0,
            sessions: RoaringTreemap::new(),
            latency: Vec::new(),
            timeline: Timeline::default(),
            conflict_statements: 0,
            baseline_statements: 0,
            first_time_ms: None,
            last_time_ms: None,
            fp: String::new(),
            key: String::new(),
            lossy: String::new(),
            opts,
        };
        if let Some(m) = a.opts.main.clone() {
            a.main = Some(a.target_index(&m));
        }
        if let Some(b) = a.opts.baseline.clone() {
            a.baseline = Some(a.target_index(&b));
        }
        a
    }

    fn target_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.targets.iter().position(|t| t == name) {
            return i;
        }
        self.targets.push(name.to_string());
        self.latency.push(Latency::default());
        self.targets.len() - 1
    }

    /// Folds one line of the export in. Blank lines are skipped; a line that is not a
    /// report is counted, and the first few are kept to show.
    pub fn feed(&mut self, line: &[u8], origin: &Origin<'_>) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.lines += 1;
        let mut lossy = std::mem::take(&mut self.lossy);
        let mut replaced = false;
        match doc::parse(line, &mut lossy, &mut replaced) {
            Parsed::Doc(d) => {
                self.utf8_replaced += replaced as u64;
                self.statement(&d, origin.time_ms);
            }
            Parsed::Invalid(error) => {
                self.invalid += 1;
                if self.invalid_examples.len() < INVALID_SHOWN {
                    let text = String::from_utf8_lossy(line);
                    self.invalid_examples.push(InvalidLine {
                        source: origin.source.to_string(),
                        line: origin.line,
                        error,
                        text: truncate(text.trim_end(), 200).into_owned(),
                    });
                }
            }
        }
        self.lossy = lossy;
    }

    fn class_of(&mut self, d: &Doc<'_>) -> usize {
        let query = d.query.as_deref().unwrap_or("");
        fingerprint(query, &mut self.fp);
        if d.query.is_none() && d.command == "COM_QUERY" {
            self.fp.push_str("(no query text)");
        }
        self.key.clear();
        if d.command != "COM_QUERY" {
            self.key.push_str(&d.command);
            self.key.push(' ');
        }
        self.key.push_str(&self.fp);
        if let Some(&i) = self.index.get(self.key.as_str()) {
            return i;
        }
        if self.classes.len() >= self.opts.max_classes {
            return *self.overflow.get_or_insert_with(|| {
                self.classes.push(ClassStats::new("", OVERFLOW_CLASS, ""));
                self.classes.len() - 1
            });
        }
        self.classes
            .push(ClassStats::new(&d.command, &self.fp, query));
        self.index
            .insert(self.key.as_str().into(), self.classes.len() - 1);
        self.classes.len() - 1
    }

    fn statement(&mut self, d: &Doc<'_>, time_ms: Option<i64>) {
        self.statements += 1;
        self.sessions.insert(d.session);
        if let Some(t) = time_ms {
            self.first_time_ms = Some(self.first_time_ms.map_or(t, |f| f.min(t)));
            self.last_time_ms = Some(self.last_time_ms.map_or(t, |l| l.max(t)));
        }
        if self.main.is_none() {
            if let Some(first) = d.results.first() {
                self.main = Some(self.target_index(&first.target));
                self.main_inferred = true;
            }
        }
        let c = self.class_of(d);
        let entries: Vec<(usize, Option<Answer<'_>>)> = d
            .results
            .iter()
            .map(|e| (self.target_index(&e.target), e.answer()))
            .collect();
        let class = &mut self.classes[c];
        class.count += 1;
        for (t, a) in &entries {
            let ts = class.target(*t);
            match a {
                Some(a) => {
                    ts.answered += 1;
                    ts.latency.add(a.duration);
                    self.latency[*t].add(a.duration);
                    class.max_rows = class.max_rows.max(a.rows);
                }
                None => ts.dropped += 1,
            }
        }
        let main = self.main;
        let Some((main, main_answer)) = entries
            .iter()
            .find(|(t, _)| Some(*t) == main)
            .and_then(|(t, a)| Some((*t, a.as_ref()?)))
        else {
            class.without_main += 1;
            self.timeline.push(false, false, time_ms);
            return;
        };
        let query = d.query.as_deref().unwrap_or("");
        let sample = |kinds: Vec<&'static str>,
                      t: usize,
                      a: &Answer<'_>,
                      diff: Option<&serde_json::value::RawValue>| Sample {
            kinds,
            query: truncate(query, class::SAMPLE_SQL_BYTES).into_owned(),
            session: d.session,
            query_id: d.query_id,
            main: Brief::new(&self.targets[main], main_answer),
            other: Brief::new(&self.targets[t], a),
            report_diff: diff.or(d.report_diff).map(diff_value),
        };
        let mut conflict = false;
        let mut baseline_differs = false;
        for (i, (t, a)) in entries.iter().enumerate() {
            let (t, Some(a)) = (*t, a) else { continue };
            if t == main {
                continue;
            }
            let diffs = compare(main_answer, a);
            let diff = d.results[i].report_diff;
            if Some(t) == self.baseline {
                if !diffs.is_empty() {
                    baseline_differs = true;
                    class.baseline_differs += 1;
                    if !class.has_sample(DiffKind::Baseline) {
                        class
                            .samples
                            .push(sample(vec![DiffKind::Baseline.name()], t, a, diff));
                    }
                }
            } else if !diffs.is_empty() {
                conflict = true;
                let ts = class.target(t);
                ts.conflicts += 1;
                ts.with_diff += diff.is_some() as u64;
                for k in diffs.iter() {
                    ts.kinds[k.index()] += 1;
                }
                if diffs.iter().eq([DiffKind::Data]) && main_answer.kind == doc::Kind::Ok {
                    ts.ok_data_only += 1;
                }
                let unsampled: Vec<&'static str> = diffs
                    .iter()
                    .filter(|k| !class.has_sample(*k))
                    .map(DiffKind::name)
                    .collect();
                if !unsampled.is_empty() {
                    class.samples.push(sample(unsampled, t, a, diff));
                }
            }
            let ts = class.target(t);
            ts.paired += 1;
            ts.paired_ms += a.duration;
            ts.paired_main_ms += main_answer.duration;
        }
        if conflict {
            class.conflicts += 1;
            self.conflict_statements += 1;
        }
        if baseline_differs {
            self.baseline_statements += 1;
        }
        self.timeline.push(conflict, baseline_differs, time_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(q: &str, session: u64, results: &[(&str, &str, u64, u64, u64, &str)]) -> String {
        let r: Vec<serde_json::Value> = results
            .iter()
            .map(|(t, c, rows, w, d, k)| serde_json::json!({"target": t, "checksum": c, "rows": rows, "warnings": w, "duration": d, "type": k}))
            .collect();
        serde_json::json!({"query": q, "command": "COM_QUERY", "session": session, "query_id": 1, "results": r}).to_string()
    }

    fn run(lines: &[String], baseline: Option<&str>) -> Analyzer {
        let mut a = Analyzer::new(Options {
            main: None,
            baseline: baseline.map(String::from),
            max_classes: 100,
        });
        for (i, l) in lines.iter().enumerate() {
            a.feed(
                l.as_bytes(),
                &Origin {
                    source: "t",
                    line: i as u64 + 1,
                    time_ms: None,
                },
            );
        }
        a
    }

    #[test]
    fn classes_conflicts_and_kinds() {
        let lines = vec![
            line(
                "SELECT v FROM t WHERE id = 1",
                1,
                &[
                    ("a", "1", 1, 0, 1, "resultset"),
                    ("b", "1", 1, 0, 2, "resultset"),
                ],
            ),
            line(
                "SELECT v FROM t WHERE id = 2",
                1,
                &[
                    ("a", "1", 1, 0, 1, "resultset"),
                    ("b", "2", 1, 0, 2, "resultset"),
                ],
            ),
            line(
                "SELECT v FROM t WHERE id = 3",
                2,
                &[
                    ("a", "1", 1, 0, 1, "resultset"),
                    ("b", "3", 0, 0, 2, "error"),
                ],
            ),
            line(
                "SELECT 1",
                2,
                &[
                    ("a", "1", 1, 0, 0, "resultset"),
                    ("b", "1", 1, 0, 0, "resultset"),
                ],
            ),
            "garbage".into(),
            String::new(),
        ];
        let a = run(&lines, None);
        assert_eq!(
            (a.lines, a.statements, a.invalid, a.sessions.len()),
            (5, 4, 1, 2)
        );
        assert_eq!(a.targets, ["a", "b"]);
        assert!(a.main_inferred);
        assert_eq!(a.classes.len(), 2);
        let c = &a.classes[0];
        assert_eq!(&*c.fingerprint, "select v from t where id = ?");
        assert_eq!((c.count, c.conflicts), (3, 2));
        let b = &c.targets[1];
        assert_eq!(b.kinds[DiffKind::Data.index()], 1);
        assert_eq!(b.kinds[DiffKind::ErrorOneSide.index()], 1);
        assert_eq!(b.kinds[DiffKind::Rows.index()], 1);
        assert_eq!((b.paired_ms, b.paired_main_ms), (6, 3));
        let kinds: Vec<&[&str]> = c.samples.iter().map(|s| s.kinds.as_slice()).collect();
        assert_eq!(
            kinds,
            [&["data"][..], &["error_one_side", "rows"]],
            "one sample per kind, a statement showing two stands for both"
        );
        assert_eq!(c.samples[1].query, "SELECT v FROM t WHERE id = 3");
        assert_eq!(a.invalid_examples[0].line, 5);
    }

    #[test]
    fn baseline_differences_are_kept_apart() {
        let lines = vec![
            line(
                "SELECT UUID()",
                1,
                &[
                    ("old", "1", 1, 0, 0, "resultset"),
                    ("new", "2", 1, 0, 0, "resultset"),
                    ("old2", "3", 1, 0, 0, "resultset"),
                ],
            ),
            line(
                "SELECT v FROM t",
                1,
                &[
                    ("old", "1", 1, 0, 0, "resultset"),
                    ("new", "2", 1, 0, 0, "resultset"),
                    ("old2", "1", 1, 0, 0, "resultset"),
                ],
            ),
        ];
        let a = run(&lines, Some("old2"));
        assert_eq!(
            a.targets,
            ["old2", "old", "new"],
            "the baseline is known from the start"
        );
        assert_eq!(a.main, Some(1));
        assert_eq!(
            (a.classes[0].conflicts, a.classes[0].baseline_differs),
            (1, 1)
        );
        assert_eq!(
            (a.classes[1].conflicts, a.classes[1].baseline_differs),
            (1, 0)
        );
        assert_eq!(a.baseline_statements, 1);
        let kinds: Vec<&[&str]> = a.classes[0]
            .samples
            .iter()
            .map(|s| s.kinds.as_slice())
            .collect();
        assert_eq!(kinds, [&["data"][..], &["baseline"]]);
    }

    #[test]
    fn statements_without_main_are_not_compared() {
        let l = r#"{"query":"SELECT 1","command":"COM_QUERY","session":1,"query_id":1,"results":[{"target":"a","dropped":true},{"target":"b","checksum":"1","rows":1,"warnings":0,"duration":0,"type":"ok"}]}"#;
        let a = run(&[l.to_string()], None);
        let c = &a.classes[0];
        assert_eq!(
            (
                c.without_main,
                c.conflicts,
                c.targets[0].dropped,
                c.targets[1].answered
            ),
            (1, 0, 1, 1)
        );
    }

    #[test]
    fn classes_beyond_the_limit_share_one() {
        let mut a = Analyzer::new(Options {
            main: None,
            baseline: None,
            max_classes: 2,
        });
        for t in ["a", "b", "c", "d"] {
            let l = line(
                &format!("SELECT x FROM {t}"),
                1,
                &[("m", "1", 1, 0, 0, "ok")],
            );
            a.feed(
                l.as_bytes(),
                &Origin {
                    source: "t",
                    line: 1,
                    time_ms: None,
                },
            );
        }
        assert_eq!(a.classes.len(), 3);
        assert_eq!(&*a.classes[2].fingerprint, OVERFLOW_CLASS);
        assert_eq!(a.classes[2].count, 2);
    }

    #[test]
    fn other_commands_are_their_own_classes() {
        let ping = r#"{"query":"","command":"COM_PING","session":1,"query_id":1,"results":[]}"#;
        let prep = r#"{"query":"SELECT 1","command":"COM_STMT_PREPARE","session":1,"query_id":2,"results":[]}"#;
        let q =
            r#"{"query":"SELECT 1","command":"COM_QUERY","session":1,"query_id":3,"results":[]}"#;
        let a = run(&[ping.into(), prep.into(), q.into()], None);
        assert_eq!(
            a.classes.iter().map(|c| c.without_main).sum::<u64>(),
            3,
            "no results, nothing compared"
        );
        let names: Vec<(&str, &str)> = a
            .classes
            .iter()
            .map(|c| (&*c.command, &*c.fingerprint))
            .collect();
        assert_eq!(
            names,
            [
                ("COM_PING", ""),
                ("COM_STMT_PREPARE", "select ?"),
                ("COM_QUERY", "select ?")
            ]
        );
    }
}
