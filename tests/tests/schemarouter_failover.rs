//! A shard that fails never ends a session that does not need it (issue 17). The test host
//! plays MaxScale's part as it does with a slow shard: backends log in in the background, and
//! the session-command history is kept, replayed on every backend that logs in later, and
//! compared (a backend whose outcome differs is failed, "differs from the expected response").
//!
//! A private server `p` (never one of the shared ones) is paused with SIGSTOP to make a login
//! slow; connections of the shared servers are broken from the test host's side.

mod sr_common;

use bridge::params::Params;
use bridge::protocol::packet::Packets;
use bridge::protocol::reply::ReplyError;
use bridge::sim::{Module, SimRouter};
use mysql::prelude::Queryable;
use router_tests::env::{self, unique};
use router_tests::harness::{Harness, Targets};
use router_tests::packets;
use router_tests::private_server::PrivateServer;
use sr_common::*;
use std::time::{Duration, Instant};

fn router_of(names: &[&str], d: &Dbs) -> SimRouter {
    let m = Module::load(&env::module_path("schemarouter")).expect("load libschemarouter.so");
    let r = m.new_router("Sharding", names).unwrap();
    r.configure(&Params::new(params(d))).unwrap();
    r
}

/// Like MaxScale: logins in the background, the session-command history kept.
fn maxscale_like(mut t: Targets) -> Targets {
    t.async_connect = true;
    t.history = true;
    t
}

/// Whether the module logged `text` for this session.
fn logged(h: &Harness, text: &str) -> bool {
    let tag = format!("session {}:", h.id);
    bridge::sim::LOG
        .lock()
        .unwrap()
        .iter()
        .any(|(_, m)| m.contains(&tag) && m.contains(text))
}

fn wait_logged_in(h: &mut Harness, ep: usize) {
    let end = Instant::now() + Duration::from_secs(20);
    while h.is_connecting(ep) {
        assert!(
            Instant::now() < end,
            "endpoint {ep} never finished logging in"
        );
        h.settle(Duration::from_millis(50));
    }
    h.settle(Duration::from_millis(100));
}

/// The error a reply is, if it is one.
fn error_of(reply: &[u8]) -> Option<ReplyError> {
    Packets::new(reply)
        .next()
        .and_then(|p| ReplyError::parse(p.ok()?.payload))
}

/// Sends a query without waiting for its reply.
fn send(h: &mut Harness, sql: &str) {
    assert!(
        h.send(packets::query(sql)),
        "session closed while sending {sql:?}"
    );
}

fn wait_reply(h: &mut Harness, n: usize) {
    assert!(h.wait_replies(n, Duration::from_secs(20)), "no reply {n}");
}

/// The private server `p` with database `<db>` (table `tp`, `srv = 'p'`).
fn private_with_db(db: &str) -> PrivateServer {
    let p = PrivateServer::start();
    p.root_sql(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.tp (id INT PRIMARY KEY, srv VARCHAR(8)); INSERT INTO {db}.tp VALUES (1, 'p')"
    ))
    .unwrap();
    p
}

