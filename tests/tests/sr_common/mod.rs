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
        let d = Dbs { a: format!("sr_a_{u}"), b: format!("sr_b_{u}"), c: format!("sr_c_{u}"), shared: format!("{prefix}_{u}") };
        let p = env::mariadb_ports();
        let run = |port: u16, sql: &[String]| {
            let mut c = env::mariadb(port);
            for s in sql {
                c.query_drop(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        };
        run(p[0], &[
            format!("CREATE DATABASE {}", d.a),
            format!("CREATE TABLE {}.t1 (id INT PRIMARY KEY, srv VARCHAR(8))", d.a),
            format!("INSERT INTO {}.t1 VALUES (1, 's1')", d.a),
            format!("CREATE DATABASE {}", d.shared),
            format!("CREATE TABLE {}.ta (id INT PRIMARY KEY, srv VARCHAR(8))", d.shared),
            format!("INSERT INTO {}.ta VALUES (1, 's1')", d.shared),
        ]);
        run(p[1], &[
            format!("CREATE DATABASE {}", d.b),
            format!("CREATE TABLE {}.t2 (id INT PRIMARY KEY, srv VARCHAR(8))", d.b),
            format!("INSERT INTO {}.t2 VALUES (1, 's2')", d.b),
            format!("CREATE DATABASE {}", d.shared),
            format!("CREATE TABLE {}.tb (id INT PRIMARY KEY, srv VARCHAR(8))", d.shared),
            format!("INSERT INTO {}.tb VALUES (1, 's2')", d.shared),
        ]);
        run(p[2], &[
            format!("CREATE DATABASE {}", d.c),
            format!("CREATE TABLE {}.t3 (id INT PRIMARY KEY, srv VARCHAR(8))", d.c),
            format!("INSERT INTO {}.t3 VALUES (1, 's3')", d.c),
        ]);
        d
    }
}

impl Drop for Dbs {
    fn drop(&mut self) {
        let p = env::mariadb_ports();
        for (port, dbs) in [(p[0], vec![&self.a, &self.shared]), (p[1], vec![&self.b, &self.shared]), (p[2], vec![&self.c])] {
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
            out.push(r.into_iter().map(|v| v.map_or("NULL".into(), |v| String::from_utf8_lossy(v).into_owned())).collect());
        }
        t.feed(&p).expect("valid reply");
    }
    assert!(t.is_complete(), "reply incomplete");
    Ok(out)
}

pub fn one(h: &mut Harness, sql: &str) -> String {
    let r = rows(&h.query(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(r.len(), 1, "{sql}: {r:?} {:?}", h.client(|c| c.chunks.iter().rev().take(12).map(|x| (x.0, x.1.len(), x.2)).collect::<Vec<_>>()));
    r[0][0].clone()
}

pub fn ok(h: &mut Harness, sql: &str) {
    let reply = h.query(sql);
    if let Some(p) = Packets::new(&reply).next() {
        assert_ne!(p.unwrap().first(), Some(0xFF), "{sql}: {:?}", ReplyError::parse(Packets::new(&reply).next().unwrap().unwrap().payload));
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
    let (killed, last) = h.client(|c| (c.killed.clone(), c.chunks.last().map(|(_, d, _)| d.clone())));
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
