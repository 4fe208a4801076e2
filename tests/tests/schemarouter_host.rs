//! schemarouter driven through its C ABI by the Rust test host, against three real MariaDB
//! servers (see `sr_common` for the databases): routing, SHOW commands, prepared statements,
//! LOAD DATA, duplicates, runtime changes, 2.3 parameters, `refresh_databases`, DDL.

mod sr_common;

use bridge::params::Params;
use bridge::protocol::packet::Packets;
use bridge::protocol::reply::ReplyError;
use bridge::sim::Module;
use mysql::prelude::Queryable;
use router_tests::env;
use router_tests::harness::Harness;
use router_tests::packets;
use sr_common::*;
use std::time::Duration;

#[test]
fn routes_by_database_table_and_session_state() {
    let d = Dbs::create();
    let p = env::mariadb_ports();
    let r = router(params(&d));
    let mut h = Harness::open(&r, servers()).expect("session");

    // Synthesised results.
    let shards = rows(&h.query("SHOW SHARDS")).unwrap();
    for (name, srv) in [
        (format!("{}.t1", d.a), "s1"),
        (format!("{}.tb", d.shared), "s2"),
        (format!("{}.", d.c), "s3"),
        (format!("{}.ta", d.shared), "s1"),
    ] {
        assert!(
            shards.contains(&vec![name.clone(), srv.to_string()]),
            "{name} on {srv} missing from SHOW SHARDS"
        );
    }
    let dbs: Vec<String> = rows(&h.query("show   databases ;"))
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let mut sorted = dbs.clone();
    sorted.sort();
    assert_eq!(dbs, sorted);
    for x in [&d.a, &d.b, &d.c, &d.shared] {
        assert_eq!(
            dbs.iter().filter(|y| y == &x).count(),
            1,
            "{x} once in {dbs:?}"
        );
    }
    assert!(dbs.contains(&"information_schema".to_string()));
    assert_eq!(
        rows(&h.query(&format!("SHOW SCHEMAS LIKE '{}'", d.b))).unwrap(),
        vec![vec![d.b.clone()]]
    );
    assert_eq!(
        rows(&h.query("ShOw DaTaBaSeS LIKE 'sr\\_zz%'"))
            .unwrap()
            .len(),
        0
    );

    // Qualified names, any case, backquotes, comments.
    assert_eq!(
        port_of(&mut h, &format!("SELECT @@port FROM {}.t2", d.b)),
        p[1]
    );
    assert_eq!(
        port_of(
            &mut h,
            &format!("/* x */ SELECT @@port FROM `{}`.`t3`", d.c)
        ),
        p[2]
    );
    assert_eq!(
        one(&mut h, &format!("SELECT srv FROM {}.tb", d.shared)),
        "s2",
        "table family: tb is on s2"
    );
    assert_eq!(
        one(
            &mut h,
            &format!(
                "SELECT x.srv FROM {}.ta x JOIN {}.t1 y USING (id)",
                d.shared, d.a
            )
        ),
        "s1",
        "join on one server"
    );
    // information_schema query about one database goes to its server.
    assert_eq!(
        one(
            &mut h,
            &format!(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}'",
                d.c
            )
        ),
        "1"
    );

    // USE and COM_INIT_DB.
    ok(&mut h, &format!("USE {}", d.c));
    assert_eq!(port_of(&mut h, "SELECT @@port"), p[2]);
    assert_eq!(one(&mut h, "SELECT srv FROM t3"), "s3");
    let n = h.client(|c| c.completed);
    assert!(h.send(packets::command(0x02, d.a.as_bytes())));
    assert!(h.wait_replies(n + 1, Duration::from_secs(10)));
    assert_eq!(port_of(&mut h, "SELECT @@port"), p[0]);
    ok(&mut h, &format!("USE {}", d.shared));
    assert_eq!(
        one(&mut h, "SELECT srv FROM tb"),
        "s2",
        "unqualified table of the current database"
    );
    assert_eq!(one(&mut h, "SELECT srv FROM ta"), "s1");
    let tables: Vec<String> = rows(&h.query("SHOW TABLES"))
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        tables,
        vec!["ta", "tb"],
        "SHOW TABLES is the union over the shards"
    );
    let tables = rows(&h.query(&format!("SHOW TABLES FROM {}", d.c))).unwrap();
    assert_eq!(tables, vec![vec!["t3".to_string()]]);
    // USE of an unknown database: the server's error, and the current database stays.
    let e = rows(&h.query("USE sr_no_such_db")).unwrap_err();
    assert_eq!(e.code, 1049, "{e}");
    assert_eq!(one(&mut h, "SELECT srv FROM tb"), "s2");

    // Session commands reach every server; the client gets one reply.
    let before = h.client(|c| c.completed);
    let r = h.query("SET @sr_v = 42");
    assert_eq!(Packets::new(&r).count(), 1, "one OK");
    assert_eq!(h.client(|c| c.completed), before + 1);
    for db_t in [
        format!("{}.t1", d.a),
        format!("{}.t2", d.b),
        format!("{}.t3", d.c),
    ] {
        assert_eq!(
            one(&mut h, &format!("SELECT @sr_v FROM {db_t}")),
            "42",
            "{db_t}"
        );
    }

    // Transactions: BEGIN/ROLLBACK reach the shard that did the work.
    ok(&mut h, "BEGIN");
    ok(&mut h, &format!("INSERT INTO {}.t3 VALUES (2, 'tx')", d.c));
    ok(&mut h, "ROLLBACK");
    assert_eq!(
        one(&mut h, &format!("SELECT COUNT(*) FROM {}.t3", d.c)),
        "1"
    );
    ok(&mut h, "START TRANSACTION");
    ok(&mut h, &format!("INSERT INTO {}.t2 VALUES (2, 'tx')", d.b));
    ok(&mut h, "COMMIT");
    assert_eq!(
        env::mariadb(p[1])
            .query_first::<u64, _>(format!("SELECT COUNT(*) FROM {}.t2", d.b))
            .unwrap(),
        Some(2)
    );

    // Text prepared statements run where their tables are.
    ok(
        &mut h,
        &format!("PREPARE ps1 FROM 'SELECT srv FROM {}.t3'", d.c),
    );
    assert_eq!(
        one(&mut h, "EXECUTE PS1"),
        "s3",
        "statement names are case-insensitive"
    );
    ok(&mut h, "DEALLOCATE PREPARE ps1");
    assert_eq!(
        one(
            &mut h,
            &format!(
                "EXECUTE IMMEDIATE 'SELECT srv FROM {}.t2 WHERE id = 1'",
                d.b
            )
        ),
        "s2"
    );

    // Binary prepared statements.
    let before = h.client(|c| c.bytes.len());
    let n = h.client(|c| c.completed);
    assert!(h.send(packets::command(
        0x16,
        format!("SELECT srv FROM {}.t3 WHERE id = ?", d.c).as_bytes()
    )));
    assert!(h.wait_replies(n + 1, Duration::from_secs(10)));
    let prep = h.client(|c| c.bytes[before..].to_vec());
    let first = Packets::new(&prep).next().unwrap().unwrap();
    assert_eq!(first.first(), Some(0x00), "prepare OK");
    let stmt = &first.payload[1..5];
    let mut exec = vec![];
    exec.extend_from_slice(stmt);
    exec.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 3, 0, 1, 0, 0, 0]); // flags, iterations, null bitmap, bound, LONG type, value 1
    let before = h.client(|c| c.bytes.len());
    assert!(h.send(packets::command(0x17, &exec)));
    assert!(h.wait_replies(n + 2, Duration::from_secs(10)));
    let res = h.client(|c| c.bytes[before..].to_vec());
    assert!(
        res.windows(2).any(|w| w == b"s3"),
        "binary execute ran on s3"
    );
    let mut close = stmt.to_vec();
    close.truncate(4);
    assert!(h.send(packets::command(0x19, &close)));
    assert_eq!(
        port_of(&mut h, "SELECT @@port"),
        p[0],
        "still alive; no tables: the current database's first server"
    );
}

