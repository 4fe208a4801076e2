//! mirror inside a real MaxScale (any supported release), next to that release's native module,
//! on the same servers. Runs when MAXSCALE_BIN and MAXSCALE_LIBDIR are set (and the modules were
//! built with the `maxscale` feature against the same release: `make test` with MAXSCALE_SRC
//! does both); otherwise it says that it skipped.

use mysql::prelude::Queryable;
use router_tests::env::{self, unique};
use router_tests::maxscale::{self, Installation, MaxScale};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn setup() -> Option<(Installation, PathBuf)> {
    let Some(inst) = maxscale::installation() else {
        eprintln!("skipped: MAXSCALE_BIN and MAXSCALE_LIBDIR are not set, so mirror was not run inside MaxScale");
        return None;
    };
    let ours = inst.our_module("mirror");
    Some((inst, ours))
}

fn config(listener: u16, file: &Path, extra: &str) -> String {
    config_with_s2(listener, file, extra, env::mariadb_ports()[1])
}

/// The same with s2 on another port (a private server).
fn config_with_s2(listener: u16, file: &Path, extra: &str, s2: u16) -> String {
    let p = [env::mariadb_ports()[0], s2];
    format!(
        "[s1]\ntype=server\naddress=127.0.0.1\nport={}\n\n[s2]\ntype=server\naddress=127.0.0.1\nport={}\n\n\
         [Monitor]\ntype=monitor\nmodule=mariadbmon\nservers=s1,s2\nuser=app\npassword=apppass\nmonitor_interval=1s\n\n\
         [Mirror]\ntype=service\nrouter=mirror\ntargets=s1,s2\nuser=app\npassword=apppass\nmain=s1\nexporter=file\nfile={}\n{extra}\n\
         [Mirror-Listener]\ntype=listener\nservice=Mirror\nprotocol=mariadbprotocol\naddress=127.0.0.1\nport={listener}\n",
        p[0],
        p[1],
        file.display()
    )
}

fn lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The statements both modules see, through a real client library.
fn workload(c: &mut mysql::Conn, db: &str) {
    for q in [
        "SELECT 1".to_string(),
        "SELECT 1/0".into(),
        "SELECT * FROM no_such_db.t".into(),
        format!("CREATE DATABASE {db}"),
        format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))"),
        format!("INSERT INTO {db}.t VALUES (1, 'a'), (2, 'b')"),
        format!("SELECT * FROM {db}.t ORDER BY id"),
        format!("UPDATE {db}.t SET v = 'c' WHERE id = 2"),
        format!("SELECT COUNT(*), MAX(v) FROM {db}.t"),
        "SET @a = 42".into(),
        "SELECT @a".into(),
        format!("USE {db}"),
    ] {
        let _ = c.query_drop(&q);
    }
    let _: Vec<(u32, String)> = c.exec("SELECT id, v FROM t WHERE id > ?", (0,)).unwrap();
    c.query_drop(format!("DROP DATABASE {db}")).unwrap();
}

/// A report with what legitimately differs between two runs removed.
fn normalized(v: &Value) -> Value {
    let mut v = v.clone();
    v["session"] = Value::Null;
    for r in v["results"].as_array_mut().unwrap() {
        r["duration"] = Value::Null;
    }
    v
}

fn run(inst: &Installation, replace: &[(&str, &Path)], db: &str) -> (Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reports.jsonl");
    let (admin, listener) = maxscale::ports();
    let ms = MaxScale::start(inst, admin, &config(listener, &file, ""), replace);
    ms.wait_running("s1");
    ms.wait_running("s2");
    let mut c = maxscale::client(listener, None);
    workload(&mut c, db);
    drop(c);
    std::thread::sleep(Duration::from_millis(500));
    let first_line = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (lines(&file), first_line)
}

#[test]
fn same_reports_as_the_native_module() {
    let Some((inst, ours)) = setup() else { return };
    let db = unique("e2e_mirror");
    let (native, native_first) = run(&inst, &[], &db);
    let (rust, rust_first) = run(&inst, &[("mirror", &ours)], &db);
    assert!(native.len() >= 14, "native wrote {} reports", native.len());
    assert_eq!(rust.len(), native.len(), "same number of reports");
    // Byte layout of a document (up to the session id).
    let cut = |s: &str| s.split("\"session\"").next().unwrap().to_string();
    assert_eq!(cut(&rust_first), cut(&native_first));
    for (n, r) in native.iter().zip(&rust) {
        assert_eq!(normalized(r), normalized(n), "\nnative: {n}\nours:   {r}");
    }
}

