//! The analysis corpus: statements and the names they must yield.

use super::*;

fn names(sql: &str) -> (Vec<String>, Vec<String>) {
    let a = analyze(sql);
    let t = a
        .tables
        .iter()
        .map(|r| match &r.db {
            Some(d) => format!("{d}.{}", r.table),
            None => r.table.clone(),
        })
        .collect();
    (t, a.databases)
}

/// (sql, expected tables (sorted as `db.t` or `t`), expected explicit databases in order)
const CORPUS: &[(&str, &[&str], &[&str])] = &[
    ("SELECT 1", &[], &[]),
    ("SELECT * FROM t1", &["t1"], &[]),
    ("select * from `db1`.`t1` where a = 1", &["db1.t1"], &["db1"]),
    ("SELECT a FROM db1.t1 AS x JOIN db1.t2 y ON x.id = y.id", &["db1.t1", "db1.t2"], &["db1"]),
    ("SELECT * FROM t1, db2.t2 z, t3 WHERE 1", &["db2.t2", "t1", "t3"], &["db2"]),
    ("SELECT * FROM a LEFT OUTER JOIN b USING (id) STRAIGHT_JOIN c", &["a", "b", "c"], &[]),
    ("SELECT * FROM (a JOIN b ON a.x = b.x) WHERE 1", &["a", "b"], &[]),
    ("SELECT `from`.x FROM `weird name`.`tab``le` AS `from`", &["weird name.tab`le"], &["weird name"]),
    ("SELECT * FROM `my.db`.t", &["my.db.t"], &["my.db"]),
    ("SELECT * FROM db1.`order`", &["db1.order"], &["db1"]),
    ("/* leading */ SELECT -- c\n * FROM # x\n t9", &["t9"], &[]),
    ("SELECT /*!40001 SQL_NO_CACHE */ * FROM /*!50100 db3.*/ t", &["db3.t"], &["db3"]),
    ("SELECT 'FROM x' FROM t WHERE s = \"JOIN y\"", &["t"], &[]),
    ("SELECT EXTRACT(YEAR FROM d), TRIM(LEADING 'x' FROM s) FROM t", &["t"], &[]),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM db2.u WHERE EXISTS (SELECT 1 FROM v))", &["db2.u", "t", "v"], &["db2"]),
    ("SELECT * FROM (SELECT * FROM inner_t) AS d", &["inner_t"], &[]),
    ("WITH c AS (SELECT * FROM base) SELECT * FROM c JOIN other ON 1", &["base", "other"], &[]),
    ("WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", &[], &[]),
    ("WITH a AS (SELECT 1), b AS (SELECT * FROM db1.t) SELECT * FROM a, b", &["db1.t"], &["db1"]),
    ("INSERT INTO db1.t (a) SELECT a FROM db1.s", &["db1.s", "db1.t"], &["db1"]),
    ("INSERT t VALUES (1)", &["t"], &[]),
    ("INSERT IGNORE INTO t SET a = 1 ON DUPLICATE KEY UPDATE a = 2", &["t"], &[]),
    ("REPLACE INTO db2.r VALUES (1)", &["db2.r"], &["db2"]),
    ("SELECT REPLACE(a, 'x', 'y') FROM t", &["t"], &[]),
    ("UPDATE db1.t1 a JOIN t2 b ON a.id = b.id SET a.x = b.x", &["db1.t1", "t2"], &["db1"]),
    ("UPDATE LOW_PRIORITY t SET x = 1", &["t"], &[]),
    ("DELETE FROM db1.t WHERE id = 1", &["db1.t"], &["db1"]),
    ("DELETE t1 FROM t1 JOIN t2 ON t1.id = t2.id", &["t1", "t2"], &[]),
    ("SELECT * FROM t FOR UPDATE", &["t"], &[]),
    ("SELECT a INTO @v FROM t", &["t"], &[]),
    ("SELECT a FROM t INTO OUTFILE '/tmp/x'", &["t"], &[]),
    ("CREATE TABLE db1.newt (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES db1.parent(id))", &["db1.newt", "db1.parent"], &["db1"]),
    ("CREATE TABLE IF NOT EXISTS t2 LIKE db2.t1", &["db2.t1", "t2"], &["db2"]),
    ("CREATE TABLE t2 (LIKE t1)", &["t1", "t2"], &[]),
    ("CREATE TABLE t3 AS SELECT * FROM t1 WHERE a LIKE 'x%'", &["t1", "t3"], &[]),
    ("CREATE TEMPORARY TABLE tmp (a INT)", &["tmp"], &[]),
    ("RENAME TABLE db1.a TO db2.b, c TO d", &["c", "d", "db1.a", "db2.b"], &["db1", "db2"]),
    ("ALTER TABLE db1.t ADD COLUMN c INT, RENAME TO db1.u", &["db1.t", "db1.u"], &["db1"]),
    ("ALTER TABLE t RENAME COLUMN a TO b", &["t"], &[]),
    ("DROP TABLE IF EXISTS db1.a, db2.b", &["db1.a", "db2.b"], &["db1", "db2"]),
    ("TRUNCATE TABLE db3.t", &["db3.t"], &["db3"]),
    ("TRUNCATE t", &["t"], &[]),
    ("LOCK TABLES t1 READ, db2.t2 AS x WRITE", &["db2.t2", "t1"], &["db2"]),
    ("UNLOCK TABLES", &[], &[]),
    ("DESCRIBE db1.t", &["db1.t"], &["db1"]),
    ("EXPLAIN SELECT * FROM t", &["t"], &[]),
    ("SELECT a FROM t ORDER BY a DESC", &["t"], &[]),
    ("SELECT * FROM information_schema.tables WHERE table_schema = 'db2'", &["information_schema.tables"], &["information_schema", "db2"]),
    ("SELECT COUNT(*) FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME='db3'", &["INFORMATION_SCHEMA.SCHEMATA"], &["INFORMATION_SCHEMA", "db3"]),
    ("SELECT 1; SELECT * FROM db1.t", &["db1.t"], &["db1"]),
    ("CREATE DATABASE IF NOT EXISTS newdb", &[], &["newdb"]),
    ("DROP SCHEMA `old db`", &[], &["old db"]),
    ("SHOW TABLES FROM db2", &[], &["db2"]),
    ("SHOW COLUMNS FROM t FROM db1", &["db1.t"], &["db1"]),
    ("SHOW INDEX FROM db2.t", &["db2.t"], &["db2"]),
    ("SHOW CREATE TABLE db1.t", &["db1.t"], &["db1"]),
    ("SHOW CREATE DATABASE IF NOT EXISTS `tsplit`", &[], &["tsplit"]),
    ("SELECT * FROM information_schema.columns WHERE table_schema IN ('a', 'b')", &["information_schema.columns"], &["information_schema", "a", "b"]),
    ("SHOW TABLE STATUS IN db3", &[], &["db3"]),
    ("LOAD DATA LOCAL INFILE '/x' INTO TABLE db1.t FIELDS TERMINATED BY ','", &["db1.t"], &["db1"]),
    ("CALL db2.proc(1)", &[], &["db2"]),
    ("SELECT t.from FROM t", &["t"], &[]),
    ("SELECT * FROM dual", &[], &[]),
    ("SELECT * FROM t1 UNION SELECT * FROM db2.t2", &["db2.t2", "t1"], &["db2"]),
    ("SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t", &["t"], &[]),
];

