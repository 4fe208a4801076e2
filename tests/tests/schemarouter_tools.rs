//! The schema of a database split by table looks like one server's (issue 17): the
//! statements dump tools and schema browsers send, at statement level, then the real tools
//! through the test host's listener: mariadb-dump (its dump restores into one fresh server
//! with every table and row), PyMySQL and mysql-connector-python listing tables through
//! information_schema, SQLAlchemy's inspector.
//!
//! The split database (`sr_shared_*`): on s1 the table `ta` and the view `v_ta`; on s2 the
//! table `tb` (with a trigger), `tc` (a foreign key to `tb`) and a procedure.

mod sr_common;

use bridge::protocol::packet::Packets;
use bridge::protocol::reply::ReplyError;
use mysql::prelude::Queryable;
use router_tests::env;
use router_tests::harness::Harness;
use router_tests::listener::run_tool;
use sr_common::*;
use std::process::Command;
use std::time::Duration;

/// The split database with more objects, and more rows.
fn split_db() -> Dbs {
    let d = Dbs::create();
    add_split_objects(&d.shared);
    d
}

fn names(h: &mut Harness, sql: &str) -> Vec<String> {
    rows(&h.query(sql))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

fn error(h: &mut Harness, sql: &str) -> ReplyError {
    let reply = h.query(sql);
    Packets::new(&reply)
        .next()
        .and_then(|p| ReplyError::parse(p.unwrap().payload))
        .unwrap_or_else(|| panic!("{sql}: no error"))
}

/// What a dump tool asks about the tables of a split database reaches the shard that holds
/// them, or every shard holding part of the database.
#[test]
fn dump_statements_reach_the_shards_that_hold_the_tables() {
    let d = split_db();
    let s = d.shared.clone();
    let r = router(params(&d));
    let mut h = Harness::open(&r, servers()).expect("session");
    ok(&mut h, &format!("USE {s}"));
    // The statement: mysqldump asks this before dumping tb's rows.
    assert_eq!(names(&mut h, "SHOW TABLE STATUS LIKE 'tb'"), vec!["tb"]);
    assert_eq!(
        names(&mut h, "SHOW TABLE STATUS LIKE 'v\\_ta'"),
        vec!["v_ta"]
    );
    assert_eq!(
        names(&mut h, "SHOW TABLE STATUS"),
        vec!["ta", "tb", "tc", "v_ta"]
    );
    assert_eq!(
        names(
            &mut h,
            &format!("SHOW TABLE STATUS FROM {s} WHERE Name IN ('ta', 'tc')")
        ),
        vec!["ta", "tc"]
    );
    let full = rows(&h.query("SHOW FULL TABLES")).unwrap();
    assert_eq!(
        full.iter()
            .map(|r| (r[0].as_str(), r[1].as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("ta", "BASE TABLE"),
            ("tb", "BASE TABLE"),
            ("tc", "BASE TABLE"),
            ("v_ta", "VIEW")
        ]
    );
    assert_eq!(
        names(&mut h, &format!("SHOW FULL TABLES FROM {s} LIKE 't%'")),
        vec!["ta", "tb", "tc"]
    );
    assert_eq!(
        names(&mut h, "SHOW FULL TABLES WHERE Table_type = 'VIEW'"),
        vec!["v_ta"]
    );
    for sql in [
        "SHOW COLUMNS FROM tb",
        "SHOW FULL COLUMNS FROM tc",
        "DESCRIBE tb",
        "SHOW FIELDS FROM `tb`",
        "SHOW INDEX FROM tc",
        "SHOW KEYS FROM tb",
    ] {
        assert!(
            !rows(&h.query(sql))
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .is_empty(),
            "{sql}"
        );
    }
    let create = rows(&h.query("show create table `tc`")).unwrap();
    assert!(create[0][1].contains("FOREIGN KEY"), "{create:?}");
    assert_eq!(names(&mut h, "SHOW TRIGGERS LIKE 'tb'"), vec!["trg_tb"]);
    assert_eq!(
        rows(&h.query("SHOW CREATE TRIGGER `trg_tb`")).unwrap()[0][0],
        "trg_tb",
        "on s2 only: the shard that has it answers"
    );
    assert_eq!(
        names(&mut h, &format!("SHOW PROCEDURE STATUS WHERE Db = '{s}'")),
        vec![s.clone()]
    );
    assert!(rows(&h.query("SHOW CREATE PROCEDURE `p_tb`")).unwrap()[0][2].contains("COUNT(*)"));
    assert_eq!(
        error(&mut h, "SHOW CREATE TRIGGER no_such_trigger").code,
        1360,
        "unknown everywhere: the server's error"
    );
    // mariadb-dump's information_schema questions about one table.
    let q = "SELECT engine, table_type FROM INFORMATION_SCHEMA.TABLES WHERE table_schema = DATABASE() AND table_name = 'tc'";
    assert_eq!(
        rows(&h.query(q)).unwrap(),
        vec![vec!["InnoDB".to_string(), "BASE TABLE".into()]]
    );
    let q = "select column_name, extra, generation_expression, data_type from information_schema.columns where table_schema=database() and table_name='tb' order by ordinal_position";
    assert_eq!(names(&mut h, q), vec!["id", "srv"]);
    assert_eq!(
        names(
            &mut h,
            "SELECT TRIGGER_NAME FROM INFORMATION_SCHEMA.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'tb'"
        ),
        vec!["trg_tb"]
    );
    assert_eq!(
        names(&mut h, &format!("SELECT TABLE_NAME FROM information_schema.views WHERE table_name='v_ta' AND table_schema='{s}'")),
        vec!["v_ta"]
    );
    // Without a default database, qualified names.
    let mut h2 = Harness::open(&r, servers()).expect("session");
    for sql in [
        format!("SHOW COLUMNS FROM {s}.tb"),
        format!("DESCRIBE {s}.tc"),
        format!("SHOW CREATE TABLE {s}.tb"),
        format!("SHOW INDEX FROM tc FROM {s}"),
    ] {
        assert!(
            !rows(&h2.query(&sql))
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .is_empty(),
            "{sql}"
        );
    }
    assert_eq!(
        names(&mut h2, &format!("SHOW TABLE STATUS FROM {s} LIKE 'tc'")),
        vec!["tc"]
    );

    // LOCK TABLES over both shards: each locks its own tables (s1's lock is real: an unlocked
    // table of s1 is refused until UNLOCK TABLES).
    ok(&mut h, "LOCK TABLES `ta` READ /*!32311 LOCAL */,`tb` READ /*!32311 LOCAL */,`v_ta` READ /*!32311 LOCAL */");
    assert_eq!(one(&mut h, "SELECT COUNT(*) FROM tb"), "2");
    assert_eq!(one(&mut h, "SELECT COUNT(*) FROM ta"), "3");
    assert_eq!(
        error(&mut h, &format!("SELECT * FROM {}.t1", d.a)).code,
        1100,
        "not locked"
    );
    // A new LOCK TABLES releases the earlier locks, also on the shard it does not name.
    ok(&mut h, "LOCK TABLES tb WRITE");
    assert_eq!(
        one(&mut h, &format!("SELECT COUNT(*) FROM {}.t1", d.a)),
        "1",
        "s1's locks are gone"
    );
    ok(&mut h, "UNLOCK TABLES");
    assert_eq!(
        one(&mut h, &format!("SELECT COUNT(*) FROM {}.t2", d.b)),
        "1"
    );
    assert_eq!(
        error(&mut h, "LOCK TABLES ta READ, no_such_table READ").code,
        1146,
        "an error on one shard is the answer"
    );
    ok(&mut h, "UNLOCK TABLES");
    // The rest of a dump's session: flushes, consistent snapshot, savepoints, settings.
    for sql in [
        "FLUSH /*!40101 LOCAL */ TABLES",
        "FLUSH TABLES WITH READ LOCK",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION /*!40100 WITH CONSISTENT SNAPSHOT */",
        "UNLOCK TABLES",
        "SAVEPOINT sp",
        "SET SQL_QUOTE_SHOW_CREATE=1",
        "/*!40100 SET @@SQL_MODE='' */",
        "/*!40103 SET TIME_ZONE='+00:00' */",
    ] {
        ok(&mut h, sql);
    }
    assert_eq!(
        one(&mut h, "SELECT /*!40001 SQL_NO_CACHE */ COUNT(*) FROM `tc`"),
        "1"
    );
    for sql in ["ROLLBACK TO SAVEPOINT sp", "RELEASE SAVEPOINT sp", "COMMIT"] {
        ok(&mut h, sql);
    }
}

/// information_schema's object lists as one server holding every shard would answer them.
#[test]
fn information_schema_is_one_servers() {
    let d = split_db();
    let s = d.shared.clone();
    let p = env::mariadb_ports();
    let r = router(params(&d));
    let mut h = Harness::open(&r, servers()).expect("session");
    let q = format!("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{s}' ORDER BY TABLE_NAME");
    assert_eq!(names(&mut h, &q), vec!["ta", "tb", "tc", "v_ta"]);
    let q = format!("SELECT table_name AS n FROM information_schema.tables WHERE table_schema = '{s}' ORDER BY n DESC LIMIT 1, 2");
    assert_eq!(
        names(&mut h, &q),
        vec!["tc", "tb"],
        "re-sorted and re-limited after the merge"
    );
    let q = format!("SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{s}' AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1 LIMIT 2 OFFSET 1");
    assert_eq!(names(&mut h, &q), vec!["tb", "tc"]);
    let q = format!(
        "SELECT * FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ('{s}', '{}', '{}', '{}') ORDER BY SCHEMA_NAME",
        d.a, d.b, d.c
    );
    let mut want = vec![s.clone(), d.a.clone(), d.b.clone(), d.c.clone()];
    want.sort();
    assert_eq!(
        rows(&h.query(&q))
            .unwrap()
            .into_iter()
            .map(|r| r[1].clone())
            .collect::<Vec<_>>(),
        want,
        "the split database once"
    );
    let q = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ('{}', '{}', '{}') ORDER BY 2",
        d.a, d.b, d.c
    );
    assert_eq!(
        rows(&h.query(&q))
            .unwrap()
            .into_iter()
            .map(|r| r[1].clone())
            .collect::<Vec<_>>(),
        vec!["t1", "t2", "t3"]
    );
    // Lists across the shards; duplicates of system objects shown once.
    let schemata = names(
        &mut h,
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA",
    );
    for x in [
        "information_schema",
        "mysql",
        s.as_str(),
        d.a.as_str(),
        d.b.as_str(),
        d.c.as_str(),
    ] {
        assert_eq!(
            schemata.iter().filter(|y| *y == x).count(),
            1,
            "{x} once in {schemata:?}"
        );
    }
    let sys = rows(&h.query("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'mysql'")).unwrap();
    let direct: u64 = env::mariadb(p[0])
        .query_first("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'mysql'")
        .unwrap()
        .unwrap();
    assert_eq!(
        sys.len() as u64,
        direct,
        "a system schema: one server's list"
    );
    // With a condition the router does not read (LIKE), every shard answers; the result is
    // the union of the three servers' own answers, ordered as asked.
    let like = format!("{}%", s.trim_end_matches(|c: char| c.is_ascii_digit()));
    let q = format!("SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA LIKE '{like}' ORDER BY TABLE_NAME DESC, COLUMN_NAME");
    let merged = rows(&h.query(&q)).unwrap();
    let mut expected: Vec<Vec<String>> = Vec::new();
    for port in p.iter().take(3) {
        let part: Vec<(String, String, String)> = env::mariadb(*port).query(&q).unwrap();
        for (a, b, c) in part {
            if !expected
                .iter()
                .any(|e| e == &vec![a.clone(), b.clone(), c.clone()])
            {
                expected.push(vec![a, b, c]);
            }
        }
    }
    expected.sort_by(|x, y| {
        y[1].to_lowercase()
            .cmp(&x[1].to_lowercase())
            .then(x[2].to_lowercase().cmp(&y[2].to_lowercase()))
    });
    let mine: Vec<Vec<String>> = merged.into_iter().filter(|r| r[0] == s).collect();
    let want: Vec<Vec<String>> = expected.into_iter().filter(|r| r[0] == s).collect();
    assert_eq!(mine, want);
    // Other object lists.
    let q = format!(
        "SELECT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{s}' ORDER BY TABLE_NAME, INDEX_NAME"
    );
    assert_eq!(
        rows(&h.query(&q)).unwrap(),
        vec![
            vec!["ta".to_string(), "PRIMARY".into()],
            vec!["tb".into(), "PRIMARY".into()],
            vec!["tc".into(), "b".into()],
            vec!["tc".into(), "PRIMARY".into()]
        ],
        "case-insensitive, as the server sorts"
    );
    assert_eq!(
        names(
            &mut h,
            &format!(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{s}'"
            )
        ),
        vec!["p_tb"]
    );
    assert_eq!(
        names(
            &mut h,
            &format!("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{s}'")
        ),
        vec!["v_ta"]
    );
    assert_eq!(
        names(&mut h, &format!("SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = '{s}'"))
            .len(),
        1
    );
    let q = format!("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = '{s}' ORDER BY TABLE_NAME, COLUMN_NAME");
    assert_eq!(names(&mut h, &q), vec!["ta", "tb", "tc", "tc"]);
    // The current database counts as the schema a condition names.
    ok(&mut h, &format!("USE {s}"));
    assert_eq!(
        names(&mut h, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1"),
        vec!["ta", "tb", "tc", "v_ta"]
    );
}

fn run_dump(r: &bridge::sim::SimRouter, db: &str, extra: &[&str]) -> String {
    let out = run_tool(r, &servers(), Duration::from_secs(60), |port| {
        let mut c = Command::new("mariadb-dump");
        c.args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            &format!("-u{}", env::USER),
            &format!("-p{}", env::PASSWORD),
            "--routines",
            "--triggers",
        ]);
        c.args(extra).arg(db);
        c
    });
    assert!(
        out.status.success(),
        "mariadb-dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 dump")
}

/// mariadb-dump through the router, restored into a fresh database on one server: every
/// table, view, trigger, routine and row is there.
#[test]
fn mariadb_dump_of_a_split_database_restores_every_table_and_row() {
    let d = split_db();
    let s = d.shared.clone();
    let p = env::mariadb_ports();
    let r = router(params(&d));
    for (n, extra) in [&[][..], &["--single-transaction"][..]]
        .into_iter()
        .enumerate()
    {
        let dump = run_dump(&r, &s, extra);
        let restored = format!("{}_r{n}", d.c);
        let _drop = DropLater(p[2], restored.clone());
        check_restore(&dump, &s, p[2], &restored);
    }
}

/// PyMySQL and mysql-connector-python list every table through information_schema, and
/// SQLAlchemy's inspector reflects every table with its columns (pip packages PyMySQL,
/// mysql-connector-python, SQLAlchemy: tests/services/install.sh installs them).
#[test]
fn python_connectors_and_sqlalchemy_see_every_table() {
    let d = split_db();
    let s = d.shared.clone();
    let r = router(params(&d));
    let out = run_tool(&r, &servers(), Duration::from_secs(90), |port| {
        schema_clients(port, &s)
    });
    check_schema_clients(&out, &s);
}
