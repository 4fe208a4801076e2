//! MariaDB crashes under the tool: a private mariadbd is SIGKILLed mid-stream several times
//! while a writer commits small transactions, sometimes with the tool killed too or down
//! through several crashes. A crashed binlog file has no closing rotate event, so the next file
//! is announced only by the server's fake rotate; the stored checkpoint must always name an
//! event boundary of the file it names, and etcd must end equal to the source.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::maria::PrivateMaria;
use common::*;
use mysql_async::prelude::Queryable;
use rand::Rng;

/// Small random transactions (a few hundred a second) until `stop`, reconnecting whenever the server is gone.
async fn writer(port: u16, db: String, stop: Arc<AtomicBool>, commits: Arc<AtomicU64>) {
    let mut conn: Option<mysql_async::Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(port)
                .user(Some("app"))
                .pass(Some("apppass"))
                .prefer_socket(false);
            match tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts)).await {
                Ok(Ok(c)) => conn = Some(c),
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        let stmts: Vec<String> = {
            let mut r = rand::thread_rng();
            (0..r.gen_range(1..5))
                .map(|_| {
                    let id = r.gen_range(1..1500);
                    match r.gen_range(0..10) {
                        0..=5 => format!(
                            "INSERT INTO {db}.t VALUES ({id}, '{}', {}) ON DUPLICATE KEY UPDATE v = VALUES(v), n = n + 1",
                            "x".repeat(r.gen_range(1..60)),
                            r.gen_range(0..1000)
                        ),
                        6..=7 => format!("UPDATE {db}.t SET n = n + 1 WHERE id BETWEEN {id} AND {}", id + 3),
                        _ => format!("DELETE FROM {db}.t WHERE id = {id}"),
                    }
                })
                .collect()
        };
        let r = async {
            c.query_drop("BEGIN").await?;
            for s in &stmts {
                c.query_drop(s).await?;
            }
            c.query_drop("COMMIT").await
        }
        .await;
        match r {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                // a few hundred transactions a second: the tool (a debug build) keeps up
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            Err(_) => conn = None,
        }
    }
}

/// The server's current binlog file.
async fn current_file(port: u16) -> String {
    let mut c = my_port(port).await;
    let r: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    r.get(0).unwrap()
}