#[test]
fn duplicates_kill_the_session_unless_ignored_and_runtime_changes_apply() {
    let d = Dbs::with_shared("sd_shared");
    // Without an ignore rule for the split database it is a duplicate.
    let r = router(vec![("ignore_tables_regex".into(), check_only(&d))]);
    let mut h = Harness::open(&r, servers()).expect("session");
    assert!(h.send(packets::query("SELECT 1")));
    assert_eq!(
        wait_killed(&mut h).as_deref(),
        Some("Error: duplicate tables found on two different shards.")
    );
    let log: Vec<String> = bridge::sim::take_log()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    let want = format!(
        "'{}.' found on servers 's1','s2' for user 'app'@'127.0.0.1'.",
        d.shared
    );
    assert!(log.iter().any(|m| m == &want), "log lacks {want}: {log:?}");
    assert_eq!(
        r.diagnostics().unwrap()["shard_map_updates"],
        0,
        "a failed map is never cached"
    );

    // Runtime change: new sessions see it. `ignore_tables` exempts the database entry.
    r.configure(&Params::new([
        ("ignore_tables_regex", check_only(&d)),
        ("ignore_tables", format!("{}.", d.shared)),
    ]))
    .unwrap();
    let mut h = Harness::open(&r, servers()).expect("session");
    assert_eq!(one(&mut h, "SELECT 1"), "1");
    // preferred_server (2.3) resolves the duplicate instead of an ignore rule.
    r.configure(&Params::new([
        ("ignore_tables_regex", check_only(&d)),
        ("preferred_server", "s2".into()),
    ]))
    .unwrap();
    r.command("clear").unwrap();
    let mut h = Harness::open(&r, servers()).expect("session");
    assert_eq!(
        one(&mut h, &format!("SELECT srv FROM {}.tb", d.shared)),
        "s2"
    );
    // Invalid values are refused with the previous configuration kept.
    assert!(r
        .configure(&Params::new([("preferred_server", "nosuch")]))
        .unwrap_err()
        .contains("not a target"));
    assert!(r
        .configure(&Params::new([("ignore_databases_regex", "(")]))
        .unwrap_err()
        .contains("ignore_databases_regex"));
    let m = Module::load(&env::module_path("schemarouter")).unwrap();
    assert!(m
        .validate(&Params::new([("refresh_interval", "10")]))
        .unwrap_err()
        .contains("unit"));
}

