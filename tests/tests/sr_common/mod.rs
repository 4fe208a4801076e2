//! What the schemarouter suites share: the databases of a run on the three servers, a
//! router, and reading replies. s1 (3301) holds `sr_a_*`, s2 (3302) `sr_b_*`, s3 (3303)
//! `sr_c_*`, and the database `sr_shared_*` is split by table between s1 (table `ta`) and s2
//! (table `tb`). Every table has a column `srv` whose value names the server it lives on.
#![allow(dead_code)]

use bridge::params::Params;
use bridge::protocol::packet::Packets;
use bridge::protocol::reply::{ReplyError, ReplyTracker};
use bridge::protocol::rows::{is_row, text_row};
use bridge::sim::{Module, SimRouter};
use mysql::prelude::Queryable;
use router_tests::env::{self, unique};
use router_tests::harness::{Harness, Targets};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub struct Dbs {
    pub a: String,
    pub b: String,
    pub c: String,
    pub shared: String,
}

impl Dbs {
    pub fn create() -> Dbs {
        Dbs::with_shared("sr_shared")
    }

    pub fn with_shared(prefix: &str) -> Dbs {
        let u = unique("x");
        let d = Dbs {
            a: format!("sr_a_{u}"),
            b: format!("sr_b_{u}"),
            c: format!("sr_c_{u}"),
            shared: format!("{prefix}_{u}"),
        };
        let p = env::mariadb_ports();
        let run = |port: u16, sql: &[String]| {
            let mut c = env::mariadb(port);
            for s in sql {
                c.query_drop(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        };
        run(
            p[0],
            &[
                format!("CREATE DATABASE {}", d.a),
                format!(
                    "CREATE TABLE {}.t1 (id INT PRIMARY KEY, srv VARCHAR(8))",
                    d.a
                ),
                format!("INSERT INTO {}.t1 VALUES (1, 's1')", d.a),
                format!("CREATE DATABASE {}", d.shared),
                format!(
                    "CREATE TABLE {}.ta (id INT PRIMARY KEY, srv VARCHAR(8))",
                    d.shared
                ),
                format!("INSERT INTO {}.ta VALUES (1, 's1')", d.shared),
            ],
        );
        run(
            p[1],
            &[
                format!("CREATE DATABASE {}", d.b),
                format!(
                    "CREATE TABLE {}.t2 (id INT PRIMARY KEY, srv VARCHAR(8))",
                    d.b
                ),
                format!("INSERT INTO {}.t2 VALUES (1, 's2')", d.b),
                format!("CREATE DATABASE {}", d.shared),
                format!(
                    "CREATE TABLE {}.tb (id INT PRIMARY KEY, srv VARCHAR(8))",
                    d.shared
                ),
                format!("INSERT INTO {}.tb VALUES (1, 's2')", d.shared),
            ],
        );
        run(
            p[2],
            &[
                format!("CREATE DATABASE {}", d.c),
                format!(
                    "CREATE TABLE {}.t3 (id INT PRIMARY KEY, srv VARCHAR(8))",
                    d.c
                ),
                format!("INSERT INTO {}.t3 VALUES (1, 's3')", d.c),
            ],
        );
        d
    }
}

impl Drop for Dbs {
    fn drop(&mut self) {
        let p = env::mariadb_ports();
        for (port, dbs) in [
            (p[0], vec![&self.a, &self.shared]),
            (p[1], vec![&self.b, &self.shared]),
            (p[2], vec![&self.c]),
        ] {
            for d in dbs {
                drop_database(port, d);
            }
        }
    }
}

pub fn servers() -> Targets {
    let p = env::mariadb_ports();
    Targets::new(&[("s1", p[0]), ("s2", p[1]), ("s3", p[2])])
}

/// Only this suite's databases are checked for duplicates (other suites' leftovers may be
/// anywhere): names not starting with `sr_` are exempt, and so are the split databases
/// (`sr_shared_*`, as databases: their tables are distinct), since tests run in parallel.
pub const CHECK_SR: &str = "^([^s]|s[^r]|sr[^_])|^sr_shared_[^.]*\\.$";
/// Checks only the names of one test's own split database (tests run in parallel, and
/// other people's runs of this suite use the same servers).
pub fn check_only(d: &Dbs) -> String {
    format!("^(?!{}\\.)", d.shared)
}

pub fn params(_d: &Dbs) -> Vec<(String, String)> {
    vec![("ignore_tables_regex".into(), CHECK_SR.into())]
}

pub fn router(p: Vec<(String, String)>) -> SimRouter {
    let m = Module::load(&env::module_path("schemarouter")).expect("load libschemarouter.so");
    let r = m.new_router("Sharding", &["s1", "s2", "s3"]).unwrap();
    r.configure(&Params::new(p)).unwrap();
    r
}

/// The rows of a text result (NULL as "NULL"), or the error.
pub fn rows(reply: &[u8]) -> Result<Vec<Vec<String>>, ReplyError> {
    let mut t = ReplyTracker::new(false);
    t.start(0x03);
    let mut out = Vec::new();
    for p in Packets::new(reply) {
        let p = p.expect("well-formed reply");
        if let Some(e) = ReplyError::parse(p.payload) {
            return Err(e);
        }
        if is_row(t.state(), &p, false) {
            let r = text_row(p.payload).expect("text row");
            out.push(
                r.into_iter()
                    .map(|v| v.map_or("NULL".into(), |v| String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            );
        }
        t.feed(&p).expect("valid reply");
    }
    assert!(t.is_complete(), "reply incomplete");
    Ok(out)
}

pub fn one(h: &mut Harness, sql: &str) -> String {
    let r = rows(&h.query(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(
        r.len(),
        1,
        "{sql}: {r:?} {:?}",
        h.client(|c| c
            .chunks
            .iter()
            .rev()
            .take(12)
            .map(|x| (x.0, x.1.len(), x.2))
            .collect::<Vec<_>>())
    );
    r[0][0].clone()
}

pub fn ok(h: &mut Harness, sql: &str) {
    let reply = h.query(sql);
    if let Some(p) = Packets::new(&reply).next() {
        assert_ne!(
            p.unwrap().first(),
            Some(0xFF),
            "{sql}: {:?}",
            ReplyError::parse(Packets::new(&reply).next().unwrap().unwrap().payload)
        );
    }
}

pub fn port_of(h: &mut Harness, sql: &str) -> u16 {
    one(h, sql).parse().unwrap()
}

/// The message the client got when the router ended the session: either the host's kill
/// message, or (when a request was waiting) an ERR 1927/70100 answering that request in
/// sequence (the test sends single-packet commands, so its sequence number is 1).
pub fn wait_killed(h: &mut Harness) -> Option<String> {
    h.pump_until(Duration::from_secs(10), |c| c.killed.is_some());
    let (killed, last) =
        h.client(|c| (c.killed.clone(), c.chunks.last().map(|(_, d, _)| d.clone())));
    let killed = killed?;
    if !killed.is_empty() {
        return Some(killed);
    }
    let err = last.expect("a session ended without a message answers the waiting request");
    assert_eq!((err[3], err[4]), (1, 0xff), "ERR in sequence: {err:?}");
    assert_eq!(u16::from_le_bytes([err[5], err[6]]), 1927);
    assert_eq!(&err[7..13], b"#70100");
    Some(String::from_utf8_lossy(&err[13..]).into_owned())
}

/// Drops a database, also while a test is failing (errors are ignored).
pub fn drop_database(port: u16, db: &str) {
    if let Ok(mut c) = std::panic::catch_unwind(|| env::mariadb(port)) {
        let _ = c.query_drop(format!("DROP DATABASE IF EXISTS {db}"));
    }
}

/// Drops a database the test creates, when the test ends.
pub struct DropLater(pub u16, pub String);
impl Drop for DropLater {
    fn drop(&mut self) {
        drop_database(self.0, &self.1);
    }
}

/// More objects in a database split by table (`ta` on s1, `tb` on s2): on s1 more rows of
/// `ta` and the view `v_ta`; on s2 a row of `tb`, the table `tc` (a foreign key to `tb`), a
/// trigger on `tb` and a procedure.
pub fn add_split_objects(s: &str) {
    let p = env::mariadb_ports();
    let run = |port: u16, sql: Vec<String>| {
        let mut c = env::mariadb(port);
        for q in sql {
            c.query_drop(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    };
    run(
        p[0],
        vec![
            format!("INSERT INTO {s}.ta VALUES (2, 'two'), (3, NULL)"),
            format!("USE {s}"),
            "CREATE VIEW v_ta AS SELECT id, srv FROM ta WHERE id > 1".into(),
        ],
    );
    run(
        p[1],
        vec![
            format!("INSERT INTO {s}.tb VALUES (2, 'b2')"),
            format!("CREATE TABLE {s}.tc (id INT PRIMARY KEY, b INT, KEY (b), FOREIGN KEY (b) REFERENCES {s}.tb (id))"),
            format!("INSERT INTO {s}.tc VALUES (1, 2)"),
            format!("USE {s}"),
            "CREATE TRIGGER trg_tb BEFORE INSERT ON tb FOR EACH ROW SET NEW.srv = LOWER(NEW.srv)".into(),
            "CREATE PROCEDURE p_tb() SELECT COUNT(*) FROM tb".into(),
        ],
    );
}

type Rows = Vec<(i32, Option<String>)>;

/// Restores a dump of the split database `s` into a fresh database `restored` on `port`, and
/// checks that every table, view, trigger, routine and row of the original is there.
pub fn check_restore(dump: &str, s: &str, port: u16, restored: &str) {
    for want in [
        "CREATE TABLE `ta`",
        "CREATE TABLE `tb`",
        "CREATE TABLE `tc`",
        "INSERT INTO `ta`",
        "INSERT INTO `tb`",
        "INSERT INTO `tc`",
        "trg_tb",
        "PROCEDURE `p_tb`",
        "VIEW `v_ta`",
    ] {
        assert!(dump.contains(want), "the dump lacks {want}");
    }
    let p = env::mariadb_ports();
    env::mariadb(port)
        .query_drop(format!("CREATE DATABASE {restored}"))
        .unwrap();
    let mut load = Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            &format!("-u{}", env::USER),
            &format!("-p{}", env::PASSWORD),
            restored,
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(load.stdin.as_mut().unwrap(), dump.as_bytes()).unwrap();
    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut dst = env::mariadb(port);
    for (from, t) in [(p[0], "ta"), (p[1], "tb"), (p[1], "tc")] {
        let q = |db: &str| {
            format!(
                "SELECT id, CAST({c} AS CHAR) FROM {db}.{t} ORDER BY id",
                c = if t == "tc" { "b" } else { "srv" }
            )
        };
        let original: Rows = env::mariadb(from).query(q(s)).unwrap();
        let copy: Rows = dst.query(q(restored)).unwrap();
        assert_eq!(copy, original, "{t}");
    }
    let v: Rows = dst
        .query(format!("SELECT id, srv FROM {restored}.v_ta ORDER BY id"))
        .unwrap();
    assert_eq!(v, vec![(2, Some("two".into())), (3, None)]);
    dst.query_drop(format!("INSERT INTO {restored}.tb VALUES (9, 'LOUD')"))
        .unwrap();
    assert_eq!(
        dst.query_first::<String, _>(format!("SELECT srv FROM {restored}.tb WHERE id = 9"))
            .unwrap()
            .as_deref(),
        Some("loud"),
        "trigger restored"
    );
    assert_eq!(
        dst.query_first::<u64, _>(format!(
            "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{restored}'"
        ))
        .unwrap(),
        Some(1)
    );
}

/// tests/tools/schema_clients.py against a MariaDB endpoint on `port`, for database `db`.
pub fn schema_clients(port: u16, db: &str) -> Command {
    let mut c = Command::new("python3");
    c.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tools/schema_clients.py"
    ));
    c.args(["127.0.0.1", &port.to_string(), env::USER, env::PASSWORD, db]);
    c
}

/// Checks what schema_clients.py saw of the split database `s` (with `add_split_objects`):
/// every table, through each connector and SQLAlchemy's inspector.
pub fn check_schema_clients(out: &Output, s: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = &stderr[stderr.len().saturating_sub(2000)..];
    assert!(out.status.success(), "schema_clients.py failed (pip install PyMySQL mysql-connector-python SQLAlchemy?): ...{tail}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let list = |x: &serde_json::Value| -> Vec<String> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    for driver in ["pymysql", "mysql_connector"] {
        let r = &v[driver];
        assert_eq!(
            list(&r["tables"]),
            vec!["ta", "tb", "tc", "v_ta"],
            "{driver}"
        );
        assert_eq!(list(&r["last_two"]), vec!["v_ta", "tc"], "{driver}");
        assert_eq!(list(&r["schemata"]), vec![s.to_string()], "{driver}");
        assert_eq!(
            list(&r["columns"]),
            vec!["id", "srv", "id", "srv", "id", "b", "id", "srv"],
            "{driver}"
        );
    }
    for orm in ["sqlalchemy_pymysql", "sqlalchemy_mysqlconnector"] {
        let r = &v[orm];
        assert_eq!(list(&r["tables"]), vec!["ta", "tb", "tc"], "{orm}");
        assert_eq!(list(&r["views"]), vec!["v_ta"], "{orm}");
        assert_eq!(list(&r["columns"]["tb"]), vec!["id", "srv"], "{orm}");
        assert_eq!(list(&r["columns"]["tc"]), vec!["id", "b"], "{orm}");
    }
}