/// The case, and the other ways a slow login fails: the history replay on the late
/// shard fails (the session goes on; when it later needs that shard it ends with a message
/// saying why), the late shard was to answer a session command (another shard answers), it
/// fails while the session maps (the session goes on, the partial map is not cached), it held
/// the connect-time database (it is reconnected when needed).
#[test]
fn a_shard_slow_to_log_in_never_ends_a_session_that_does_not_need_it() {
    let d = Dbs::create();
    let ports = env::mariadb_ports();
    let pdb = format!("sr_p_{}", unique("x"));
    let p = private_with_db(&pdb);
    // A database split between p (table tq) and s1 (table tr).
    let split = format!("sr_shared_{}", unique("p"));
    let _split_s1 = DropLater(ports[0], split.clone());
    p.root_sql(&format!(
        "CREATE DATABASE {split}; CREATE TABLE {split}.tq (id INT PRIMARY KEY)"
    ))
    .unwrap();
    env::mariadb(ports[0])
        .query_drop(format!("CREATE DATABASE {split}"))
        .unwrap();
    env::mariadb(ports[0])
        .query_drop(format!(
            "CREATE TABLE {split}.tr (id INT PRIMARY KEY, srv VARCHAR(8))"
        ))
        .unwrap();
    env::mariadb(ports[0])
        .query_drop(format!("INSERT INTO {split}.tr VALUES (1, 's1')"))
        .unwrap();

    // 1. The issue: p is slow, a text PREPARE names a table of s2, p's replay of it fails.
    let r = router_of(&["s1", "s2", "p"], &d);
    let t = maxscale_like(Targets::new(&[
        ("s1", ports[0]),
        ("s2", ports[1]),
        ("p", p.port),
    ]));
    let mut warm = Harness::open(&r, t.clone()).expect("session");
    assert_eq!(
        one(&mut warm, &format!("SELECT srv FROM {pdb}.tp")),
        "p",
        "the map (cached) includes p"
    );
    drop(warm);
    p.pause();
    let mut h = Harness::open(&r, t.clone()).expect("session");
    wait_logged_in(&mut h, 0);
    wait_logged_in(&mut h, 1);
    assert!(h.is_connecting(2), "p's login waits");
    ok(
        &mut h,
        &format!("PREPARE ps FROM 'SELECT srv FROM {}.t2'", d.b),
    );
    assert_eq!(one(&mut h, "EXECUTE ps"), "s2");
    assert_eq!(
        h.history().len(),
        1,
        "the PREPARE is in the history: {:?}",
        h.history()
    );
    p.resume();
    wait_logged_in(&mut h, 2);
    assert!(h.alive, "the session survives p's failed history replay");
    assert!(
        logged(
            &h,
            "'p' failed (Response from server 'p' differs from the expected response"
        ),
        "the reason is logged"
    );
    assert_eq!(one(&mut h, &format!("SELECT srv FROM {}.t1", d.a)), "s1");
    assert_eq!(one(&mut h, "EXECUTE ps"), "s2");
    ok(&mut h, "SET @after = 1");
    // p cannot replay this session's history: a statement that needs it ends the session,
    // naming p and why (not a bare "Lost connection").
    send(&mut h, &format!("SELECT srv FROM {pdb}.tp"));
    let msg = wait_killed(&mut h).expect("the session ends");
    assert!(
        msg.contains("'p' is not available")
            && msg.contains("could not replay the session's history"),
        "{msg}"
    );

    // 2. p is to answer a session command (first server with data, no previous target) and its
    //    login fails: s1 answers instead; p comes back later with the history replayed.
    let r = router_of(&["p", "s1", "s2"], &d);
    let t2 = maxscale_like(Targets::new(&[
        ("p", p.port),
        ("s1", ports[0]),
        ("s2", ports[1]),
    ]));
    let mut warm = Harness::open(&r, t2.clone()).expect("session");
    assert_eq!(one(&mut warm, "SELECT 1"), "1");
    drop(warm);
    p.pause();
    let mut h = Harness::open(&r, t2.clone()).expect("session");
    send(&mut h, "SET @x = 5");
    h.settle(Duration::from_millis(300));
    assert_eq!(
        h.client(|c| c.completed),
        0,
        "p, the replier, has not logged in"
    );
    h.break_connection(0);
    wait_reply(&mut h, 1);
    assert!(
        error_of(&h.client(|c| c.chunks.last().unwrap().1.clone())).is_none(),
        "the SET succeeded"
    );
    assert!(logged(
        &h,
        "another shard that ran the same command answers"
    ));
    assert_eq!(one(&mut h, &format!("SELECT @x FROM {}.t2", d.b)), "5");
    p.resume();
    let r2 = rows(&h.query(&format!("SELECT srv, @x FROM {pdb}.tp"))).unwrap();
    assert_eq!(
        r2,
        vec![vec!["p".to_string(), "5".into()]],
        "p reconnected, the history replayed"
    );

    // 2b. p is to answer a USE of the database it shares with s1: s1 answers instead, and
    //     the USE takes effect.
    p.pause();
    let mut h = Harness::open(&r, t2.clone()).expect("session");
    send(&mut h, &format!("USE {split}"));
    h.settle(Duration::from_millis(300));
    h.break_connection(0);
    wait_reply(&mut h, 1);
    assert!(
        error_of(&h.client(|c| c.chunks.last().unwrap().1.clone())).is_none(),
        "the USE succeeded"
    );
    assert_eq!(
        one(&mut h, "SELECT srv FROM tr"),
        "s1",
        "the current database is the split one"
    );
    p.resume();

    // 3. p fails while the session maps: the session goes on without it, the map is not
    //    cached (other sessions must not lose p's databases).
    let r = router_of(&["s1", "s2", "p"], &d);
    p.pause();
    let mut h = Harness::open(&r, t.clone()).expect("session");
    send(&mut h, &format!("SELECT srv FROM {}.t1", d.a));
    h.settle(Duration::from_millis(300));
    h.break_connection(2);
    wait_reply(&mut h, 1);
    assert_eq!(
        rows(&h.client(|c| c.bytes.clone())).unwrap(),
        vec![vec!["s1".to_string()]]
    );
    assert_eq!(
        r.diagnostics().unwrap()["shard_map_updates"],
        0,
        "a map lacking p is not cached"
    );
    p.resume();
    let mut h2 = Harness::open(&r, t.clone()).expect("session");
    assert_eq!(one(&mut h2, &format!("SELECT srv FROM {pdb}.tp")), "p");
    assert_eq!(r.diagnostics().unwrap()["shard_map_updates"], 1);
    drop(h2);

    // 4. p holds the connect-time database and its login fails: reconnected when needed.
    let mut t4 = t.clone();
    t4.default_db = pdb.clone();
    p.pause();
    let mut h = Harness::open(&r, t4).expect("session");
    send(&mut h, "SELECT @@port");
    h.settle(Duration::from_millis(300));
    h.break_connection(2);
    p.resume();
    wait_reply(&mut h, 1);
    assert_eq!(
        rows(&h.client(|c| c.bytes.clone())).unwrap(),
        vec![vec![p.port.to_string()]]
    );
}