#[test]
fn connect_db_cache_commands_and_diagnostics() {
    let d = Dbs::create();
    let p = env::mariadb_ports();
    let r = router(params(&d));
    let diag = |k: &str| r.diagnostics().unwrap()[k].as_u64().unwrap();

    let mut t = servers();
    t.default_db = d.b.clone();
    let mut h = Harness::open(&r, t.clone()).expect("session");
    assert_eq!(
        port_of(&mut h, "SELECT @@port"),
        p[1],
        "connect-time database applied on its server"
    );
    assert_eq!(one(&mut h, "SELECT srv FROM t2"), "s2");
    assert_eq!(
        (diag("shard_map_misses"), diag("shard_map_updates")),
        (1, 1)
    );

    let mut h2 = Harness::open(&r, servers()).expect("session");
    assert_eq!(one(&mut h2, "SELECT 1"), "1");
    assert_eq!(diag("shard_map_hits"), 1);

    r.command("invalidate").unwrap();
    let mut h3 = Harness::open(&r, servers()).expect("session");
    assert_eq!(one(&mut h3, "SELECT 1"), "1");
    assert_eq!((diag("shard_map_stale"), diag("shard_map_updates")), (1, 2));

    r.command("clear").unwrap();
    let mut h4 = Harness::open(&r, servers()).expect("session");
    assert_eq!(one(&mut h4, "SELECT 1"), "1");
    assert_eq!(
        (diag("shard_map_misses"), diag("shard_map_updates")),
        (2, 3)
    );
    assert!(r.command("nosuch").is_err());

    let mut t = servers();
    t.default_db = "sr_not_there".into();
    let mut h5 = Harness::open(&r, t).expect("session");
    assert!(h5.send(packets::query("SELECT 1")));
    assert_eq!(
        wait_killed(&mut h5).as_deref(),
        Some("Unknown database 'sr_not_there'")
    );
}

