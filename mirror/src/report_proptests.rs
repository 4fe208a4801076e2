//! Property tests of the report writer: whatever the query bytes, target names and counters,
//! the line is one JSON document that gives them back (invalid UTF-8 as U+FFFD), with control
//! characters escaped the way jansson does.

use crate::report::{checksum_hex, Report, TargetResult};
use proptest::prelude::*;
use serde_json::Value;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\"\\\\/a\u{7f}\u{80}\u{2028}é😀]{0,20}"
    ]
}

fn result() -> impl Strategy<Value = (String, u32, u64, u16, u64, String, Option<Value>)> {
    (
        text(),
        any::<u32>(),
        any::<u64>(),
        any::<u16>(),
        any::<u64>(),
        text(),
        prop::option::of(text().prop_map(|s| serde_json::json!({"at": "row", "value": s}))),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn line_is_json_that_gives_the_values_back(
        query in prop_oneof![prop::collection::vec(any::<u8>(), 0..60), text().prop_map(String::into_bytes)],
        command in any::<u8>(),
        session in any::<u64>(),
        query_id in any::<u64>(),
        results in prop::collection::vec(result(), 0..4),
    ) {
        let diffs: Vec<Option<String>> = results.iter().map(|r| r.6.as_ref().map(Value::to_string)).collect();
        let report = Report {
            query: &query,
            command,
            session,
            query_id,
            results: results
                .iter()
                .zip(&diffs)
                .map(|(r, d)| TargetResult { target: &r.0, checksum: r.1, rows: r.2, warnings: r.3, duration_ms: r.4, kind: &r.5, diff: d.clone() })
                .collect(),
        };
        let mut line = String::new();
        report.write_line(&mut line);
        prop_assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "one line: {:?}", line);
        prop_assert!(!line.trim_end_matches('\n').chars().any(|c| (c as u32) < 0x20), "raw control character in {:?}", line);
        // The native keys' \uXXXX escapes use uppercase hex (the diff object is ours, from serde_json).
        if diffs.iter().all(Option::is_none) {
            for esc in unicode_escapes(&line) {
                prop_assert!(esc.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()), "lowercase hex escape {:?}", esc);
            }
        }
        let doc: Value = serde_json::from_str(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        prop_assert_eq!(doc["query"].as_str().map(str::to_string), Some(String::from_utf8_lossy(&query).into_owned()));
        prop_assert_eq!(doc["command"].as_str().map(str::to_string), Some(bridge::protocol::command_name(command).to_string()));
        prop_assert_eq!(doc["session"].as_u64(), Some(session));
        prop_assert_eq!(doc["query_id"].as_u64(), Some(query_id));
        let got = doc["results"].as_array().cloned().unwrap_or_default();
        prop_assert_eq!(got.len(), results.len());
        for (g, r) in got.iter().zip(&results) {
            prop_assert_eq!(g["target"].as_str(), Some(r.0.as_str()));
            prop_assert_eq!(g["checksum"].as_str().map(str::to_string), Some(checksum_hex(r.1)));
            prop_assert_eq!(g["rows"].as_u64(), Some(r.2));
            prop_assert_eq!(g["warnings"].as_u64(), Some(r.3 as u64));
            prop_assert_eq!(g["duration"].as_u64(), Some(r.4));
            prop_assert_eq!(g["type"].as_str(), Some(r.5.as_str()));
            prop_assert_eq!(g.get("diff"), r.6.as_ref());
        }
    }
}

/// The XXXX of every `\uXXXX` escape in a JSON text.
fn unicode_escapes(json: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = json.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.next() == Some('u') {
            out.push(chars.by_ref().take(4).collect());
        }
    }
    out
}
