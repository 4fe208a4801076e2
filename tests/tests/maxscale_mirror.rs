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
    let p = env::mariadb_ports();
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
    let first_line = std::fs::read_to_string(&file).unwrap_or_default().lines().next().unwrap_or("").to_string();
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
    let ms = MaxScale::start(&inst, admin, &config(listener, &file, ""), &[("mirror", &ours)]);
    ms.wait_running("s1");
    ms.wait_running("s2");
    assert!(ms.log().contains("libmirror.so"), "our module was loaded");
    let mut c = maxscale::client(listener, None);
    c.query_drop("SELECT 1").unwrap();

    // Rotation: move the file away, alter the service, new reports go to a new file.
    let rotated = dir.path().join("reports.jsonl.1");
    let before = lines(&file).len(); // the client library's own statements at connect, and SELECT 1
    assert!(before >= 1);
    std::fs::rename(&file, &rotated).unwrap();
    ms.alter_service("Mirror", serde_json::json!({"file": file.display().to_string()})).unwrap();
    c.query_drop("SELECT 2").unwrap();
    assert_eq!(lines(&rotated).len(), before, "nothing more goes to the moved file");
    assert_eq!(lines(&file).len(), 1, "the reopened file gets the new reports");

    // Runtime change of report: nothing is written while the targets agree.
    ms.alter_service("Mirror", serde_json::json!({"report": "on_conflict"})).unwrap();
    c.query_drop("SELECT 3").unwrap();
    assert_eq!(lines(&file).len(), 1);
    let svc = ms.get("/v1/services/Mirror").unwrap();
    assert_eq!(svc["data"]["attributes"]["parameters"]["report"], "on_conflict");
    // Invalid combination refused at alter time, with the native error text.
    let err = ms.alter_service("Mirror", serde_json::json!({"exporter": "kafka"})).unwrap_err();
    assert!(err.contains("Both 'kafka_broker' and 'kafka_topic' must be defined when exporter=kafka is used."), "{err}");
    ms.alter_service("Mirror", serde_json::json!({"report": "always"})).unwrap();

    // The log exporter: INFO messages of the MaxScale log, when the service logs info.
    ms.alter_service("Mirror", serde_json::json!({"exporter": "log", "log_info": true})).unwrap();
    c.query_drop("SELECT 'to the log'").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let log = ms.log();
    let line = log.lines().find(|l| l.contains(r#"{"query":"SELECT 'to the log'","command":"COM_QUERY""#));
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
    assert!(msgs[0].starts_with(r#"{"query":"SELECT 'to kafka'","command":"COM_QUERY""#), "{}", msgs[0]);
    ms.alter_service("Mirror", serde_json::json!({"exporter": "file", "file": file.display().to_string()})).unwrap();

    // Kill s2's connection while it runs a slow statement: the client must not hang.
    let p2 = env::mariadb_ports()[1];
    let killer = std::thread::spawn(move || {
        let mut admin = env::mariadb(p2);
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(200));
            let ids: Vec<u64> = admin
                .query("SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(IF%'")
                .unwrap();
            if let Some(id) = ids.first() {
                admin.query_drop(format!("KILL {id}")).unwrap();
                return true;
            }
        }
        false
    });
    let start = Instant::now();
    let v: Option<i64> = c.query_first(format!("SELECT SLEEP(IF(@@port = {p2}, 30, 0))")).unwrap();
    assert!(killer.join().unwrap(), "found s2's statement to kill");
    assert_eq!(v, Some(0));
    assert!(start.elapsed() < Duration::from_secs(15), "client waited {:?}", start.elapsed());
    c.query_drop("SELECT 4").unwrap();
    let last = lines(&file).last().cloned().unwrap();
    let targets: Vec<&str> = last["results"].as_array().unwrap().iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["s1"], "{last}");
    let diag = &ms.get("/v1/services/Mirror").unwrap()["data"]["attributes"]["router_diagnostics"];
    assert_eq!(diag["targets"]["s2"]["errors"], 1, "{diag}");
    assert!(diag["reports_exported"].as_u64().unwrap() >= 4, "{diag}");
}