#[test]
fn runtime_alter_rotation_diagnostics_and_a_dying_target() {
    let Some((inst, ours)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reports.jsonl");
    let (admin, listener) = maxscale::ports();
    let ms = MaxScale::start(
        &inst,
        admin,
        &config(listener, &file, ""),
        &[("mirror", &ours)],
    );
    ms.wait_running("s1");
    ms.wait_running("s2");
    assert!(ms.log().contains("libmirror.so"), "our module was loaded");
    let mut c = maxscale::client(listener, None);
    c.query_drop("SELECT 1").unwrap();

    // Rotation: move the file away, alter the service, new reports go to a new file.
    let rotated = dir.path().join("reports.jsonl.1");
    // The client library's own statements at connect, and SELECT 1. A report is written after
    // main's answer has gone to the client (the native order): wait for it.
    let before = wait_reports(&file, |r| report_for(r, "SELECT 1").is_some()).len();
    assert!(before >= 1);
    std::fs::rename(&file, &rotated).unwrap();
    ms.alter_service(
        "Mirror",
        serde_json::json!({"file": file.display().to_string()}),
    )
    .unwrap();
    c.query_drop("SELECT 2").unwrap();
    assert_eq!(
        lines(&rotated).len(),
        before,
        "nothing more goes to the moved file"
    );
    assert_eq!(
        wait_reports(&file, |r| !r.is_empty()).len(),
        1,
        "the reopened file gets the new reports"
    );

    // Runtime change of report: nothing is written while the targets agree.
    ms.alter_service("Mirror", serde_json::json!({"report": "on_conflict"}))
        .unwrap();
    c.query_drop("SELECT 3").unwrap();
    assert_eq!(lines(&file).len(), 1);
    let svc = ms.get("/v1/services/Mirror").unwrap();
    assert_eq!(
        svc["data"]["attributes"]["parameters"]["report"],
        "on_conflict"
    );
    // Invalid combination refused at alter time, with the native error text.
    let err = ms
        .alter_service("Mirror", serde_json::json!({"exporter": "kafka"}))
        .unwrap_err();
    assert!(
        err.contains(
            "Both 'kafka_broker' and 'kafka_topic' must be defined when exporter=kafka is used."
        ),
        "{err}"
    );
    ms.alter_service("Mirror", serde_json::json!({"report": "always"}))
        .unwrap();

    // The log exporter: INFO messages of the MaxScale log, when the service logs info.
    ms.alter_service(
        "Mirror",
        serde_json::json!({"exporter": "log", "log_info": true}),
    )
    .unwrap();
    c.query_drop("SELECT 'to the log'").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let log = ms.log();
    let line = log
        .lines()
        .find(|l| l.contains(r#"{"query":"SELECT 'to the log'","command":"COM_QUERY""#));
    let line = line.unwrap_or_else(|| panic!("report not in the log:\n{log}"));
    assert!(line.contains("info") && line.contains("[mirror]"), "{line}");

    // The Kafka exporter, to a real broker.
    let topic = unique("e2e_mirror");
    router_tests::kafka::create_topic(&topic);
    ms.alter_service(
        "Mirror",
        serde_json::json!({"exporter": "kafka", "kafka_broker": env::kafka_broker(), "kafka_topic": topic, "log_info": false}),
    )
    .unwrap();
    c.query_drop("SELECT 'to kafka'").unwrap();
    let msgs = router_tests::kafka::consume(&topic, 1);
    assert_eq!(msgs.len(), 1, "report delivered to Kafka");
    assert!(
        msgs[0].starts_with(r#"{"query":"SELECT 'to kafka'","command":"COM_QUERY""#),
        "{}",
        msgs[0]
    );
    ms.alter_service(
        "Mirror",
        serde_json::json!({"exporter": "file", "file": file.display().to_string()}),
    )
    .unwrap();

    // Kill s2's connection while it runs a slow statement: the client must not hang.
    let p2 = env::mariadb_ports()[1];
    let killer = std::thread::spawn(move || {
        let mut admin = env::mariadb(p2);
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(200));
            let ids: Vec<u64> = admin.query("SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(IF%'").unwrap();
            if let Some(id) = ids.first() {
                admin.query_drop(format!("KILL {id}")).unwrap();
                return true;
            }
        }
        false
    });
    let start = Instant::now();
    let v: Option<i64> = c
        .query_first(format!("SELECT SLEEP(IF(@@port = {p2}, 30, 0))"))
        .unwrap();
    assert!(killer.join().unwrap(), "found s2's statement to kill");
    assert_eq!(v, Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "client waited {:?}",
        start.elapsed()
    );
    c.query_drop("SELECT 4").unwrap();
    let r = wait_reports(&file, |r| report_for(r, "SELECT 4").is_some());
    let last = report_for(&r, "SELECT 4").cloned().unwrap();
    let targets: Vec<&str> = last["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["s1"], "{last}");
    let diag = &ms.get("/v1/services/Mirror").unwrap()["data"]["attributes"]["router_diagnostics"];
    assert_eq!(diag["targets"]["s2"]["errors"], 1, "{diag}");
    assert!(diag["reports_exported"].as_u64().unwrap() >= 4, "{diag}");
}

/// Polls the report file until `done` holds (20 s).
fn wait_reports(file: &Path, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let r = lines(file);
        if done(&r) || Instant::now() > end {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report_for<'a>(r: &'a [Value], query: &str) -> Option<&'a Value> {
    r.iter().rev().find(|x| x["query"] == query)
}

fn targets(r: &Value) -> Vec<&str> {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["target"].as_str().unwrap())
        .collect()
}

#[test]
fn sync_false_answers_before_a_slow_target_and_max_backlog_drops_it() {
    let Some((inst, ours)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reports.jsonl");
    let (admin, listener) = maxscale::ports();
    let ms = MaxScale::start(
        &inst,
        admin,
        &config(listener, &file, "sync=false\n"),
        &[("mirror", &ours)],
    );
    ms.wait_running("s1");
    ms.wait_running("s2");
    let p2 = env::mariadb_ports()[1];
    let mut c = maxscale::client(listener, None);
    c.query_drop("SET @x = 7").unwrap();
    let slow = format!("SELECT SLEEP(IF(@@port = {p2}, 3, 0)), @x");
    let v: Option<(i64, i64)> = c.query_first(&slow).unwrap();
    assert_eq!(v, Some((0, 7)));
    // main's answer came first: the report waits for s2's.
    assert!(
        report_for(&lines(&file), &slow).is_none(),
        "reported before s2 answered"
    );
    c.query_drop("SELECT @x + 1").unwrap();
    let r = wait_reports(&file, |r| report_for(r, "SELECT @x + 1").is_some());
    let rep =
        report_for(&r, &slow).unwrap_or_else(|| panic!("no report for the slow statement: {r:?}"));
    assert_eq!(targets(rep), ["s1", "s2"]);
    assert_eq!(
        rep["results"][0]["checksum"], rep["results"][1]["checksum"],
        "{rep}"
    );

    // The bound, changed at runtime: the fourth request waiting for s2 drops it.
    ms.alter_service("Mirror", serde_json::json!({"max_backlog_requests": "3"}))
        .unwrap();
    c.query_drop(format!("SELECT SLEEP(IF(@@port = {p2}, 5, 0))"))
        .unwrap();
    for i in 0..5 {
        c.query_drop(format!("SELECT {i}")).unwrap();
    }
    c.query_drop("SELECT 'after'").unwrap();
    let diag = &ms.get("/v1/services/Mirror").unwrap()["data"]["attributes"]["router_diagnostics"];
    assert_eq!(diag["targets"]["s2"]["backlog_drops"], 1, "{diag}");
    assert!(
        ms.log_shows("target 's2' dropped from the session"),
        "{}",
        ms.log()
    );
    let r = wait_reports(&file, |r| report_for(r, "SELECT 'after'").is_some());
    assert_eq!(targets(report_for(&r, "SELECT 'after'").unwrap()), ["s1"]);
    let bad = ms
        .alter_service("Mirror", serde_json::json!({"max_backlog": "lots"}))
        .unwrap_err();
    assert!(bad.contains("max_backlog"), "{bad}");
}

#[test]
fn reconnect_brings_a_restarted_server_back() {
    let Some((inst, ours)) = setup() else { return };
    let mut srv = router_tests::private_server::PrivateServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reports.jsonl");
    let (admin, listener) = maxscale::ports();
    let cnf = config_with_s2(listener, &file, "reconnect=true\n", srv.port);
    let ms = MaxScale::start(&inst, admin, &cnf, &[("mirror", &ours)]);
    ms.wait_running("s1");
    ms.wait_running("s2");
    let mut c = maxscale::client(listener, None);
    c.query_drop("SET @x = 42").unwrap();
    c.query_drop("SELECT @x").unwrap();
    srv.stop();
    std::thread::sleep(Duration::from_millis(500));
    c.query_drop("SELECT 'while s2 is down'").unwrap();
    srv.start_again();
    ms.wait_running("s2");
    let end = Instant::now() + Duration::from_secs(30);
    let back = loop {
        c.query_drop("SELECT @x").unwrap();
        let r = wait_reports(&file, |r| {
            r.iter().filter(|x| x["query"] == "SELECT @x").count() >= 2
        });
        let last = report_for(&r, "SELECT @x").unwrap().clone();
        if targets(&last) == ["s1", "s2"]
            && r.iter().filter(|x| x["query"] == "SELECT @x").count() >= 2
        {
            break last;
        }
        assert!(
            Instant::now() < end,
            "s2 never came back: {r:?}\n{}",
            ms.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        back["results"][0]["checksum"], back["results"][1]["checksum"],
        "@x restored on s2: {back}"
    );
    let r = lines(&file);
    assert_eq!(
        targets(report_for(&r, "SELECT 'while s2 is down'").unwrap()),
        ["s1"],
        "the gap shows"
    );
    let diag = &ms.get("/v1/services/Mirror").unwrap()["data"]["attributes"]["router_diagnostics"];
    assert!(
        diag["targets"]["s2"]["reconnects"].as_u64().unwrap() >= 1,
        "{diag}"
    );
}

#[test]
fn report_diff_locates_differences() {
    let Some((inst, ours)) = setup() else { return };
    let db = unique("e2e_diff");
    let ports = env::mariadb_ports();
    for (port, v2, u) in [(ports[0], "b", "v VARCHAR(20)"), (ports[1], "x", "w INT")] {
        let mut c = env::mariadb(port);
        c.query_drop(format!("CREATE DATABASE {db}")).unwrap();
        c.query_drop(format!(
            "CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))"
        ))
        .unwrap();
        c.query_drop(format!(
            "INSERT INTO {db}.t VALUES (1, 'a'), (2, '{v2}'), (3, 'c')"
        ))
        .unwrap();
        c.query_drop(format!("CREATE TABLE {db}.u (id INT, {u})"))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reports.jsonl");
    let (admin, listener) = maxscale::ports();
    let ms = MaxScale::start(
        &inst,
        admin,
        &config(listener, &file, "report_diff=true\n"),
        &[("mirror", &ours)],
    );
    ms.wait_running("s1");
    ms.wait_running("s2");
    let mut c = maxscale::client(listener, None);
    let rows = format!("SELECT id, v FROM {db}.t ORDER BY id");
    let _: Vec<(i32, String)> = c.query(&rows).unwrap();
    let _ = c.query_drop(format!("SELECT * FROM {db}.u"));
    let _ = c.query_drop(format!("SELECT v, nope FROM {db}.u"));
    let ps = format!("SELECT id, v FROM {db}.t WHERE id > ? ORDER BY id");
    let _: Vec<(i32, String)> = c.exec(&ps, (0,)).unwrap();
    drop(c);
    let r = wait_reports(&file, |r| {
        r.iter().any(|x| x["command"] == "COM_STMT_EXECUTE")
    });
    let diff = |q: &str| {
        result_of_s2(report_for(&r, q).unwrap_or_else(|| panic!("no report for {q}: {r:?}")))
            ["diff"]
            .clone()
    };
    let d = diff(&rows);
    assert_eq!(
        (d["at"].as_str(), d["row"].as_u64()),
        (Some("row"), Some(1)),
        "{d}"
    );
    assert_eq!(
        (d["main"].clone(), d["target"].clone()),
        (serde_json::json!(["2", "b"]), serde_json::json!(["2", "x"]))
    );
    let d = diff(&format!("SELECT * FROM {db}.u"));
    assert_eq!(
        (
            d["at"].as_str(),
            d["main"]["name"].as_str(),
            d["target"]["name"].as_str()
        ),
        (Some("column"), Some("v"), Some("w")),
        "{d}"
    );
    let d = diff(&format!("SELECT v, nope FROM {db}.u"));
    assert_eq!(
        (d["main"]["code"].as_u64(), d["target"]["code"].as_u64()),
        (Some(1054), Some(1054)),
        "{d}"
    );
    assert_ne!(d["main"]["message"], d["target"]["message"]);
    let exec = r
        .iter()
        .find(|x| x["command"] == "COM_STMT_EXECUTE")
        .unwrap();
    assert_eq!(exec["query"], ps, "the statement's SQL: {exec}");
    assert_ne!(
        exec["results"][0]["checksum"], exec["results"][1]["checksum"],
        "a binary result that differs is a conflict"
    );
    let d = &result_of_s2(exec)["diff"];
    assert_eq!(
        (d["at"].as_str(), d["row"].as_u64()),
        (Some("row"), Some(1)),
        "{d}"
    );
    assert_eq!(
        (d["main"].clone(), d["target"].clone()),
        (serde_json::json!(["2", "b"]), serde_json::json!(["2", "x"]))
    );
    for p in &ports[..2] {
        env::mariadb(*p)
            .query_drop(format!("DROP DATABASE {db}"))
            .unwrap();
    }
}

fn result_of_s2(r: &Value) -> &Value {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["target"] == "s2")
        .unwrap_or_else(|| panic!("no s2 in {r}"))
}
