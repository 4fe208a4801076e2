//! mirror's own parameters (sync, max_backlog, reconnect, report_diff) through the Rust test
//! host, against real MariaDB servers: s1 (main) = 127.0.0.1:3301, s2 = 3302 or a private
//! server of the test's own where it must be restarted.

use mysql::prelude::Queryable;
use router_tests::env::{self, unique};
use router_tests::harness::{Harness, Targets};
use router_tests::mirror_setup::{maxscale_like, reports, result_of, servers, setup, targets_of};
use router_tests::packets;
use router_tests::private_server::PrivateServer;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

fn p2() -> u16 {
    env::mariadb_ports()[1]
}

/// A statement that takes `secs` on s2 only.
fn slow_on_s2(secs: u32) -> String {
    format!("SELECT SLEEP(IF(@@port = {}, {secs}, 0)) AS slept", p2())
}

fn queries(file: &Path) -> Vec<String> {
    reports(file)
        .iter()
        .map(|r| r["query"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Runs SQL on each (port, statements).
fn on_servers(setup: &[(u16, Vec<String>)]) {
    for (port, stmts) in setup {
        let mut c = env::mariadb(*port);
        for s in stmts {
            c.query_drop(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }
}

/// The statement id in a COM_STMT_PREPARE answer (the client's bytes from `from` on).
fn stmt_id(h: &Harness, from: usize) -> u32 {
    h.client(|c| u32::from_le_bytes(c.bytes[from + 5..from + 9].try_into().unwrap()))
}

fn execute(stmt: u32) -> Vec<Vec<u8>> {
    let mut body = stmt.to_le_bytes().to_vec();
    body.push(0); // no cursor
    body.extend_from_slice(&1u32.to_le_bytes());
    packets::command(0x17, &body)
}

#[test]
fn sync_false_answers_the_client_before_a_slow_target() {
    let s = setup(&[("sync", "false")]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    h.query("SET @x = 7");
    let file = s.file.clone();
    assert!(
        h.pump_until(LONG, |_| reports(&file).len() == 1),
        "the SET is reported once s2 answered it too"
    );
    assert!(h.send(packets::query(&format!("{}, @x", slow_on_s2(3)))));
    assert!(h.wait_replies(2, LONG), "main's answer reaches the client");
    assert_eq!(
        reports(&s.file).len(),
        1,
        "main answered first: s2 has not, so there is no report for it yet"
    );
    // The client goes on; main answers at once, s2 gets the same requests in the same order.
    for q in [
        "SELECT @x + 1",
        "BEGIN",
        "SELECT 'in a transaction'",
        "COMMIT",
    ] {
        h.query(q);
    }
    assert_eq!(
        reports(&s.file).len(),
        1,
        "nothing is reported before s2 answered the slow statement"
    );
    assert!(
        h.pump_until(LONG, |_| reports(&file).len() == 6),
        "s2 catches up: {:?}",
        queries(&s.file)
    );
    let r = reports(&s.file);
    assert_eq!(
        queries(&s.file)[1..3],
        [format!("{}, @x", slow_on_s2(3)), "SELECT @x + 1".into()]
    );
    for rep in &r {
        assert_eq!(targets_of(rep), ["s1", "s2"], "{rep}");
        assert_eq!(
            rep["results"][0]["checksum"], rep["results"][1]["checksum"],
            "same session state on both: {rep}"
        );
    }
    let d = |t: usize| r[1]["results"][t]["duration"].as_u64().unwrap();
    assert!(
        d(1) >= 2000 && d(0) < d(1),
        "s2 took the time, main did not: {}",
        r[1]
    );
    assert_eq!(
        s.router.diagnostics().unwrap()["targets"]["s2"]["backlog_drops"],
        0
    );
}

#[test]
fn sync_false_reports_what_a_target_never_answered_when_the_session_ends() {
    let s = setup(&[("sync", "false")]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    h.query(&slow_on_s2(5));
    h.query("SELECT 'last'");
    assert!(reports(&s.file).is_empty(), "s2 is still busy");
    drop(h);
    let r = reports(&s.file);
    assert_eq!(
        queries(&s.file),
        [slow_on_s2(5), "SELECT 'last'".into()],
        "reported at the session's end"
    );
    for rep in &r {
        assert_eq!(
            targets_of(rep),
            ["s1"],
            "without the target that had not answered: {rep}"
        );
    }
}

#[test]
fn the_backlog_bound_drops_a_slow_target_and_says_so() {
    // By count: a fourth request waiting for s2 is one too many.
    let s = setup(&[("sync", "false"), ("max_backlog_requests", "3")]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    h.query(&slow_on_s2(5));
    for i in 0..5 {
        h.query(&format!("SELECT {i}"));
    }
    assert!(h.alive);
    let d = s.router.diagnostics().unwrap();
    assert_eq!(d["targets"]["s2"]["backlog_drops"], 1, "{d}");
    let log = bridge::sim::take_log();
    let line = log.iter().find(|(_, m)| {
        m.starts_with(&format!(
            "session {}: target 's2' dropped from the session",
            h.id
        ))
    });
    let line = &line.unwrap_or_else(|| panic!("no log line: {log:?}")).1;
    assert!(
        line.contains("4 requests") && line.contains("more than max_backlog"),
        "{line}"
    );
    h.query("SELECT 'after'");
    let r = reports(&s.file);
    assert_eq!(
        r.len(),
        7,
        "every request is reported once s2 is dropped: {:?}",
        queries(&s.file)
    );
    for rep in &r {
        assert_eq!(
            targets_of(rep),
            ["s1"],
            "s2 is absent from what it did not answer: {rep}"
        );
    }

    // By size: a request bigger than max_backlog.
    let s = setup(&[("sync", "false"), ("max_backlog", "1Ki")]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    h.query(&slow_on_s2(5));
    h.query(&format!("SELECT '{}'", "x".repeat(2000)));
    assert_eq!(
        s.router.diagnostics().unwrap()["targets"]["s2"]["backlog_drops"],
        1
    );
    h.query("SELECT 1");
    assert_eq!(targets_of(reports(&s.file).last().unwrap()), ["s1"]);
}

#[test]
fn sync_false_keeps_the_order_of_load_data_and_prepared_statements() {
    let db = unique("mirror_async");
    let ports = env::mariadb_ports();
    let ddl = vec![
        format!("CREATE DATABASE {db}"),
        format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v TEXT)"),
    ];
    on_servers(&[(ports[0], ddl.clone()), (ports[1], ddl)]);
    let s = setup(&[("sync", "false"), ("report_diff", "true")]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    h.query(&slow_on_s2(2));
    // LOAD DATA LOCAL INFILE while s2 is still busy: s2 gets the file data when it asks.
    assert!(h.send(packets::query(&format!(
        "LOAD DATA LOCAL INFILE '/x.csv' INTO TABLE {db}.t FIELDS TERMINATED BY ','"
    ))));
    assert!(
        h.pump_until(LONG, |c| c
            .bytes
            .windows(5)
            .any(|w| w[3] == 1 && w[4] == 0xFB)),
        "main asks for the file"
    );
    assert!(h.send(vec![
        packets::packet(2, b"1,a\n2,b\n"),
        packets::packet(3, b"3,c\n"),
        packets::packet(4, b"")
    ]));
    assert!(h.wait_replies(2, LONG));
    // A prepared statement, while s2 may still be behind.
    let before = h.client(|c| c.bytes.len());
    assert!(h.send(packets::command(
        0x16,
        format!("SELECT COUNT(*) FROM {db}.t").as_bytes()
    )));
    assert!(h.wait_replies(3, LONG));
    let stmt = stmt_id(&h, before);
    assert!(h.send(execute(stmt)));
    assert!(h.wait_replies(4, LONG));
    let file = s.file.clone();
    assert!(
        h.pump_until(LONG, |_| reports(&file).len() == 4),
        "{:?}",
        queries(&s.file)
    );
    let r = reports(&s.file);
    let commands: Vec<&str> = r.iter().map(|x| x["command"].as_str().unwrap()).collect();
    assert_eq!(
        commands,
        [
            "COM_QUERY",
            "COM_QUERY",
            "COM_STMT_PREPARE",
            "COM_STMT_EXECUTE"
        ]
    );
    for rep in &r {
        assert_eq!(targets_of(rep), ["s1", "s2"], "{rep}");
    }
    assert_eq!(
        r[3]["results"][0]["checksum"], r[3]["results"][1]["checksum"],
        "s2 counted the rows its LOAD DATA got: {}",
        r[3]
    );
    for p in &ports[..2] {
        let n: u64 = env::mariadb(*p)
            .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
            .unwrap()
            .unwrap();
        assert_eq!(n, 3, "rows on port {p}");
        env::mariadb(*p)
            .query_drop(format!("DROP DATABASE {db}"))
            .unwrap();
    }
}

#[test]
fn reconnect_brings_a_restarted_target_back_with_the_session_state() {
    let mut srv = PrivateServer::start();
    let db = unique("mirror_reconnect");
    let ddl = vec![format!("CREATE DATABASE {db}")];
    on_servers(&[(env::mariadb_ports()[0], ddl.clone())]);
    srv.root_sql(&ddl[0]).unwrap();
    let targets = maxscale_like(Targets::new(&[
        ("s1", env::mariadb_ports()[0]),
        ("s2", srv.port),
    ]));
    let s = setup(&[("reconnect", "true")]);
    let native = setup(&[]);
    let mut h = Harness::open(&s.router, targets.clone()).unwrap();
    let mut n = Harness::open(&native.router, targets).unwrap();
    h.query("SET @x = 42");
    h.query(&format!("USE {db}"));
    h.query("SELECT @x, DATABASE()");
    n.query("SELECT 1");

    srv.stop();
    h.settle(Duration::from_millis(500));
    n.settle(Duration::from_millis(500));
    h.query("BEGIN"); // s2 cannot be connected yet
    srv.start_again();
    h.query("SELECT 'inside the transaction'"); // not reconnected mid-transaction
    h.query("COMMIT");
    h.query("SELECT @x, DATABASE()");
    n.query("SELECT 2");

    let r = reports(&s.file);
    let seen: Vec<(String, Vec<&str>)> = r
        .iter()
        .map(|x| (x["query"].as_str().unwrap().to_string(), targets_of(x)))
        .collect();
    let both = vec!["s1", "s2"];
    assert_eq!(
        seen,
        [
            ("SET @x = 42".to_string(), both.clone()),
            (format!("USE {db}"), both.clone()),
            ("SELECT @x, DATABASE()".into(), both.clone()),
            ("BEGIN".into(), vec!["s1"]),
            ("SELECT 'inside the transaction'".into(), vec!["s1"]),
            ("COMMIT".into(), vec!["s1"]),
            ("SELECT @x, DATABASE()".into(), both.clone()),
        ],
        "the gap shows: s2 is absent from what it missed"
    );
    let last = r.last().unwrap();
    assert_eq!(
        last["results"][0]["checksum"], last["results"][1]["checksum"],
        "variable and database restored on s2: {last}"
    );
    let d = s.router.diagnostics().unwrap();
    assert_eq!(
        (
            d["targets"]["s2"]["reconnects"].as_u64(),
            d["targets"]["s2"]["errors"].as_u64()
        ),
        (Some(1), Some(1)),
        "{d}"
    );
    // The native behaviour (reconnect=false): a lost target stays lost.
    assert_eq!(targets_of(reports(&native.file).last().unwrap()), ["s1"]);
    env::mariadb(env::mariadb_ports()[0])
        .query_drop(format!("DROP DATABASE {db}"))
        .unwrap();
}

/// reconnect=true with a client that sends a statement's parameter types with its first
/// execution only (libmariadb, libmysqlclient): the target connected again gets them put into
/// the first execution there, else it cannot read the value (MaxScale keeps them only for
/// routers with a session-command history).
#[test]
fn reconnect_gives_a_prepared_statement_its_parameter_types_again() {
    let s = setup(&[("reconnect", "true")]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    let before = h.client(|c| c.bytes.len());
    assert!(h.send(packets::command(0x16, b"SELECT ? + 1")));
    assert!(h.wait_replies(1, LONG));
    let stmt = stmt_id(&h, before);
    let execute = |types: bool| {
        let mut body = stmt.to_le_bytes().to_vec();
        body.push(0); // no cursor
        body.extend_from_slice(&1u32.to_le_bytes());
        body.push(0); // null bitmap of one parameter
        if types {
            body.extend_from_slice(&[1, 0x08, 0x00]); // bound: LONGLONG
        } else {
            body.push(0);
        }
        body.extend_from_slice(&41i64.to_le_bytes());
        packets::command(0x17, &body)
    };
    assert!(h.send(execute(true)));
    assert!(h.wait_replies(2, LONG));
    h.break_connection(1);
    h.settle(Duration::from_millis(500));
    assert!(h.send(execute(false)));
    assert!(h.wait_replies(3, LONG));
    let r = reports(&s.file);
    let last = r.last().unwrap();
    assert_eq!(targets_of(last), ["s1", "s2"], "{last}");
    assert_eq!(
        last["results"][0]["checksum"], last["results"][1]["checksum"],
        "s2 executed it as s1 did: {last}"
    );
    let d = s.router.diagnostics().unwrap();
    assert_eq!(d["targets"]["s2"]["reconnects"], 1, "{d}");
}

fn diff_of(r: &Value) -> &Value {
    &result_of(r, "s2").unwrap()["diff"]
}

#[test]
fn report_diff_names_the_row_the_column_and_the_errors_that_differ() {
    let db = unique("mirror_diff");
    let ports = env::mariadb_ports();
    let mk = |v2: &str, u: &str| {
        vec![
            format!("CREATE DATABASE {db}"),
            format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))"),
            format!("INSERT INTO {db}.t VALUES (1, 'a'), (2, '{v2}'), (3, 'c')"),
            format!("CREATE TABLE {db}.u (id INT, {u})"),
        ]
    };
    on_servers(&[
        (ports[0], mk("b", "v VARCHAR(20)")),
        (ports[1], mk("x", "w INT")),
    ]);
    let s = setup(&[("report_diff", "true")]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    h.query("SELECT 1");
    h.query(&format!("SELECT id, v FROM {db}.t ORDER BY id"));
    h.query(&format!("SELECT * FROM {db}.u"));
    h.query(&format!("SELECT v, nope FROM {db}.u"));
    // The binary protocol: a prepared statement whose result differs.
    let sql = format!("SELECT id, v FROM {db}.t ORDER BY id");
    let before = h.client(|c| c.bytes.len());
    assert!(h.send(packets::command(0x16, sql.as_bytes())));
    assert!(h.wait_replies(5, LONG));
    let stmt = stmt_id(&h, before);
    assert!(h.send(execute(stmt)));
    assert!(h.wait_replies(6, LONG));
    let r = reports(&s.file);
    assert_eq!(r.len(), 6);
    assert!(
        result_of(&r[0], "s2").unwrap().get("diff").is_none(),
        "equal results carry no diff: {}",
        r[0]
    );
    // Data: the row and both values.
    assert_eq!(
        *diff_of(&r[1]),
        json!({"at": "row", "packet": 5, "result": 0, "row": 1, "main": ["2", "b"], "target": ["2", "x"]}),
        "{}",
        r[1]
    );
    let raw = std::fs::read_to_string(&s.file).unwrap();
    let line = raw.lines().nth(1).unwrap();
    eprintln!("a conflict with its diff: {line}");
    assert!(
        line.contains(r#""type":"resultset","diff":{"at":"row""#) && line.ends_with("}}]}"),
        "after the native keys: {line}"
    );
    // Schema: the column definitions.
    let d = diff_of(&r[2]);
    assert_eq!(
        (d["at"].as_str(), d["column"].as_u64()),
        (Some("column"), Some(1)),
        "{d}"
    );
    assert_eq!(
        (d["main"]["name"].as_str(), d["main"]["type"].as_str()),
        (Some("v"), Some("VAR_STRING")),
        "{d}"
    );
    assert_eq!(
        (d["target"]["name"].as_str(), d["target"]["type"].as_str()),
        (Some("w"), Some("LONG")),
        "{d}"
    );
    // Errors: both codes and messages.
    let d = diff_of(&r[3]);
    assert_eq!(d["at"], "error", "{d}");
    assert_eq!(
        (d["main"]["code"].as_u64(), d["target"]["code"].as_u64()),
        (Some(1054), Some(1054))
    );
    assert!(
        d["main"]["message"].as_str().unwrap().contains("'nope'"),
        "{d}"
    );
    assert!(
        d["target"]["message"].as_str().unwrap().contains("'v'"),
        "{d}"
    );
    // The prepared statement: compared like a text query, its SQL as `query`.
    assert_eq!(
        (r[5]["command"].as_str(), r[5]["query"].as_str()),
        (Some("COM_STMT_EXECUTE"), Some(sql.as_str()))
    );
    assert_ne!(
        r[5]["results"][0]["checksum"], r[5]["results"][1]["checksum"],
        "a binary result that differs is a conflict"
    );
    assert_eq!(
        *diff_of(&r[5]),
        json!({"at": "row", "packet": 5, "result": 0, "row": 1, "main": ["2", "b"], "target": ["2", "x"]})
    );
    assert_eq!(
        s.router.diagnostics().unwrap()["targets"]["s2"]["conflicts"],
        4
    );

    // Off (the default): the native report, no diff, no SQL for COM_STMT_EXECUTE.
    let plain = setup(&[]);
    let mut h = Harness::open(&plain.router, servers()).unwrap();
    let before = h.client(|c| c.bytes.len());
    assert!(h.send(packets::command(0x16, sql.as_bytes())));
    assert!(h.wait_replies(1, LONG));
    let stmt = stmt_id(&h, before);
    assert!(h.send(execute(stmt)));
    assert!(h.wait_replies(2, LONG));
    let r = reports(&plain.file);
    assert_eq!(r[1]["query"], "");
    assert!(result_of(&r[1], "s2").unwrap().get("diff").is_none());
    for p in &ports[..2] {
        env::mariadb(*p)
            .query_drop(format!("DROP DATABASE {db}"))
            .unwrap();
    }
}
