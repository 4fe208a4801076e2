//! mirror-report as a user runs it, on exports written here in the mirror's format: every
//! input kind, bad input, the outputs and the exit status. Needs no services.

mod common;

use common::{class, kinds, run, stderr, stdout, verdict, write};
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

/// One report line as the mirror writes it (mirror/src/report.rs).
fn rep(q: &str, session: u64, id: u64, results: &[(&str, &str, u64, u64, u64, &str)]) -> String {
    let r: Vec<String> = results
        .iter()
        .map(|(t, c, rows, w, d, k)| format!(r#"{{"target":"{t}","checksum":"{c}","rows":{rows},"warnings":{w},"duration":{d},"type":"{k}"}}"#))
        .collect();
    format!(
        r#"{{"query":{},"command":"COM_QUERY","session":{session},"query_id":{id},"results":[{}]}}"#,
        json!(q),
        r.join(",")
    )
}

/// Ten statements, two sessions: a class that differs in data once, one that always errors
/// on `new`, one that is three times slower on `new`, and a clean one.
fn export() -> String {
    let mut l = Vec::new();
    for i in 0..4u64 {
        let c = if i == 2 { "bbbbbbbb" } else { "aaaaaaaa" };
        l.push(rep(
            &format!("SELECT v FROM t WHERE id = {i}"),
            1,
            i + 1,
            &[
                ("old", "aaaaaaaa", 1, 0, 1, "resultset"),
                ("new", c, 1, 0, 1, "resultset"),
            ],
        ));
    }
    for i in 0..2u64 {
        l.push(rep(
            "SELECT * FROM gone",
            2,
            i + 1,
            &[
                ("old", "11111111", 3, 0, 2, "resultset"),
                ("new", "22222222", 0, 0, 0, "error"),
            ],
        ));
    }
    for i in 0..3u64 {
        l.push(rep(
            &format!("SELECT SUM(x) FROM big WHERE k > {i}"),
            2,
            i + 3,
            &[
                ("old", "33333333", 1, 0, 10, "resultset"),
                ("new", "33333333", 1, 0, 30, "resultset"),
            ],
        ));
    }
    l.push(rep(
        "SELECT 1",
        1,
        5,
        &[
            ("old", "44444444", 1, 0, 0, "resultset"),
            ("new", "44444444", 1, 0, 0, "resultset"),
        ],
    ));
    l.join("\n") + "\n"
}

#[test]
fn help_in_the_usual_style() {
    let o = run(&["--help"], None);
    assert_eq!(o.status.code(), Some(0));
    let h = stdout(&o);
    for opt in [
        "--kafka <BROKER>",
        "--topic <TOPIC>",
        "--group <GROUP>",
        "--baseline <TARGET>",
        "--main <TARGET>",
        "--fail-on-conflicts <N|RATE>",
        "--json",
        "--html <FILE>",
        "Exit status",
    ] {
        assert!(h.contains(opt), "--help lacks {opt}:\n{h}");
    }
    assert_eq!(run(&["--version"], None).status.code(), Some(0));
}

#[test]
fn classes_conflicts_kinds_and_latency_from_a_file() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "m.jsonl", &export());
    let v = verdict(&["--main", "old", &f]);
    assert_eq!(v["schema"], "mirror-report/1");
    assert_eq!(
        (
            v["input"]["statements"].as_u64(),
            v["sessions"].as_u64(),
            v["input"]["invalid_lines"].as_u64()
        ),
        (Some(10), Some(2), Some(0))
    );
    assert_eq!(v["targets"], json!(["old", "new"]));
    assert_eq!(v["main_inferred"], false);
    assert_eq!(
        common::conflicting(&v),
        ["select * from gone", "select v from t where id = ?"]
    );
    let point = class(&v, "select v from t where id = ?");
    assert_eq!(
        (point["count"].as_u64(), point["conflicts"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(kinds(point, "new"), ["data"]);
    assert_eq!(point["samples"][0]["query"], "SELECT v FROM t WHERE id = 2");
    let gone = class(&v, "select * from gone");
    assert_eq!(kinds(gone, "new"), ["error_one_side", "rows"]);
    assert_eq!(v["conflicts"]["upgrade"], 3);
    assert_eq!(v["conflicts"]["rate"], 0.3);
    // The slow class is first by slow-down: 20 ms more per statement, ×3.
    let slow = class(&v, "select sum(x) from big where k > ?");
    assert_eq!(v["rank_by_slowdown"][0], slow["id"]);
    let new = common::target(slow, "new");
    assert_eq!(
        (
            new["extra_ms"].as_i64(),
            new["ratio_to_main"]["total"].as_f64()
        ),
        (Some(60), Some(3.0))
    );
    assert_eq!(
        (
            new["latency"]["p50"].as_f64(),
            new["latency"]["max"].as_u64()
        ),
        (Some(30.0), Some(30))
    );
    assert_eq!(v["rank_by_conflicts"].as_array().unwrap().len(), 2);
    let old = &v["latency"][0];
    assert_eq!(
        (
            old["target"].as_str(),
            old["role"].as_str(),
            old["count"].as_u64(),
            old["max"].as_u64()
        ),
        (Some("old"), Some("main"), Some(10), Some(10))
    );
    assert_eq!(v["time"]["basis"], "file_mtime");
}

#[test]
fn terminal_output_names_the_differences() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "m.jsonl", &export());
    let o = run(&["--quiet", &f], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t = stdout(&o);
    for want in [
        "VERDICT: 2 of 4 classes differ on the compared server: 3 of 10 compared statements conflict (30 %)",
        "main: old   compared: new",
        "select v from t where id = ?",
        "error_one_side 2, rows 2",
        "Classes by slow-down",
        "select sum(x) from big where k > ?",
        "data (session 1, query_id 3): SELECT v FROM t WHERE id = 2",
        "main is taken to be 'old'",
    ] {
        assert!(t.contains(want), "terminal output lacks {want:?}:\n{t}");
    }
    assert!(
        !t.lines().any(|l| l.contains(" select ? ")),
        "clean classes are not listed:\n{t}"
    );
}

#[test]
fn invalid_lines_are_counted_and_shown_never_fatal() {
    let d = tempfile::tempdir().unwrap();
    let mut text = export().into_bytes();
    let bad = [
        "not json at all",
        r#"{"query":"SELECT 1","command":"COM_QUERY"}"#,
        r#"{"query":"x","command":"COM_QUERY","session":"one","query_id":1,"results":[]}"#,
        "[1,2,3]",
        r#"{"query":"cut short","command":"COM_QU"#,
        "{}",
        "",
        "   ",
    ];
    for b in bad {
        text.extend_from_slice(b.as_bytes());
        text.push(b'\n');
    }
    // Not valid UTF-8: read with U+FFFD, still a report.
    text.extend_from_slice(b"{\"query\":\"SELECT '\xff\xfe' FROM u\",\"command\":\"COM_QUERY\",\"session\":3,\"query_id\":1,\"results\":[]}\n");
    let p = d.path().join("bad.jsonl");
    std::fs::write(&p, &text).unwrap();
    let v = verdict(&[p.to_str().unwrap()]);
    assert_eq!(v["input"]["statements"], 11);
    assert_eq!(
        v["input"]["invalid_lines"], 6,
        "blank lines are skipped, the rest counted"
    );
    assert_eq!(v["input"]["utf8_replaced"], 1);
    let ex = v["input"]["invalid_examples"].as_array().unwrap();
    assert_eq!(ex.len(), 5, "the first five are shown");
    assert_eq!(
        (ex[0]["line"].as_u64(), ex[0]["text"].as_str()),
        (Some(11), Some("not json at all"))
    );
    assert!(
        ex[1]["error"].as_str().unwrap().contains("missing field"),
        "{}",
        ex[1]
    );
    let fffd = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["example"].as_str().unwrap().contains('\u{fffd}'));
    assert_eq!(fffd.unwrap()["fingerprint"], "select ? from u");
    let o = run(&["--quiet", p.to_str().unwrap()], None);
    assert!(
        stdout(&o).contains("Invalid lines: 6 (first 5 shown)"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("bad.jsonl:11: not a JSON object: not json at all"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("1 line was not valid UTF-8"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn standard_input_gzip_and_rotated_files() {
    let d = tempfile::tempdir().unwrap();
    let all = export();
    let lines: Vec<&str> = all.lines().collect();
    let stdin_v: Value =
        serde_json::from_slice(&run(&["--json", "--quiet"], Some(all.as_bytes())).stdout).unwrap();
    assert_eq!(stdin_v["input"]["statements"], 10);
    assert_eq!(stdin_v["input"]["sources"], json!(["<stdin>"]));
    assert_eq!(stdin_v["time"]["basis"], "none");
    // Rotated: .2.gz oldest, .1 plain, the current file newest; given in shell-glob order.
    let oldest = d.path().join("m.jsonl.2.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all((lines[..4].join("\n") + "\n").as_bytes())
        .unwrap();
    std::fs::write(&oldest, gz.finish().unwrap()).unwrap();
    let middle = write(d.path(), "m.jsonl.1", &(lines[4..7].join("\n") + "\n"));
    let newest = write(d.path(), "m.jsonl", &(lines[7..].join("\n") + "\n"));
    for (p, secs) in [
        (oldest.to_str().unwrap(), 1_700_000_000),
        (&middle, 1_700_000_600),
        (&newest, 1_700_003_600),
    ] {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }
    let v = verdict(&[&newest, &middle, oldest.to_str().unwrap()]);
    assert_eq!(v["input"]["statements"], 10);
    let src: Vec<&str> = v["input"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        src[0].ends_with("m.jsonl.2.gz (gzip)")
            && src[1].ends_with("m.jsonl.1")
            && src[2].ends_with("m.jsonl"),
        "{src:?}"
    );
    assert_eq!(
        (v["time"]["first"].as_str(), v["time"]["seconds"].as_f64()),
        (Some("2023-11-14T22:13:20.000Z"), Some(3600.0))
    );
    // The same verdict whatever the input: the classes and their counts agree with stdin's.
    let counts = |v: &Value| {
        v["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].clone(), c["count"].clone(), c["conflicts"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&v), counts(&stdin_v));
    // `-` is standard input among files.
    let mixed: Value = serde_json::from_slice(
        &run(
            &["--json", "--quiet", &middle, "-"],
            Some(lines[0].as_bytes()),
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(mixed["input"]["statements"], 4);
}

#[test]
fn fail_on_conflicts_gates_a_script() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "m.jsonl", &export());
    let code = |t: &str| {
        run(&["--quiet", "--json", "--fail-on-conflicts", t, &f], None)
            .status
            .code()
    };
    assert_eq!(code("2"), Some(1), "3 conflicts > 2");
    assert_eq!(code("3"), Some(0));
    assert_eq!(code("25%"), Some(1), "30 % > 25 %");
    assert_eq!(code("0.35"), Some(0));
    let o = run(&["--quiet", "--json", "--fail-on-conflicts", "2", &f], None);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["threshold"],
        json!({"limit": "2 statements", "exceeded": true})
    );
    let o = run(&["--quiet", "--fail-on-conflicts", "lots", &f], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'lots' is not a count"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--quiet", "--fail-on-conflicts", "1", &f], None);
    assert!(
        stdout(&o).contains("EXCEEDED (exit status 1)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn bad_invocations_fail_clearly() {
    let o = run(&["/nonexistent/mirror.jsonl"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read '/nonexistent/mirror.jsonl'"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--topic", "t"], None);
    assert_eq!(o.status.code(), Some(2), "--topic needs --kafka");
    let o = run(
        &["--kafka", "127.0.0.1:9092", "--topic", "t", "file.jsonl"],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "files and Kafka together");
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "m.jsonl", &export());
    let o = run(&["--quiet", "--html", "/nonexistent/dir/r.html", &f], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot write '/nonexistent/dir/r.html'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unreachable_broker_is_an_error_not_a_hang() {
    let start = Instant::now();
    let o = run(
        &[
            "--quiet",
            "--kafka",
            "127.0.0.1:1",
            "--topic",
            "mirror",
            "--kafka-timeout",
            "2",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot reach the Kafka broker 127.0.0.1:1"),
        "{}",
        stderr(&o)
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn baseline_sets_non_deterministic_classes_apart() {
    let mut l = Vec::new();
    for i in 0..3u64 {
        // Differs on every server: the baseline (same version as main) differs too.
        l.push(rep(
            "SELECT UUID()",
            1,
            i + 1,
            &[
                ("old", &format!("0000000{i}"), 1, 0, 0, "resultset"),
                ("new", "aaaaaaaa", 1, 0, 0, "resultset"),
                ("old2", "bbbbbbbb", 1, 0, 0, "resultset"),
            ],
        ));
        // Differs only on the new version: an upgrade difference.
        l.push(rep(
            "SELECT v FROM t",
            1,
            i + 4,
            &[
                ("old", "11111111", 1, 0, 0, "resultset"),
                ("new", "22222222", 1, 0, 0, "resultset"),
                ("old2", "11111111", 1, 0, 0, "resultset"),
            ],
        ));
    }
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "m.jsonl", &(l.join("\n") + "\n"));
    let v = verdict(&["--baseline", "old2", &f]);
    assert_eq!(v["targets"], json!(["old", "new", "old2"]));
    assert_eq!(common::conflicting(&v), ["select v from t"]);
    let uuid = class(&v, "select uuid()");
    assert_eq!(
        (
            uuid["non_deterministic"].as_bool(),
            uuid["baseline_differences"].as_u64(),
            uuid["conflicts"].as_u64()
        ),
        (Some(true), Some(3), Some(3))
    );
    assert_eq!(v["conflicts"]["upgrade"], 3);
    assert_eq!(v["conflicts"]["non_deterministic"], 3);
    assert_eq!(v["conflicts"]["non_deterministic_classes"], 1);
    assert_eq!(v["conflicts"]["rate"], 0.5);
    assert_eq!(
        v["timeline"]["bins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["baseline_differs"].as_u64().unwrap())
            .sum::<u64>(),
        3
    );
    let t = stdout(&run(&["--quiet", "--baseline", "old2", &f], None));
    assert!(
        t.contains("Non-deterministic classes (main and baseline differ too"),
        "{t}"
    );
    assert!(
        t.contains("3 more statements in 1 non-deterministic classes"),
        "{t}"
    );
    // Without the baseline the UUID class counts, and its SQL says why it may.
    let v = verdict(&["--main", "old", &f]);
    assert_eq!(
        common::conflicting(&v),
        ["select uuid()", "select v from t"]
    );
    assert_eq!(class(&v, "select uuid()")["hints"], json!(["uuid()"]));
    let id = class(&v, "select uuid()")["id"].as_str().unwrap()[..8].to_string();
    assert!(
        v["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with(&format!("1 conflicting classes look non-deterministic from their SQL or their conflicts ({id}"))),
        "{}",
        v["notes"]
    );
    assert_eq!(class(&v, "select v from t")["hints"], json!([]));
    // A baseline that is not in the export is said so.
    let v = verdict(&["--baseline", "nope", &f]);
    assert!(
        v["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("baseline target 'nope' never answered")),
        "{}",
        v["notes"]
    );
}

/// Entries newer mirrors may write: a `report_diff` (any JSON) and dropped targets.
#[test]
fn report_diff_and_dropped_targets() {
    let l = [
        r#"{"query":"SELECT v FROM t WHERE id = 7","command":"COM_QUERY","session":1,"query_id":1,"results":[{"target":"old","checksum":"00000001","rows":1,"warnings":0,"duration":1,"type":"resultset"},{"target":"new","checksum":"00000002","rows":1,"warnings":0,"duration":1,"type":"resultset","report_diff":{"row":0,"main":["7","x"],"other":["7","y"]}}]}"#,
        r#"{"query":"SELECT v FROM t WHERE id = 8","command":"COM_QUERY","session":1,"query_id":2,"results":[{"target":"old","checksum":"00000001","rows":1,"warnings":0,"duration":1,"type":"resultset"},{"target":"new","dropped":true,"reason":"backlog"}],"unknown":{"x":1}}"#,
        r#"{"query":"SELECT v FROM t WHERE id = 9","command":"COM_QUERY","session":1,"query_id":3,"results":[{"target":"old","checksum":"00000001","rows":1,"warnings":0,"duration":1,"type":"resultset"}]}"#,
    ];
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "m.jsonl", &(l.join("\n") + "\n"));
    let v = verdict(&["--main", "old", &f]);
    let c = class(&v, "select v from t where id = ?");
    assert_eq!(
        c["samples"][0]["report_diff"],
        json!({"row": 0, "main": ["7", "x"], "other": ["7", "y"]})
    );
    let new = common::target(c, "new");
    assert_eq!(
        (
            new["answered"].as_u64(),
            new["dropped"].as_u64(),
            new["absent"].as_u64(),
            new["with_report_diff"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(1))
    );
    let t = stdout(&run(&["--quiet", "--main", "old", &f], None));
    assert!(
        t.contains(r#"report_diff  {"main":["7","x"],"other":["7","y"],"row":0}"#)
            || t.contains(r#"report_diff  {"row":0,"main":["7","x"],"other":["7","y"]}"#),
        "{t}"
    );
    let html = d.path().join("r.html");
    assert_eq!(
        run(
            &[
                "--quiet",
                "--main",
                "old",
                "--html",
                html.to_str().unwrap(),
                &f
            ],
            None
        )
        .status
        .code(),
        Some(0)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("report_diff") && page.contains("&quot;other&quot;"),
        "the HTML shows the diff"
    );
}

#[test]
fn html_page_is_self_contained() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "m.jsonl",
        &export().replace("SELECT 1", "SELECT '<b>&amp;</b>'"),
    );
    let html = d.path().join("r.html");
    let o = run(&["--quiet", "--html", html.to_str().unwrap(), &f], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("VERDICT"),
        "the terminal verdict is still printed"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    for fetch in ["<link", " src=", "url(", "@import", "<iframe", "<img"] {
        assert!(
            !page.contains(fetch),
            "the page would fetch something ({fetch})"
        );
    }
    assert_eq!(page.matches("<svg").count(), 2, "two inline charts");
    assert!(page.contains("id=\"classes\" class=\"sortable\""));
    assert_eq!(page.matches("<tr class=\"").count(), 4, "one row per class");
    assert!(!page.contains("<b>&amp;</b>"), "statement text is escaped");
}