/// Shards that fail while they run something: a statement only that shard could run gets an
/// error and the session goes on (the shard is reconnected when needed); inside a transaction
/// that changed data on it the session ends; a shard whose copy of a session command differs
/// is dropped; a merged answer that would lack a shard is an error, not a partial result.
#[test]
fn a_failing_shard_costs_at_most_the_statements_that_need_it() {
    let d = Dbs::create();
    let ports = env::mariadb_ports();
    let r = router_of(&["s1", "s2", "s3"], &d);
    let t = maxscale_like(servers());

    // A statement in flight on s3 when its connection breaks.
    let mut h = Harness::open(&r, t.clone()).expect("session");
    assert_eq!(one(&mut h, &format!("SELECT srv FROM {}.t3", d.c)), "s3");
    send(&mut h, &format!("SELECT SLEEP(2), srv FROM {}.t3", d.c));
    h.settle(Duration::from_millis(200));
    h.break_connection(2);
    wait_reply(&mut h, 2);
    let e =
        error_of(&h.client(|c| c.chunks.last().unwrap().1.clone())).expect("the statement fails");
    assert!(
        e.code == 1927
            && e.message
                .contains("Lost connection to 's3' while it ran the statement"),
        "{e}"
    );
    assert!(h.alive);
    assert_eq!(
        one(&mut h, &format!("SELECT srv FROM {}.t3", d.c)),
        "s3",
        "s3 reconnected"
    );
    // A statement prepared on a shard that is lost meanwhile: prepared again by the replay.
    ok(
        &mut h,
        &format!("PREPARE on_s3 FROM 'SELECT srv FROM {}.t3'", d.c),
    );
    h.break_connection(2);
    h.settle(Duration::from_millis(200));
    assert_eq!(one(&mut h, "EXECUTE on_s3"), "s3");

    // Inside a transaction: losing a shard that only got the BEGIN is harmless ...
    ok(&mut h, "BEGIN");
    ok(&mut h, &format!("INSERT INTO {}.t1 VALUES (10, 'tx')", d.a));
    h.break_connection(2);
    h.settle(Duration::from_millis(300));
    assert!(h.alive && h.client(|c| c.killed.is_none()));
    ok(&mut h, "ROLLBACK");
    // ... losing one that changed data ends the session (its part of the work is gone).
    ok(&mut h, "BEGIN");
    ok(&mut h, &format!("INSERT INTO {}.t2 VALUES (10, 'tx')", d.b));
    h.break_connection(1);
    let msg = wait_killed(&mut h).expect("the session ends");
    assert!(
        msg.contains("'s2' was lost inside a transaction that had changed data on it"),
        "{msg}"
    );
    assert_eq!(
        env::mariadb(ports[1])
            .query_first::<u64, _>(format!("SELECT COUNT(*) FROM {}.t2", d.b))
            .unwrap(),
        Some(1)
    );

    // A session command that fails on the shards lacking its table: they are dropped (their
    // state differs), the session goes on with the shard that has it.
    let mut h = Harness::open(&r, t.clone()).expect("session");
    assert_eq!(one(&mut h, &format!("SELECT srv FROM {}.t1", d.a)), "s1");
    ok(
        &mut h,
        &format!("SET @v = (SELECT srv FROM {}.t1 LIMIT 1)", d.a),
    );
    h.settle(Duration::from_millis(300));
    assert!(h.alive && logged(&h, "differs from the expected response"));
    assert_eq!(one(&mut h, &format!("SELECT @v FROM {}.t1", d.a)), "s1");

    // A merged answer (SHOW TABLES of the split database) with s2 lost: reconnected first ...
    let mut h = Harness::open(&r, t.clone()).expect("session");
    ok(&mut h, &format!("USE {}", d.shared));
    h.break_connection(1);
    h.settle(Duration::from_millis(200));
    let tables: Vec<String> = rows(&h.query("SHOW TABLES"))
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(tables, vec!["ta", "tb"]);
    // ... and without a history to replay (no reconnection), an error instead of half a list.
    let mut h = Harness::open(&r, servers()).expect("session");
    ok(&mut h, &format!("USE {}", d.shared));
    h.break_connection(1);
    h.settle(Duration::from_millis(200));
    let e = error_of(&h.query("SHOW FULL TABLES")).expect("an error");
    assert!(
        e.message.contains("'s2' is not available") && e.message.contains("incomplete"),
        "{e}"
    );
    assert_eq!(
        one(&mut h, "SELECT srv FROM ta"),
        "s1",
        "the session goes on"
    );
}