#[test]
fn a_dying_shard_ends_the_session_only_when_needed() {
    let d = Dbs::create();
    let p = env::mariadb_ports();
    let r = router(params(&d));
    let mut t = servers();
    // A server that is down at session start is not used (and mapping does not wait for it).
    t.servers.push(("s4".into(), 1));
    let mut h = Harness::open(&r, t).expect("session");
    assert_eq!(one(&mut h, &format!("SELECT srv FROM {}.t3", d.c)), "s3");
    let id = h.connection_id(2).unwrap();
    env::mariadb(p[2]).query_drop(format!("KILL {id}")).unwrap();
    h.settle(Duration::from_millis(500));
    assert_eq!(
        one(&mut h, &format!("SELECT srv FROM {}.t1", d.a)),
        "s1",
        "other shards keep working"
    );
    ok(&mut h, "SET @still = 1");
    assert!(h.send(packets::query(&format!("SELECT srv FROM {}.t3", d.c))));
    let msg = wait_killed(&mut h).expect("session needing s3 ends");
    assert!(msg.contains("'s3' is not available"), "{msg}");
}

#[test]
fn load_data_local_infile_streams_to_the_shard() {
    let d = Dbs::create();
    let p = env::mariadb_ports();
    let r = router(params(&d));
    let mut h = Harness::open(&r, servers()).expect("session");
    assert_eq!(one(&mut h, "SELECT 1"), "1");
    let before = h.client(|c| c.bytes.len());
    assert!(h.send(packets::query(&format!(
        "LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE {}.t3 FIELDS TERMINATED BY ',' (id, srv)",
        d.c
    ))));
    assert!(
        h.pump_until(Duration::from_secs(10), |c| c.bytes.len() > before),
        "file request"
    );
    let req = h.client(|c| c.bytes[before..].to_vec());
    let pk = Packets::new(&req).next().unwrap().unwrap();
    assert_eq!(pk.first(), Some(0xFB), "server asks for the file");
    let n = h.client(|c| c.completed);
    assert!(h.send(vec![
        packets::packet(2, b"7,l1\n8,l2\n"),
        packets::packet(3, b"")
    ]));
    assert!(h.wait_replies(n + 1, Duration::from_secs(10)));
    assert_eq!(
        env::mariadb(p[2])
            .query_first::<u64, _>(format!("SELECT COUNT(*) FROM {}.t3", d.c))
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        one(&mut h, &format!("SELECT COUNT(*) FROM {}.t3", d.c)),
        "3"
    );
}

