//! mirror driven through its C ABI by the Rust test host, against two real MariaDB servers
//! (127.0.0.1:3301 = s1, main; 127.0.0.1:3302 = s2) and a real Kafka-protocol broker.

use bridge::params::Params;
use bridge::protocol::resultset::err_packet;
use router_tests::env::{self, unique};
use router_tests::harness::Harness;
use router_tests::mirror_setup::{
    base_params, hex_le, module, reports, servers, setup, targets_of,
};
use router_tests::packets;
use serde_json::Value;
use std::time::{Duration, Instant};

#[test]
fn reports_follow_the_native_format_and_semantics() {
    let s = setup(&[]);
    let mut h = Harness::open(&s.router, servers()).expect("session");
    let select1 = h.query("SELECT 1");
    h.query("SELECT 1/0");
    h.query("SELECT * FROM no_such_db.no_such_table");
    h.query("SELECT 1; SELECT 2 UNION SELECT 3");
    assert!(h.send(packets::command(0x0E, b"")));
    assert!(h.wait_replies(5, Duration::from_secs(10)));
    assert!(h.send(packets::command(0x02, b"mysql")));
    assert!(h.wait_replies(6, Duration::from_secs(10)));

    let raw = std::fs::read_to_string(&s.file).unwrap();
    let first = raw.lines().next().unwrap();
    assert!(
        first.starts_with(r#"{"query":"SELECT 1","command":"COM_QUERY","session":"#),
        "{first}"
    );
    assert!(
        first.contains(r#""results":[{"target":"s1","checksum":""#),
        "{first}"
    );
    let r = reports(&s.file);
    assert_eq!(r.len(), 6, "one report per statement: {raw}");
    for (i, rep) in r.iter().enumerate() {
        assert_eq!(rep["query_id"], (i + 1) as u64);
        assert_eq!(rep["session"], h.id);
        assert_eq!(targets_of(rep), ["s1", "s2"]);
        let keys: Vec<&String> = rep["results"][0].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6);
    }
    // The client got exactly main's reply: its checksum is main's.
    assert_eq!(
        r[0]["results"][0]["checksum"].as_str().unwrap(),
        hex_le(crc32fast::hash(&select1))
    );
    assert_eq!(
        r[0]["results"][0]["checksum"], r[0]["results"][1]["checksum"],
        "same answer, same checksum"
    );
    assert_eq!(
        (
            r[0]["results"][0]["rows"].as_u64(),
            r[0]["results"][0]["type"].as_str()
        ),
        (Some(1), Some("resultset"))
    );
    assert_eq!(
        r[1]["results"][0]["warnings"], 1,
        "SELECT 1/0 warns: {}",
        r[1]
    );
    assert_eq!(r[2]["results"][0]["type"], "error");
    assert_eq!(
        r[3]["results"][0]["rows"], 3,
        "rows summed over the results of a multi-statement"
    );
    assert_eq!(
        (r[4]["command"].as_str(), r[4]["query"].as_str()),
        (Some("COM_PING"), Some(""))
    );
    assert_eq!(r[5]["command"], "COM_INIT_DB");
    let d = s.router.diagnostics().unwrap();
    assert_eq!(d["targets"]["s2"]["queries"], 6);
    assert_eq!(d["reports_exported"], 6);
}

#[test]
fn on_conflict_reports_only_differing_answers() {
    let db = unique("mirror_conflict");
    for (port, v) in env::mariadb_ports()
        .iter()
        .take(2)
        .zip(["same", "different"])
    {
        use mysql::prelude::Queryable;
        let mut c = env::mariadb(*port);
        c.query_drop(format!("CREATE DATABASE {db}")).unwrap();
        c.query_drop(format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v TEXT)"))
            .unwrap();
        c.query_drop(format!("INSERT INTO {db}.t VALUES (1, '{v}')"))
            .unwrap();
    }
    let s = setup(&[("report", "on_conflict")]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    h.query("SELECT 1");
    h.query(&format!("SELECT v FROM {db}.t"));
    h.query("SELECT 2");
    h.query(&format!("DROP DATABASE {db}"));
    let r = reports(&s.file);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["query"], format!("SELECT v FROM {db}.t"));
    assert_eq!(r[0]["query_id"], 1, "query_id counts written reports");
    assert_ne!(
        r[0]["results"][0]["checksum"],
        r[0]["results"][1]["checksum"]
    );
    assert_eq!(
        s.router.diagnostics().unwrap()["targets"]["s2"]["conflicts"],
        1
    );
}

/// The native router hangs here (spec §1.10): a non-main target fails while the request is in
/// flight and on_error=ignore.
#[test]
fn non_main_failure_during_a_request_does_not_hang() {
    let s = setup(&[]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    let s2_id = h.connection_id(1).unwrap();
    let start = Instant::now();
    assert!(h.send(packets::query(&format!(
        "SELECT SLEEP(IF(@@port = {}, 20, 0))",
        env::mariadb_ports()[1]
    ))));
    h.settle(Duration::from_millis(300));
    assert_eq!(
        h.client(|c| c.completed),
        0,
        "main's last chunk waits for s2"
    );
    {
        use mysql::prelude::Queryable;
        env::mariadb(env::mariadb_ports()[1])
            .query_drop(format!("KILL {s2_id}"))
            .unwrap();
    }
    assert!(
        h.wait_replies(1, Duration::from_secs(10)),
        "client hangs after s2 died"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    h.query("SELECT 'after'");
    assert!(h.alive);
    let r = reports(&s.file);
    assert_eq!(
        targets_of(r.last().unwrap()),
        ["s1"],
        "s2 is dropped after it failed"
    );
    assert_eq!(
        s.router.diagnostics().unwrap()["targets"]["s2"]["errors"],
        1
    );
}

#[test]
fn non_main_failure_with_on_error_close_ends_the_session() {
    let s = setup(&[("on_error", "close")]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    h.query("SELECT 1");
    let s2_id = h.connection_id(1).unwrap();
    {
        use mysql::prelude::Queryable;
        env::mariadb(env::mariadb_ports()[1])
            .query_drop(format!("KILL {s2_id}"))
            .unwrap();
    }
    h.settle(Duration::from_secs(2));
    assert!(
        !h.alive,
        "on_error=close ends the session when a target fails"
    );
}

/// The native router counts an unsolicited error as a reply and then defers every request
/// forever (spec §1.11).
#[test]
fn unsolicited_error_on_an_idle_target_does_not_corrupt_the_session() {
    let s = setup(&[]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    h.query("SELECT 1");
    // A server announcing its shutdown to an idle connection.
    let err = err_packet(0, 1053, "08S01", "Server shutdown in progress");
    assert!(h.inject(1, &err));
    h.query("SELECT 2");
    h.query("SELECT 3");
    let r = reports(&s.file);
    assert_eq!(r.len(), 3);
    assert_eq!(targets_of(&r[2]), ["s1", "s2"], "s2 is still mirrored");
    assert_eq!(
        r[2]["results"][0]["checksum"],
        r[2]["results"][1]["checksum"]
    );
}

/// The native router deadlocks on LOAD DATA LOCAL INFILE (spec §1.13).
#[test]
fn load_data_local_infile_reaches_every_target() {
    use mysql::prelude::Queryable;
    let db = unique("mirror_ldi");
    let ports = env::mariadb_ports();
    for p in &ports[..2] {
        let mut c = env::mariadb(*p);
        c.query_drop(format!("CREATE DATABASE {db}")).unwrap();
        c.query_drop(format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v TEXT)"))
            .unwrap();
    }
    let s = setup(&[]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    assert!(h.send(packets::query(&format!(
        "LOAD DATA LOCAL INFILE '/data.csv' INTO TABLE {db}.t FIELDS TERMINATED BY ','"
    ))));
    assert!(
        h.pump_until(Duration::from_secs(10), |c| c.bytes.len() > 4
            && c.bytes[4] == 0xFB),
        "main's LOCAL INFILE request reaches the client"
    );
    assert_eq!(h.client(|c| c.completed), 0);
    assert!(h.send(vec![
        packets::packet(2, b"1,a\n2,b\n"),
        packets::packet(3, b"3,c\n"),
        packets::packet(4, b"")
    ]));
    assert!(
        h.wait_replies(1, Duration::from_secs(10)),
        "the LOAD DATA completes"
    );
    for p in &ports[..2] {
        let n: u64 = env::mariadb(*p)
            .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
            .unwrap()
            .unwrap();
        assert_eq!(n, 3, "rows on port {p}");
    }
    h.query("SELECT 1");
    let r = reports(&s.file);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["results"][1]["type"], "ok");
    env::mariadb(ports[0])
        .query_drop(format!("DROP DATABASE {db}"))
        .unwrap();
    env::mariadb(ports[1])
        .query_drop(format!("DROP DATABASE {db}"))
        .unwrap();
}

/// A request of 16 MiB or more arrives in several packets; the native router deadlocks.
#[test]
fn requests_of_16_mib_and_more_work() {
    let s = setup(&[]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    let n = 17 * 1024 * 1024;
    let sql = format!("SELECT LENGTH('{}')", "x".repeat(n));
    let pkts = packets::query(&sql);
    assert!(pkts.len() >= 2);
    assert!(h.send(pkts));
    assert!(h.wait_replies(1, Duration::from_secs(60)));
    let reply = h.client(|c| c.bytes.clone());
    assert!(String::from_utf8_lossy(&reply).contains(&n.to_string()));
    let r = reports(&s.file);
    assert_eq!(r[0]["results"][1]["rows"], 1);
    assert_eq!(
        r[0]["results"][0]["checksum"],
        r[0]["results"][1]["checksum"]
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = setup(&[]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend(packets::query(&format!("SELECT {i}")));
    }
    assert!(h.send(all));
    assert!(h.wait_replies(5, Duration::from_secs(10)));
    let r = reports(&s.file);
    let q: Vec<&str> = r.iter().map(|x| x["query"].as_str().unwrap()).collect();
    assert_eq!(
        q,
        ["SELECT 0", "SELECT 1", "SELECT 2", "SELECT 3", "SELECT 4"]
    );
    // Queued packets keep the host's id (MaxScale matches prepared statements with it).
    let writes = h.client(|c| c.writes.clone());
    assert_eq!(
        writes,
        (1..=5)
            .flat_map(|id| [(0, id), (1, id)])
            .collect::<Vec<_>>()
    );
}

#[test]
fn bad_client_input_gets_a_clear_answer() {
    let s = setup(&[]);
    // An empty command: an error, the session goes on.
    let mut h = Harness::open(&s.router, servers()).unwrap();
    assert!(h.send(vec![packets::packet(0, b"")]));
    assert!(h.wait_replies(1, Duration::from_secs(5)));
    let reply = h.client(|c| c.bytes.clone());
    assert_eq!(
        &reply[4..7],
        &[0xFF, 0x2B, 0x07],
        "ERR 1835 malformed packet"
    );
    // An unknown command byte is passed on; the servers refuse it.
    assert!(h.send(packets::command(0x1E, b"")));
    assert!(h.wait_replies(2, Duration::from_secs(5)));
    h.query("SELECT 1");
    let r = reports(&s.file);
    assert_eq!(r[0]["command"], "COM_UNKNOWN(1e)");
    assert_eq!(r[0]["results"][0]["type"], "error");
    // A packet shorter than its header says: the session ends, nothing crashes.
    let mut h2 = Harness::open(&s.router, servers()).unwrap();
    assert!(!h2.send(vec![vec![10, 0, 0, 0, 3, b'S']]));
    // Invalid UTF-8 keeps the query key.
    h.query("SELECT '\u{fffd}'");
    let mut raw = packets::query("SELECT 'x'");
    let l = raw[0].len();
    raw[0][l - 2] = 0xFF;
    assert!(h.send(raw));
    assert!(h.wait_replies(5, Duration::from_secs(5)));
    let r = reports(&s.file);
    assert!(r.last().unwrap()["query"]
        .as_str()
        .unwrap()
        .starts_with("SELECT '"));
}

#[test]
fn reconfiguration_rotates_the_file_and_keeps_the_old_exporter_on_error() {
    let s = setup(&[]);
    let mut h = Harness::open(&s.router, servers()).unwrap();
    h.query("SELECT 1");
    let rotated = s.file.with_extension("1");
    std::fs::rename(&s.file, &rotated).unwrap();
    // Same parameters again: the file is reopened, as after `maxctrl alter service`.
    s.router
        .configure(&Params::new(base_params(&s.file)))
        .unwrap();
    h.query("SELECT 2");
    assert_eq!(reports(&rotated).len(), 1);
    assert_eq!(reports(&s.file).len(), 1);
    // A file that cannot be opened: refused, the previous exporter keeps working.
    let mut bad = base_params(&s.file);
    bad[2].1 = "/nonexistent-dir/x.jsonl".into();
    let err = s.router.configure(&Params::new(bad)).unwrap_err();
    assert!(err.contains("cannot open export file"), "{err}");
    h.query("SELECT 3");
    assert_eq!(reports(&s.file).len(), 2);
}

#[test]
fn parameters_are_validated_with_clear_errors() {
    let m = module();
    let v = |kv: &[(&str, &str)]| m.validate(&Params::new(kv.iter().copied()));
    assert_eq!(
        v(&[("main", "s1"), ("exporter", "file")]).unwrap_err(),
        "'file' must be defined when exporter=file is used."
    );
    assert_eq!(
        v(&[("main", "s1"), ("exporter", "kafka"), ("kafka_topic", "t")]).unwrap_err(),
        "Both 'kafka_broker' and 'kafka_topic' must be defined when exporter=kafka is used."
    );
    assert!(v(&[("main", "s1"), ("exporter", "log")]).is_ok());
    let params = m.params();
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "main",
            "exporter",
            "file",
            "kafka_broker",
            "kafka_topic",
            "on_error",
            "report",
            "sync",
            "max_backlog",
            "max_backlog_requests",
            "reconnect",
            "report_diff"
        ]
    );
    // The new parameters' defaults are the native behaviour.
    let defaults: Vec<Option<&str>> = params[7..].iter().map(|(_, d)| d.as_deref()).collect();
    assert_eq!(
        defaults,
        [
            Some("true"),
            Some("16Mi"),
            Some("0"),
            Some("false"),
            Some("false")
        ]
    );
    let bad = |k: &str, val: &str| v(&[("main", "s1"), ("exporter", "log"), (k, val)]).unwrap_err();
    assert!(
        bad("max_backlog", "16Q").contains("'max_backlog': invalid size suffix"),
        "{}",
        bad("max_backlog", "16Q")
    );
    assert!(bad("max_backlog", "0").contains("above 0"));
    assert!(bad("max_backlog_requests", "many").contains("'max_backlog_requests'"));
    assert!(bad("report_diff", "perhaps").contains("'report_diff'"));
}

#[test]
fn sessions_are_refused_when_main_is_unusable() {
    let s = setup(&[]);
    let mut t = servers();
    t.down = vec!["s1".into()];
    assert!(
        Harness::open(&s.router, t).is_none(),
        "main down: session refused"
    );
    let mut t = servers();
    t.down = vec!["s2".into()];
    let mut h = Harness::open(&s.router, t).expect("a non-main target down is tolerated");
    h.query("SELECT 1");
    assert_eq!(targets_of(&reports(&s.file)[0]), ["s1"]);
    let other = module().new_router("Other", &["s2"]).unwrap();
    let mut p = base_params(&s.file);
    p[0].1 = "s1".into();
    other.configure(&Params::new(p)).unwrap();
    let mut t = servers();
    t.servers.remove(0);
    assert!(
        Harness::open(&other, t).is_none(),
        "main not among the targets"
    );
}

mod kafka {
    use super::*;
    use router_tests::kafka::{consume, create_topic};

    #[test]
    fn kafka_exporter_delivers_every_report() {
        let topic = unique("mirror_reports");
        create_topic(&topic);
        let router = module().new_router("Mirror", &["s1", "s2"]).unwrap();
        let p = [
            ("main", "s1"),
            ("exporter", "kafka"),
            ("kafka_broker", &env::kafka_broker()),
            ("kafka_topic", &topic),
        ];
        router
            .configure(&Params::new(
                p.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            ))
            .unwrap();
        let mut h = Harness::open(&router, servers()).unwrap();
        for i in 0..3 {
            h.query(&format!("SELECT {i}"));
        }
        drop(h);
        drop(router); // shutdown flushes the queue
        let msgs = consume(&topic, 3);
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        for (i, m) in msgs.iter().enumerate() {
            let v: Value = serde_json::from_str(m).unwrap();
            assert_eq!(v["query"], format!("SELECT {i}"));
            assert!(!m.ends_with('\n'));
        }
    }

    #[test]
    fn unreachable_broker_never_blocks_routing() {
        let router = module().new_router("Mirror", &["s1", "s2"]).unwrap();
        let p = [
            ("main", "s1"),
            ("exporter", "kafka"),
            ("kafka_broker", "127.0.0.1:1"),
            ("kafka_topic", "nowhere"),
        ];
        router
            .configure(&Params::new(
                p.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            ))
            .unwrap();
        let mut h = Harness::open(&router, servers()).unwrap();
        let start = Instant::now();
        for i in 0..50 {
            h.query(&format!("SELECT {i}"));
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "routing waited for the broker: {:?}",
            start.elapsed()
        );
        let d = router.diagnostics().unwrap();
        assert_eq!(d["reports_exported"], 0);
        std::mem::forget(router); // do not wait 10 s for a flush that cannot succeed
    }
}