/// Waits until the tool's checkpoint is in the server's current binlog file (the writer keeps
/// committing, so a tool that follows the file switch gets there), then checks the position.
async fn checkpoint_follows(port: u16, state: &str, tool: &mut Tool, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let file = current_file(port).await;
        let cp = read_checkpoint(state).await;
        let mut c = my_port(port).await;
        if cp["phase"] == "stream" && cp["file"].as_str().is_some_and(|f| !f.is_empty()) {
            // valid at every moment, not only once it caught up
            assert_valid_position(&mut c, &cp).await;
            if cp["file"] == file.as_str() {
                return;
            }
        }
        if let Some(st) = tool.exited() {
            panic!("sync-tool exited ({st}) {why}:\n{}", tool.log());
        }
        assert!(
            Instant::now() < deadline,
            "{why}: the checkpoint {cp} did not reach the server's current binlog file {file}\n{}",
            tool.log()
                .lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_source_crashes_keep_the_checkpoint_valid() {
    if skip("mysql_source_crashes_keep_the_checkpoint_valid") {
        return;
    }
    let name = unique("mycrash");
    let dir = tmpdir(&name);
    let port = 3440 + (std::process::id() % 50) as u16;
    let mut srv = PrivateMaria::start(&dir, port);
    let mut c = my_port(port).await;
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {name};
             CREATE TABLE {name}.t (id INT PRIMARY KEY, v VARCHAR(80), n INT);
             INSERT INTO {name}.t SELECT seq, 'init', 0 FROM {name}.seq_1_to_300"
        ),
    )
    .await;
    drop(c);
    let state = format!("/sync-tool/{name}");
    let include = format!("{name}.*");
    let mut tool = streaming_tool(
        &dir,
        &name,
        &my_config_port(port, &name, &[&include], "  max_txn_ops: 16\n"),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let w = tokio::spawn(writer(port, name.clone(), stop.clone(), commits.clone()));
    let mut crashes = 0;
    for round in 0..6 {
        let ms = rand::thread_rng().gen_range(400..1500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        match round % 3 {
            // the server crashes under the streaming tool
            0 => {
                srv.kill9();
                crashes += 1;
                srv.up();
            }
            // both crash; the tool comes back after the server
            1 => {
                srv.kill9();
                tool.kill9();
                crashes += 1;
                srv.up();
                tokio::time::sleep(Duration::from_millis(500)).await;
                tool.start();
            }
            // the tool is down while the server crashes twice with writes in between: it comes
            // back to a checkpoint two crashed files behind
            _ => {
                tool.kill9();
                for _ in 0..2 {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    srv.kill9();
                    crashes += 1;
                    srv.up();
                }
                tokio::time::sleep(Duration::from_millis(600)).await;
                tool.start();
            }
        }
        checkpoint_follows(
            port,
            &state,
            &mut tool,
            &format!("after crash round {round}"),
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    println!(
        "{crashes} server crashes, {} source transactions committed",
        commits.load(Ordering::Relaxed)
    );
    assert!(
        commits.load(Ordering::Relaxed) > 50,
        "the writer committed too little to test anything"
    );

    wait_verified(&tool, Duration::from_secs(60)).await;
    let mut c = my_port(port).await;
    assert_valid_position(&mut c, &read_checkpoint(&state).await).await;
    let log = tool.log();
    let resumed = log.matches("resuming from checkpoint").count();
    assert!(
        resumed >= 6,
        "every restart resumes from the checkpoint ({resumed} times):\n{log}"
    );
    println!(
        "resumed from the checkpoint {resumed} times, dumps: {}",
        log.matches("dump: snapshot taken").count()
    );

    tool.term();
    drop(c);
    srv.down();
    let mut e = etcd().await;
    etcd_clear(&mut e, &format!("/{name}/")).await;
    etcd_clear(&mut e, &format!("{state}/")).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrites the stored checkpoint (the tool is down).
async fn put_checkpoint(state: &str, cp: &serde_json::Value) {
    let mut e = etcd().await;
    e.put(format!("{state}/checkpoint"), cp.to_string(), None)
        .await
        .unwrap();
}

/// A position inside an event of `file` (the server cannot start there).
async fn inside_an_event(c: &mut mysql_async::Conn, file: &str) -> u64 {
    let rows: Vec<mysql_async::Row> = c
        .query(format!("SHOW BINLOG EVENTS IN '{file}'"))
        .await
        .unwrap();
    rows.iter()
        .filter_map(|r| Some((r.get::<u64, _>(1)?, r.get::<u64, _>(4)?)))
        .find(|(start, end)| end - start > 20)
        .map(|(start, _)| start + 7)
        .expect("an event of more than 20 bytes")
}

/// Positions the server refuses never mean "retry the same thing for ever": a checkpoint whose
/// file exists but whose position is inside an event resumes from the checkpoint's GTID; without
/// a GTID it re-dumps; a GTID the server does not have re-dumps too. Each says so in the log,
/// and etcd ends equal to the source every time (rows written while the tool was down arrive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_refused_position_falls_back_to_gtid_then_dump() {
    if skip("mysql_refused_position_falls_back_to_gtid_then_dump") {
        return;
    }
    let name = unique("myrefuse");
    let dir = tmpdir(&name);
    let mut c = my().await;
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {name};
             CREATE TABLE {name}.t (id INT PRIMARY KEY, v VARCHAR(40));
             INSERT INTO {name}.t SELECT seq, 'init' FROM {name}.seq_1_to_100"
        ),
    )
    .await;
    let state = format!("/sync-tool/{name}");
    let include = format!("{name}.*");
    let mut tool = streaming_tool(&dir, &name, &my_config(&name, &[&include], "")).await;
    let mut round = 0;
    let mut write_and_compare = async |tool: &mut Tool, c: &mut mysql_async::Conn| {
        round += 1;
        my_exec(
            c,
            &format!(
                "INSERT INTO {name}.t SELECT seq, 'r{round}' FROM {name}.seq_{0}_to_{1}",
                round * 1000,
                round * 1000 + 20
            ),
        )
        .await;
        my_exec(
            c,
            &format!("UPDATE {name}.t SET v = 'u{round}' WHERE id = {round}"),
        )
        .await;
        wait_verified(tool, Duration::from_secs(60)).await;
    };
    write_and_compare(&mut tool, &mut c).await;

    // 1. file exists, position inside an event, GTID known: resume from the GTID, no re-dump
    tool.term();
    let mut cp = read_checkpoint(&state).await;
    assert!(cp["gtid"].as_str().is_some_and(|g| !g.is_empty()), "{cp}");
    cp["pos"] = inside_an_event(&mut c, cp["file"].as_str().unwrap())
        .await
        .into();
    put_checkpoint(&state, &cp).await;
    my_exec(
        &mut c,
        &format!("INSERT INTO {name}.t VALUES (500, 'while down')"),
    )
    .await;
    tool.start();
    write_and_compare(&mut tool, &mut c).await;
    let log = tool.log();
    assert!(
        log.contains("resuming from the checkpoint's GTID position instead"),
        "{log}"
    );
    assert_eq!(
        log.matches("dump: snapshot taken").count(),
        1,
        "no re-dump: {log}"
    );
    assert_valid_position(&mut c, &read_checkpoint(&state).await).await;

    // 2. the same without a GTID: re-dump
    tool.term();
    let mut cp = read_checkpoint(&state).await;
    cp["pos"] = inside_an_event(&mut c, cp["file"].as_str().unwrap())
        .await
        .into();
    cp["gtid"] = "".into();
    put_checkpoint(&state, &cp).await;
    my_exec(&mut c, &format!("DELETE FROM {name}.t WHERE id = 500")).await;
    tool.start();
    write_and_compare(&mut tool, &mut c).await;
    let log = tool.log();
    assert!(
        log.contains("the server cannot read its binlog at the checkpoint's position; re-dumping"),
        "{log}"
    );
    assert_eq!(log.matches("dump: snapshot taken").count(), 2, "{log}");
    assert_valid_position(&mut c, &read_checkpoint(&state).await).await;

    // 3. only a GTID, one the server never had (error 1236 on the binlog dump): re-dump
    tool.term();
    let mut cp = read_checkpoint(&state).await;
    cp["file"] = "".into();
    cp["pos"] = 0.into();
    cp["gtid"] = "0-1-999999999".into();
    put_checkpoint(&state, &cp).await;
    my_exec(
        &mut c,
        &format!("UPDATE {name}.t SET v = 'while down' WHERE id = 2"),
    )
    .await;
    tool.start();
    write_and_compare(&mut tool, &mut c).await;
    let log = tool.log();
    assert!(
        log.contains("binlog position refused by the server; the next start re-dumps"),
        "{log}"
    );
    assert_eq!(log.matches("dump: snapshot taken").count(), 3, "{log}");
    assert_valid_position(&mut c, &read_checkpoint(&state).await).await;
    for l in log.lines().filter(|l| l.contains("WARN")) {
        println!("{l}");
    }

    tool.term();
    drop(c);
    my_cleanup(&[&name], &name).await;
    let _ = std::fs::remove_dir_all(&dir);
}
