//! The mirror (libmirror.so, driven by the test host) exports a known workload run against
//! two real MariaDB servers with planted differences; mirror-report must find exactly those,
//! from the file exporter and from the Kafka exporter, in its terminal, JSON and HTML outputs.
//!
//! Planted, on private databases so that concurrent tests are unaffected:
//! - a row changed on s2 (`items` id 7): the point select differs in data;
//! - a table missing on s2 (`only_old`): the count fails on s2 only;
//! - a changed sql_mode: the session on s2 gets PIPES_AS_CONCAT (a session-level change the
//!   mirror sees like a changed server default), so `name || '-x'` concatenates on s2 and
//!   is a logical OR with warnings on s1;
//! - a slow query on s2: SLEEP only where @@port is s2's.

mod common;

use bridge::params::Params;
use bridge::sim::{Module, SimRouter};
use common::{class, conflicting, kinds, run, stderr, stdout};
use mysql::prelude::Queryable;
use router_tests::env::{self, unique};
use router_tests::harness::{Harness, Targets};
use router_tests::packets;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ROUNDS: u64 = 4;
const SLOW_S: f64 = 0.25;

fn fp_point() -> &'static str {
    "select name, qty from DB.items where id = ?"
}

/// The planted classes, with the database name filled in.
fn planted(db: &str) -> Vec<String> {
    let mut v = vec![
        fp_point().replace("DB", db),
        format!("select count(*) from {db}.only_old"),
        format!("select name || ? from {db}.items where id = ?"),
    ];
    v.sort();
    v
}

struct Db {
    name: String,
    ports: Vec<u16>,
}