/// `refresh_databases`: a USE of a database created after the session mapped finds it once
/// the map is older than `refresh_interval`; without it the USE fails and the current
/// database stays.
#[test]
fn refresh_databases_maps_again_for_an_unknown_use() {
    let d = Dbs::create();
    let p = env::mariadb_ports();
    let late = format!("{}_late", d.c);
    let _late_db = DropLater(p[2], late.clone());
    for (refresh, want) in [("false", None), ("true", Some(p[2]))] {
        let mut ps = params(&d);
        ps.push(("refresh_databases".into(), refresh.into()));
        ps.push(("refresh_interval".into(), "1s".into()));
        let r = router(ps);
        let mut h = Harness::open(&r, servers()).expect("session");
        ok(&mut h, &format!("USE {}", d.a));
        env::mariadb(p[2])
            .query_drop(format!("CREATE DATABASE IF NOT EXISTS {late}"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let reply = h.query(&format!("USE {late}"));
        let err = Packets::new(&reply)
            .next()
            .and_then(|p| ReplyError::parse(p.unwrap().payload));
        match want {
            Some(port) => {
                assert!(err.is_none(), "refresh_databases=true: {err:?}");
                assert_eq!(port_of(&mut h, "SELECT @@port"), port);
                assert_eq!(one(&mut h, "SELECT DATABASE()"), late);
            }
            None => {
                assert!(err.is_some(), "refresh_databases=false: the USE fails");
                assert_eq!(
                    port_of(&mut h, "SELECT @@port"),
                    p[0],
                    "the current database stays {}",
                    d.a
                );
            }
        }
        env::mariadb(p[2])
            .query_drop(format!("DROP DATABASE IF EXISTS {late}"))
            .unwrap();
    }
}

/// The 2.3 parameter `ignore_databases` exempts a whole duplicated database (tables included).
#[test]
fn ignore_databases_exempts_a_split_database() {
    let d = Dbs::with_shared("sd_shared");
    let r = router(vec![
        ("ignore_tables_regex".into(), check_only(&d)),
        ("ignore_databases".into(), d.shared.clone()),
    ]);
    let mut h = Harness::open(&r, servers()).expect("session");
    assert_eq!(
        one(&mut h, &format!("SELECT srv FROM {}.tb", d.shared)),
        "s2"
    );
    assert_eq!(
        one(&mut h, &format!("SELECT srv FROM {}.ta", d.shared)),
        "s1"
    );
}

/// DDL through the router is routable at once: a database created through it can be used, a
/// table created in it is found, new sessions see both, and a dropped database is gone.
#[test]
fn ddl_through_the_router_updates_the_map() {
    let d = Dbs::create();
    let p = env::mariadb_ports();
    let fresh = format!("{}_ddl", d.c);
    let _cleanup: Vec<DropLater> = p
        .iter()
        .take(3)
        .map(|port| DropLater(*port, fresh.clone()))
        .collect();
    let r = router(params(&d));
    let mut h = Harness::open(&r, servers()).expect("session");
    // Created on s3 (a hint would do it too): qualified with a database s3 holds.
    ok(&mut h, &format!("USE {}", d.c));
    ok(&mut h, &format!("CREATE DATABASE {fresh}"));
    let where_created: Vec<u16> = p
        .iter()
        .take(3)
        .copied()
        .filter(|port| {
            env::mariadb(*port)
                .query_first::<String, _>(format!("SHOW DATABASES LIKE '{fresh}'"))
                .unwrap()
                .is_some()
        })
        .collect();
    assert_eq!(where_created.len(), 1, "created on one server");
    assert_eq!(
        rows(&h.query(&format!("SHOW DATABASES LIKE '{fresh}'"))).unwrap(),
        vec![vec![fresh.clone()]]
    );
    ok(&mut h, &format!("USE {fresh}"));
    assert_eq!(port_of(&mut h, "SELECT @@port"), where_created[0]);
    ok(&mut h, "CREATE TABLE late (id INT PRIMARY KEY)");
    ok(&mut h, "INSERT INTO late VALUES (5)");
    ok(&mut h, &format!("USE {}", d.a));
    assert_eq!(one(&mut h, &format!("SELECT id FROM {fresh}.late")), "5");
    let mut h2 = Harness::open(&r, servers()).expect("session");
    assert_eq!(
        one(&mut h2, &format!("SELECT id FROM {fresh}.late")),
        "5",
        "a new session sees the new table"
    );
    ok(&mut h2, &format!("DROP DATABASE {fresh}"));
    assert!(rows(&h2.query(&format!("SHOW DATABASES LIKE '{fresh}'")))
        .unwrap()
        .is_empty());
}