#[test]
fn corpus_tables_and_databases() {
    let mut failures = Vec::new();
    for (sql, tables, dbs) in CORPUS {
        let (mut t, d) = names(sql);
        t.sort();
        let want_t: Vec<String> = tables.iter().map(|s| s.to_string()).collect();
        let want_d: Vec<String> = dbs.iter().map(|s| s.to_string()).collect();
        if t != want_t || d != want_d {
            failures.push(format!(
                "{sql}\n   tables {t:?} want {want_t:?}\n   dbs {d:?} want {want_d:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        CORPUS.len(),
        failures.join("\n")
    );
}

#[test]
fn kinds() {
    let k = |s: &str| analyze(s).kind();
    assert_eq!(k("USE db1"), Kind::Use("db1".into()));
    assert_eq!(k("use `my db` ;"), Kind::Use("my db".into()));
    assert_eq!(k("/* c */ USE db1"), Kind::Use("db1".into()));
    for s in [
        "SHOW DATABASES",
        "show   schemas;",
        "ShOw\tDataBases ;  ",
        "SHOW DATABASES WHERE 1",
    ] {
        assert!(matches!(k(s), Kind::ShowDatabases { .. }), "{s}");
    }
    assert_eq!(
        k("SHOW DATABASES LIKE 'db%'"),
        Kind::ShowDatabases {
            like: Some("db%".into()),
            has_where: false
        }
    );
    for s in [
        "SHOW SHARDS",
        "show shards;",
        "SHOW\tSHARDS",
        "  Show  Shards ; ",
    ] {
        assert_eq!(k(s), Kind::ShowShards, "{s}");
    }
    assert_eq!(k("SHOW TABLES"), Kind::ShowListing { db: None });
    assert_eq!(
        k("SHOW FULL TABLES IN `db2` LIKE 't%'"),
        Kind::ShowListing {
            db: Some("db2".into())
        }
    );
    assert_eq!(
        k("SHOW TABLE STATUS LIKE 't2'"),
        Kind::ShowListing { db: None }
    );
    assert_eq!(
        k("show table status from d where name = 'x'"),
        Kind::ShowListing {
            db: Some("d".into())
        }
    );
    assert_eq!(k("SHOW TRIGGERS LIKE 't2'"), Kind::ShowListing { db: None });
    assert_eq!(
        k("show events in d"),
        Kind::ShowListing {
            db: Some("d".into())
        }
    );
    assert_eq!(
        k("SHOW FUNCTION STATUS WHERE Db = 'tsplit'"),
        Kind::ShowRoutines {
            db: Some("tsplit".into())
        }
    );
    assert_eq!(
        k("SHOW PACKAGE BODY STATUS"),
        Kind::ShowRoutines { db: None }
    );
    assert_eq!(
        k("SHOW CREATE TRIGGER `tr1`"),
        Kind::ShowCreateObject { db: None }
    );
    assert_eq!(
        k("SHOW CREATE PROCEDURE d.p"),
        Kind::ShowCreateObject {
            db: Some("d".into())
        }
    );
    assert_eq!(k("UNLOCK TABLES"), Kind::Broadcast);
    assert_eq!(k("FLUSH /*!40101 LOCAL */ TABLES"), Kind::Broadcast);
    assert_eq!(k("FLUSH TABLES WITH READ LOCK"), Kind::Broadcast);
    assert_eq!(k("FLUSH TABLES t1"), Kind::Other);
    match k("LOCK TABLES `t1` READ /*!32311 LOCAL */,d.`t2` AS x WRITE") {
        Kind::LockTables(items) => {
            let got: Vec<(Option<String>, String, String)> = items
                .into_iter()
                .map(|i| (i.table.db, i.table.table, i.text))
                .collect();
            assert_eq!(
                got,
                vec![
                    (None, "t1".into(), "`t1` READ /*!32311 LOCAL */".into()),
                    (Some("d".into()), "t2".into(), "d.`t2` AS x WRITE".into()),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        k("SELECT table_name FROM information_schema.TABLES WHERE table_schema = 'x'"),
        Kind::InfoSchema(_)
    ));
    assert!(
        matches!(
            k("SELECT * FROM information_schema.PROCESSLIST"),
            Kind::Other
        ),
        "not an object list"
    );
    assert!(
        matches!(
            k("SELECT * FROM information_schema.TABLES t JOIN db.x ON 1"),
            Kind::Other
        ),
        "a user table too"
    );
    for s in [
        "SET autocommit=0",
        "SET NAMES utf8mb4",
        "set @a = 1",
        "SET SESSION sql_mode=''",
        "SET GLOBAL x=1",
        "SELECT @a := 1",
        "SET a=1; SET b=2",
    ] {
        assert_eq!(k(s), Kind::Session, "{s}");
    }
    assert_eq!(k("SELECT @a := c FROM t"), Kind::Other);
    assert_eq!(k("SET STATEMENT a=1 FOR SELECT 1"), Kind::Other);
    for s in [
        "BEGIN",
        "begin work",
        "START TRANSACTION READ ONLY",
        "COMMIT",
        "ROLLBACK",
        "ROLLBACK TO SAVEPOINT s",
        "SAVEPOINT s",
        "RELEASE SAVEPOINT s",
    ] {
        assert_eq!(k(s), Kind::Trx, "{s}");
    }
    assert_eq!(
        k("PREPARE s1 FROM 'SELECT * FROM db1.t WHERE id = ?'"),
        Kind::Prepare {
            name: "s1".into(),
            sql: Some("SELECT * FROM db1.t WHERE id = ?".into())
        }
    );
    assert_eq!(
        k("PREPARE s1 FROM @q"),
        Kind::Prepare {
            name: "s1".into(),
            sql: None
        }
    );
    assert_eq!(
        k("EXECUTE s1 USING @a"),
        Kind::Execute { name: "s1".into() }
    );
    assert_eq!(
        k("DEALLOCATE PREPARE s1"),
        Kind::Deallocate { name: "s1".into() }
    );
    assert_eq!(k("DROP PREPARE s1"), Kind::Deallocate { name: "s1".into() });
    assert_eq!(
        k("EXECUTE IMMEDIATE 'SELECT 1 FROM db2.t'"),
        Kind::ExecuteImmediate {
            sql: Some("SELECT 1 FROM db2.t".into())
        }
    );
    assert_eq!(
        k("EXECUTE IMMEDIATE CONCAT('SELECT ', 1)"),
        Kind::ExecuteImmediate { sql: None }
    );
    assert_eq!(
        k("LOAD DATA LOCAL INFILE 'f' INTO TABLE t"),
        Kind::LoadDataLocal
    );
    assert_eq!(k("SELECT 1; SELECT 2"), Kind::Other);
    for s in [
        "CREATE DATABASE d",
        "drop schema if exists d",
        "CREATE TABLE d.t (id INT)",
        "create or replace table t like u",
        "DROP TABLE IF EXISTS a, b",
        "RENAME TABLE a TO d.b",
        "ALTER TABLE a RENAME TO b",
        "CREATE ALGORITHM=MERGE DEFINER=`u`@`%` SQL SECURITY INVOKER VIEW v AS SELECT 1",
        "DROP VIEW v",
        "CREATE SEQUENCE s",
    ] {
        assert_eq!(k(s), Kind::SchemaChange, "{s}");
    }
    for s in [
        "CREATE TEMPORARY TABLE t (id INT)",
        "DROP TEMPORARY TABLE t",
        "ALTER TABLE t ADD c INT",
        "ALTER DATABASE d CHARACTER SET utf8mb4",
        "CREATE INDEX i ON t (c)",
        "SELECT * FROM `table`",
    ] {
        assert_ne!(k(s), Kind::SchemaChange, "{s}");
    }
    assert!(analyze("INSERT INTO t VALUES (1); CREATE TABLE u (id INT)")
        .kinds
        .contains(&Kind::SchemaChange));
    assert!(analyze("SELECT 1; SELECT 2").is_multi());
    assert!(!analyze("SELECT 1;").is_multi());
}

#[test]
fn like_patterns() {
    assert!(like_match("db%", "db1"));
    assert!(like_match("DB_", "db1"));
    assert!(!like_match("db_", "db12"));
    assert!(like_match("%", ""));
    assert!(like_match("a\\_b", "a_b"));
    assert!(!like_match("a\\_b", "axb"));
    assert!(like_match("%2", "db2"));
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "",
        ";;;",
        "SELECT * FROM",
        "FROM",
        "INSERT INTO",
        "RENAME TABLE a TO",
        "WITH",
        "WITH x AS (",
        "SHOW",
        "PREPARE",
        "EXECUTE",
        "USE",
        "((((",
        "))))",
        "UPDATE",
        "`",
        "'",
        "DROP PREPARE",
        "SHOW COLUMNS FROM",
        "LOCK TABLES",
        "a.b.c.d.e",
        "SELECT * FROM a.",
        "\u{0}\u{1}\u{ff}",
    ];
    for s in inputs {
        let _ = analyze(s);
    }
    // Every prefix of a long statement.
    let long = "WITH c AS (SELECT * FROM `d`.`t` WHERE x IN (SELECT 1)) INSERT INTO d.u SELECT * FROM c JOIN e ON 1; SHOW TABLES FROM x";
    for n in 0..=long.len() {
        let _ = analyze(&long[..n]);
    }
}