impl Db {
    /// The same data on every server, then the planted differences on `ports[1]` (the
    /// compared server; the others play the old version).
    fn create(ports: &[u16]) -> Db {
        let name = unique("mreport");
        for (i, &p) in ports.iter().enumerate() {
            let mut c = env::mariadb(p);
            c.query_drop(format!("CREATE DATABASE {name}")).unwrap();
            c.query_drop(format!(
                "CREATE TABLE {name}.items (id INT PRIMARY KEY, name VARCHAR(20), qty INT)"
            ))
            .unwrap();
            c.query_drop(format!(
                "INSERT INTO {name}.items VALUES {}",
                (1..=10)
                    .map(|i| format!("({i}, 'item{i}', {i})"))
                    .collect::<Vec<_>>()
                    .join(",")
            ))
            .unwrap();
            if i == 1 {
                c.query_drop(format!("UPDATE {name}.items SET qty = 99 WHERE id = 7"))
                    .unwrap();
            } else {
                c.query_drop(format!("CREATE TABLE {name}.only_old (id INT)"))
                    .unwrap();
            }
        }
        Db {
            name,
            ports: ports.to_vec(),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        for &p in &self.ports {
            let _ = env::mariadb(p).query_drop(format!("DROP DATABASE IF EXISTS {}", self.name));
        }
    }
}

fn router(names: &[&str], exporter: &[(&str, String)]) -> SimRouter {
    let m = Module::load(&env::module_path("mirror")).expect("load libmirror.so");
    let r = m.new_router("Mirror", names).unwrap();
    let mut p = vec![("main".to_string(), "s1".to_string())];
    p.extend(exporter.iter().map(|(k, v)| (k.to_string(), v.clone())));
    r.configure(&Params::new(p)).unwrap();
    r
}

/// The workload: the same statements with varying literals, spacing and comments, so that
/// grouping is exercised too. `extra` adds statements (the baseline test's UUID()).
fn workload(r: &SimRouter, servers: &[(&str, u16)], db: &str, extra: &[&str]) {
    let p2 = servers[1].1;
    let mut h = Harness::open(r, Targets::new(servers)).expect("mirror session");
    h.query(&format!("SET SESSION sql_mode = IF(@@port = {p2}, CONCAT(@@sql_mode, ',PIPES_AS_CONCAT'), @@sql_mode)"));
    let mut replies = 1;
    for round in 0..ROUNDS {
        for id in 1..=10 {
            let sql = if id % 2 == 0 {
                format!("SELECT name, qty FROM {db}.items WHERE id = {id}")
            } else {
                format!("select name,qty from {db}.items\n where id={id} -- r{round}")
            };
            h.query(&sql);
        }
        h.query(&format!(
            "SELECT name FROM {db}.items WHERE id IN ({})",
            (1..=round + 2)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        h.query(&format!("SELECT COUNT(*) FROM {db}.only_old"));
        h.query(&format!(
            "SELECT name || '-x' FROM {db}.items WHERE id = {}",
            round + 1
        ));
        h.query(&format!(
            "UPDATE {db}.items SET name = 'n{round}' WHERE id = 1"
        ));
        h.query(&format!("SELECT SLEEP(IF(@@port = {p2}, {SLOW_S}, 0))"));
        h.query(&format!("/* round {round} */ SELECT 1"));
        for e in extra {
            h.query(e);
        }
        replies += 10 + 6 + extra.len();
        assert!(h.send(packets::command(0x0E, b"")), "COM_PING");
        replies += 1;
        assert!(
            h.wait_replies(replies, Duration::from_secs(10)),
            "COM_PING answered"
        );
    }
}

/// Statements the workload sends.
fn statements(extra: usize) -> u64 {
    1 + ROUNDS * (10 + 6 + 1 + extra as u64)
}

/// What every output must say about the planted differences.
fn assert_planted(v: &Value, db: &str) {
    assert_eq!(
        v["input"]["statements"].as_u64(),
        Some(statements(0)),
        "{}",
        v["input"]
    );
    assert_eq!(v["input"]["invalid_lines"], 0);
    assert_eq!(v["main"], "s1");
    assert_eq!(
        conflicting(v),
        planted(db),
        "exactly the planted classes differ"
    );
    let point = class(v, &fp_point().replace("DB", db));
    assert_eq!(
        (point["count"].as_u64(), point["conflicts"].as_u64()),
        (Some(10 * ROUNDS), Some(ROUNDS)),
        "id 7 differs, once a round"
    );
    assert_eq!(kinds(point, "s2"), ["data"]);
    assert!(
        point["samples"][0]["query"]
            .as_str()
            .unwrap()
            .contains("id = 7")
            || point["samples"][0]["query"]
                .as_str()
                .unwrap()
                .contains("id=7"),
        "{}",
        point["samples"]
    );
    let missing = class(v, &format!("select count(*) from {db}.only_old"));
    assert_eq!(missing["conflicts"].as_u64(), Some(ROUNDS));
    assert_eq!(kinds(missing, "s2"), ["error_one_side", "rows"]);
    assert_eq!(missing["samples"][0]["other"]["type"], "error");
    let mode = class(v, &format!("select name || ? from {db}.items where id = ?"));
    assert_eq!(mode["conflicts"].as_u64(), Some(ROUNDS));
    assert_eq!(kinds(mode, "s2"), ["warnings"]);
    assert!(
        mode["samples"][0]["main"]["warnings"].as_u64() > Some(0),
        "s1 warns about the OR: {}",
        mode["samples"]
    );
    // Every planted class is a plain upgrade difference, not noise.
    for fp in planted(db) {
        assert_eq!(class(v, &fp)["hints"], serde_json::json!([]), "{fp}");
    }
    // The slow query: first by slow-down, s2 at least 250 ms a statement more than s1.
    let slow = class(v, "select sleep(if(@@port = ?, ?, ?))");
    assert_eq!(
        v["rank_by_slowdown"][0], slow["id"],
        "{}",
        v["rank_by_slowdown"]
    );
    assert_eq!(slow["conflicts"], 0, "SLEEP returns 0 on both");
    let s2 = common::target(slow, "s2");
    let s1 = common::target(slow, "s1");
    assert!(
        s2["latency"]["p50"].as_f64().unwrap() >= SLOW_S * 1000.0 * 0.99,
        "{s2}"
    );
    assert!(s1["latency"]["p95"].as_f64().unwrap() < 100.0, "{s1}");
    assert!(
        s2["extra_ms"].as_i64().unwrap() >= (ROUNDS as f64 * SLOW_S * 1000.0 * 0.9) as i64,
        "{s2}"
    );
    // Grouping: the IN lists of every length are one class, the commented SELECT 1 another.
    assert_eq!(
        class(v, &format!("select name from {db}.items where id in(?+)"))["count"].as_u64(),
        Some(ROUNDS)
    );
    assert_eq!(class(v, "select ?")["count"].as_u64(), Some(ROUNDS));
    let ping = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"] == "COM_PING")
        .expect("COM_PING class");
    assert_eq!(ping["count"].as_u64(), Some(ROUNDS));
}

/// The page marks the planted classes as conflicts, and no other.
fn assert_marked(page: &str, v: &Value, db: &str) {
    for fp in planted(db) {
        let id = class(v, &fp)["id"].as_str().unwrap().to_string();
        assert!(
            page.contains(&format!("<tr class=\"conflict\" data-class=\"{id}\">")),
            "{fp} is not marked in the page"
        );
    }
    assert_eq!(page.matches("<tr class=\"conflict\"").count(), 3);
}

fn file_export(servers: &[(&str, u16)], extra: &[&str], dir: &Path) -> (PathBuf, Db) {
    let ports: Vec<u16> = servers.iter().map(|s| s.1).collect();
    let db = Db::create(&ports);
    let file = dir.join("mirror.jsonl");
    let names: Vec<&str> = servers.iter().map(|s| s.0).collect();
    let r = router(
        &names,
        &[
            ("exporter", "file".into()),
            ("file", file.display().to_string()),
        ],
    );
    workload(&r, servers, &db.name, extra);
    (file, db)
}

fn two_servers() -> Vec<(&'static str, u16)> {
    let p = env::mariadb_ports();
    vec![("s1", p[0]), ("s2", p[1])]
}

#[test]
fn finds_the_planted_differences_in_a_file_export() {
    let dir = tempfile::tempdir().unwrap();
    let servers = two_servers();
    let (file, db) = file_export(&servers, &[], dir.path());
    let f = file.to_str().unwrap();
    let html = dir.path().join("report.html");

    let v = common::verdict(&["--main", "s1", "--html", html.to_str().unwrap(), f]);
    assert_planted(&v, &db.name);
    assert_eq!(v["conflicts"]["upgrade"].as_u64(), Some(3 * ROUNDS));

    // The terminal says the same.
    let o = run(
        &["--quiet", "--main", "s1", "--fail-on-conflicts", "0", f],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "conflicts exceed 0: {}",
        stderr(&o)
    );
    let t = stdout(&o);
    let classes = v["classes"].as_array().unwrap().len();
    assert!(t.contains(&format!("VERDICT: 3 of {classes} classes differ on the compared server: {} of {} compared statements conflict", 3 * ROUNDS, statements(0))), "{t}");
    let table = t
        .split("Classes by conflicts")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    for fp in planted(&db.name) {
        assert!(
            table.contains(&fp),
            "the conflicts table lacks {fp}:\n{table}"
        );
    }
    assert_eq!(
        table.lines().filter(|l| l.contains(&db.name)).count(),
        3,
        "only the planted classes:\n{table}"
    );
    let slow = t.split("Classes by slow-down").nth(1).unwrap();
    let first = slow.lines().find(|l| l.contains("│ 1 ")).unwrap_or("");
    assert!(
        first.contains("select sleep(if(@@port = ?, ?, ?))"),
        "{slow}"
    );

    // The HTML page lists every class, marks the planted ones, and its charts draw.
    assert_marked(&std::fs::read_to_string(&html).unwrap(), &v, &db.name);
    browser_check(&html, &v);
    // For the README: MIRROR_REPORT_ARTIFACTS=DIR keeps the export, the page and its screenshot.
    if let Some(keep) = std::env::var_os("MIRROR_REPORT_ARTIFACTS").map(PathBuf::from) {
        std::fs::create_dir_all(&keep).unwrap();
        for f in [file.clone(), html.clone(), html.with_extension("png")] {
            if f.exists() {
                std::fs::copy(&f, keep.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// The page in a real headless Chromium: no console errors, no fetches, the class table has
/// the verdict's rows, the charts are drawn, the table sorts; a screenshot is saved.
fn browser_check(html: &Path, v: &Value) {
    if common::browser::chromium().is_none() {
        eprintln!("skipped: chromium not installed (apt-get install chromium)");
        return;
    }
    let probe = r#"(function () {
        var chart = function (id) {
            var svg = document.querySelector('#' + id + ' svg');
            if (!svg) return null;
            var r = svg.getBoundingClientRect();
            return { w: r.width, h: r.height, shapes: svg.querySelectorAll('polyline, path, rect, line').length, texts: svg.querySelectorAll('text').length };
        };
        var rows = Array.prototype.map.call(document.querySelectorAll('#classes tbody tr'), function (r) { return r.dataset.class; });
        var head = Array.prototype.filter.call(document.querySelectorAll('#classes th'), function (h) { return h.textContent === 'statements'; })[0];
        var column = function () {
            return Array.prototype.map.call(document.querySelectorAll('#classes tbody tr'), function (r) { return parseFloat(r.cells[head.cellIndex].dataset.v); });
        };
        head.click();
        var asc = column();
        head.click();
        var desc = column();
        return JSON.stringify({ rows: rows, latency: chart('latency-chart'), timeline: chart('timeline-chart'),
            asc: asc, desc: desc, fetches: performance.getEntriesByType('resource').length });
    })()"#;
    let shot = html.with_extension("png");
    let page = common::browser::open(html, probe, &shot, (1280, 1400));
    assert!(page.errors.is_empty(), "console errors: {:?}", page.errors);
    let p = &page.probe;
    let ids: Vec<&Value> = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(
        p["rows"].as_array().unwrap().iter().collect::<Vec<_>>(),
        ids,
        "one row per class, in the verdict's order"
    );
    for chart in ["latency", "timeline"] {
        let c = &p[chart];
        assert!(
            c["w"].as_f64() > Some(100.0) && c["h"].as_f64() > Some(100.0),
            "{chart} chart size: {c}"
        );
        assert!(
            c["shapes"].as_u64() > Some(5) && c["texts"].as_u64() > Some(3),
            "{chart} chart is empty: {c}"
        );
    }
    // A click on "statements" sorts by it, a second click the other way.
    let col = |k: &str| {
        p[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect::<Vec<f64>>()
    };
    let (asc, desc) = (col("asc"), col("desc"));
    let mut want: Vec<f64> = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_f64().unwrap())
        .collect();
    assert_ne!(
        asc, want,
        "the verdict's order is by conflicts, not statements"
    );
    want.sort_by(f64::total_cmp);
    assert_eq!(asc, want, "ascending");
    want.reverse();
    assert_eq!(desc, want, "descending");
    assert_eq!(p["fetches"], 0, "the page fetched something");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot {}",
        shot.display()
    );
}

#[test]
fn finds_the_planted_differences_from_the_kafka_exporter() {
    let servers = two_servers();
    let ports: Vec<u16> = servers.iter().map(|s| s.1).collect();
    let db = Db::create(&ports);
    let topic = unique("mreport");
    router_tests::kafka::create_topic(&topic);
    let r = router(
        &["s1", "s2"],
        &[
            ("exporter", "kafka".into()),
            ("kafka_broker", env::kafka_broker()),
            ("kafka_topic", topic.clone()),
        ],
    );
    workload(&r, &servers, &db.name, &[]);
    drop(r); // flushes the producer
    let broker = env::kafka_broker();
    let v = common::verdict(&["--main", "s1", "--kafka", &broker, "--topic", &topic]);
    assert_planted(&v, &db.name);
    assert_eq!(
        v["time"]["basis"], "message_time",
        "Kafka messages carry their time"
    );
    assert!(
        v["time"]["seconds"].as_f64().unwrap() >= ROUNDS as f64 * SLOW_S * 0.9,
        "{}",
        v["time"]
    );
    assert!(v["timeline"]["bins"][0]["first_time_ms"].as_i64().is_some());
    // The terminal from Kafka too.
    let t = stdout(&run(
        &[
            "--quiet", "--main", "s1", "--kafka", &broker, "--topic", &topic,
        ],
        None,
    ));
    assert!(
        t.contains(&format!(
            "VERDICT: 3 of {} classes differ",
            v["classes"].as_array().unwrap().len()
        )),
        "{t}"
    );
    assert!(t.contains("Kafka message times"), "{t}");
    // And the HTML page: the planted classes, and only they, are marked.
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("kafka.html");
    let o = run(
        &[
            "--quiet",
            "--main",
            "s1",
            "--kafka",
            &broker,
            "--topic",
            &topic,
            "--html",
            html.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_marked(&std::fs::read_to_string(&html).unwrap(), &v, &db.name);
    // A consumer group continues where its last run stopped.
    let group = unique("mreport_group");
    let first = common::verdict(&["--kafka", &broker, "--topic", &topic, "--group", &group]);
    assert_eq!(first["input"]["statements"].as_u64(), Some(statements(0)));
    let again = common::verdict(&["--kafka", &broker, "--topic", &topic, "--group", &group]);
    assert_eq!(
        again["input"]["statements"], 0,
        "the group's offsets were committed"
    );
    // A topic that does not exist is a clear error.
    let o = run(
        &[
            "--quiet",
            "--kafka",
            &broker,
            "--topic",
            "no_such_topic_for_mirror_report",
            "--kafka-timeout",
            "5",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no_such_topic_for_mirror_report"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_baseline_server_sets_non_deterministic_classes_apart() {
    let p = env::mariadb_ports();
    // s1 main (old version), s2 compared (new version), s3 baseline (old version, same data as s1).
    let servers = [("s1", p[0]), ("s2", p[1]), ("s3", p[2])];
    let dir = tempfile::tempdir().unwrap();
    let db = Db::create(&[p[0], p[1], p[2]]);
    let file = dir.path().join("mirror.jsonl");
    let r = router(
        &["s1", "s2", "s3"],
        &[
            ("exporter", "file".into()),
            ("file", file.display().to_string()),
        ],
    );
    workload(&r, &servers, &db.name, &["SELECT UUID()", "SELECT RAND()"]);
    let v = common::verdict(&["--main", "s1", "--baseline", "s3", file.to_str().unwrap()]);
    assert_eq!(v["baseline"], "s3");
    assert_eq!(
        conflicting(&v),
        planted(&db.name),
        "UUID() and RAND() are not upgrade differences"
    );
    for fp in ["select uuid()", "select rand()"] {
        let c = class(&v, fp);
        assert_eq!(c["non_deterministic"], true, "{fp}");
        assert_eq!(
            (c["baseline_differences"].as_u64(), c["conflicts"].as_u64()),
            (Some(ROUNDS), Some(ROUNDS)),
            "{fp}"
        );
    }
    assert_eq!(v["conflicts"]["upgrade"].as_u64(), Some(3 * ROUNDS));
    assert_eq!(
        v["conflicts"]["non_deterministic"].as_u64(),
        Some(2 * ROUNDS)
    );
    assert_eq!(v["conflicts"]["non_deterministic_classes"], 2);
    // Without --baseline the same export counts them, and their SQL says why they may differ.
    let v = common::verdict(&["--main", "s1", file.to_str().unwrap()]);
    assert_eq!(
        class(&v, "select uuid()")["hints"],
        serde_json::json!(["uuid()"])
    );
    assert_eq!(
        class(&v, "select rand()")["hints"],
        serde_json::json!(["rand()"])
    );
    assert_eq!(v["conflicts"]["classes_with_upgrade_conflicts"], 5);
}
