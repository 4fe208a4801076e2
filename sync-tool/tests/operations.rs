//! The commands and signals for operating a running sync, against the real PostgreSQL,
//! MariaDB and etcd: `verify` (equal while the sync runs; every kind of difference found and
//! listed, exit code 3), `status` (active instance, phase, checkpoint and its age, lag, rows,
//! keys per table; none once the instance died), SIGTERM (the stream stops at a transaction
//! boundary with everything it read in etcd) and SIGHUP (log level reloaded).

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use serde_json::Value;

fn sync_tool(args: &[&str], cfg: &std::path::Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(cfg)
        .output()
        .expect("run sync-tool")
}

async fn verify(tool: &Tool, settle: &str) -> (i32, String) {
    let cfg = tool.cfg.clone();
    let settle = settle.to_string();
    let out =
        tokio::task::spawn_blocking(move || sync_tool(&["verify", "--settle", &settle], &cfg))
            .await
            .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn status_json(tool: &Tool) -> Value {
    let cfg = tool.cfg.clone();
    let out = tokio::task::spawn_blocking(move || sync_tool(&["status", "--json"], &cfg))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// SIGTERM and the exit status (killed after `within`).
fn term_and_wait(tool: &mut Tool, within: Duration) -> std::process::ExitStatus {
    tool.signal("TERM");
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = tool.exited() {
            tool.child = None;
            return st;
        }
        if Instant::now() > deadline {
            tool.kill9();
            panic!(
                "sync-tool did not exit within {within:?} after SIGTERM:\n{}",
                tool.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The differences `verify` must find once the tool is stopped and the source and etcd were
/// changed behind its back, then the way back to equal.
async fn verify_finds_every_difference(
    tool: &mut Tool,
    path: &str,
    table: &str,
    change: impl AsyncFnOnce(),
) {
    wait_verified(tool, Duration::from_secs(30)).await;
    let (code, out) = verify(tool, "10s").await;
    assert_eq!(code, 0, "{out}\n{}", tool.log());
    assert!(
        out.contains(&format!(
            "{table}: 2000 rows in the source, 2000 keys in etcd: equal"
        )),
        "{out}"
    );
    tool.signal("STOP");
    change().await; // inserts 5000, updates 7, deletes 9
    let mut e = etcd().await;
    e.put(format!("/{path}/{table}/99999"), "{}", None)
        .await
        .unwrap();
    let (code, out) = verify(tool, "2s").await;
    assert_eq!(code, 3, "{out}");
    for want in [
        format!("{table}: 2000 rows in the source, 2001 keys in etcd: 1 missing, 2 extra, 1 stale"),
        format!("  missing /{path}/{table}/5000"),
        format!("  extra   /{path}/{table}/9"),
        format!("  extra   /{path}/{table}/99999"),
        format!("  stale   /{path}/{table}/7 (columns: v)"),
        "verify: etcd differs from the source in 1 of 1 tables".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} not in\n{out}");
    }
    // the tool catches up; only the key it never wrote stays
    tool.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out) = verify(tool, "0s").await;
        assert_eq!(code, 3, "the extra key is still there: {out}");
        if out.contains("0 missing, 1 extra, 0 stale") {
            break;
        }
        assert!(Instant::now() < deadline, "{out}\n{}", tool.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    e.delete(format!("/{path}/{table}/99999"), None)
        .await
        .unwrap();
    wait_verified(tool, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_postgres() {
    if skip("verify_postgres") {
        return;
    }
    let name = unique("opsverpg");
    let c = pg("testdb").await;
    c.batch_execute(&format!(
        "CREATE SCHEMA {name}; CREATE TABLE {name}.t (id int PRIMARY KEY, v text, n int);
         INSERT INTO {name}.t SELECT i, 'v' || i, 0 FROM generate_series(1, 2000) i"
    ))
    .await
    .unwrap();
    let dir = tmpdir(&name);
    let mut tool = streaming_tool(
        &dir,
        &name,
        &pg_config(&name, &name, &[&format!("{name}.*")], ""),
    )
    .await;
    // a writer keeps changing rows while the first verify runs
    let writer = {
        let name = name.clone();
        tokio::spawn(async move {
            let c = pg("testdb").await;
            for i in 0..300 {
                c.batch_execute(&format!(
                    "UPDATE {name}.t SET n = n + 1 WHERE id = {}",
                    1 + (i * 37) % 2000
                ))
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let (code, out) = verify(&tool, "10s").await;
    assert_eq!(
        code,
        0,
        "equal while rows change and the sync runs: {out}\n{}",
        tool.log()
    );
    writer.await.unwrap();
    let table = format!("{name}.t");
    verify_finds_every_difference(&mut tool, &name, &table, async || {
        c.batch_execute(&format!(
            "INSERT INTO {name}.t VALUES (5000, 'new', 0); UPDATE {name}.t SET v = 'changed' WHERE id = 7; DELETE FROM {name}.t WHERE id = 9"
        ))
        .await
        .unwrap();
    })
    .await;
    tool.term();
    pg_cleanup(&name, &[&name], &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_mysql() {
    if skip("verify_mysql") {
        return;
    }
    let name = unique("opsvermy");
    let mut c = my().await;
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {name}; CREATE TABLE {name}.t (id INT PRIMARY KEY, v VARCHAR(20), n INT);
             INSERT INTO {name}.t SELECT seq, concat('v', seq), 0 FROM {name}.seq_1_to_2000"
        ),
    )
    .await;
    let dir = tmpdir(&name);
    let mut tool =
        streaming_tool(&dir, &name, &my_config(&name, &[&format!("{name}.*")], "")).await;
    let table = format!("{name}.t");
    verify_finds_every_difference(&mut tool, &name, &table, async || {
        my_exec(
            &mut c,
            &format!(
                "INSERT INTO {name}.t VALUES (5000, 'new', 0);
                 UPDATE {name}.t SET v = 'changed' WHERE id = 7;
                 DELETE FROM {name}.t WHERE id = 9"
            ),
        )
        .await;
    })
    .await;
    tool.term();
    my_cleanup(&[&name], &name).await;
}

/// `status` while the tool runs (MariaDB: file/pos lag) and after it died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_mysql() {
    if skip("status_mysql") {
        return;
    }
    let name = unique("opsstmy");
    let mut c = my().await;
    my_exec(
        &mut c,
        &format!("CREATE DATABASE {name}; CREATE TABLE {name}.t (id INT PRIMARY KEY, v INT); INSERT INTO {name}.t SELECT seq, seq FROM {name}.seq_1_to_300"),
    )
    .await;
    let dir = tmpdir(&name);
    let mut tool =
        streaming_tool(&dir, &name, &my_config(&name, &[&format!("{name}.*")], "")).await;
    my_exec(
        &mut c,
        &format!("UPDATE {name}.t SET v = v + 1 WHERE id <= 50"),
    )
    .await;
    wait_verified(&tool, Duration::from_secs(30)).await;
    // the published status is refreshed every 2 s
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = status_json(&tool).await;
        if s["instance_status"]["rows_applied"].as_u64() >= Some(350) {
            break s;
        }
        assert!(Instant::now() < deadline, "{s:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let pid = tool.pid().unwrap();
    assert!(
        s["active_instance"]
            .as_str()
            .is_some_and(|i| i.ends_with(&format!(":{pid}"))),
        "{s:#}"
    );
    assert_eq!(s["phase"], "stream", "{s:#}");
    assert!(
        s["checkpoint_age_s"].as_f64().is_some_and(|a| a < 30.0),
        "{s:#}"
    );
    assert_eq!(s["instance_status"]["dump_rows"], 300, "{s:#}");
    assert_eq!(
        s["instance_status"]["table_rows_applied"][format!("{name}.t")],
        350,
        "{s:#}"
    );
    assert_eq!(
        s["tables"],
        serde_json::json!([{ "table": format!("{name}.t"), "keys": 300 }]),
        "{s:#}"
    );
    assert!(
        s["source"]["file"]
            .as_str()
            .is_some_and(|f| f.starts_with("binlog.")),
        "{s:#}"
    );
    assert!(s["lag_s"].as_f64().is_some(), "{s:#}");
    let text = String::from_utf8_lossy(&sync_tool(&["status"], &tool.cfg).stdout).into_owned();
    for want in [
        "active instance: ".to_string(),
        "phase: stream".into(),
        "checkpoint: binlog.".into(),
        format!("  {name}.t 300"),
    ] {
        assert!(text.contains(&want), "{want:?} not in\n{text}");
    }
    // the instance dies: its lease (2 s) expires, and so does what it published
    tool.kill9();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = status_json(&tool).await;
        if s["active_instance"].is_null() {
            assert!(s["instance_status"].is_null(), "{s:#}");
            assert_eq!(s["phase"], "stream", "the checkpoint stays: {s:#}");
            break;
        }
        assert!(Instant::now() < deadline, "{s:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let text = String::from_utf8_lossy(&sync_tool(&["status"], &tool.cfg).stdout).into_owned();
    assert!(text.contains("active instance: none"), "{text}");
    my_cleanup(&[&name], &name).await;
}

/// `status` of a PostgreSQL sync: LSN lag and the slot's confirmed position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_postgres() {
    if skip("status_postgres") {
        return;
    }
    let name = unique("opsstpg");
    let c = pg("testdb").await;
    c.batch_execute(&format!("CREATE SCHEMA {name}; CREATE TABLE {name}.t (id int PRIMARY KEY); INSERT INTO {name}.t SELECT generate_series(1, 40)"))
        .await
        .unwrap();
    let dir = tmpdir(&name);
    let mut tool = streaming_tool(
        &dir,
        &name,
        &pg_config(&name, &name, &[&format!("{name}.*")], ""),
    )
    .await;
    c.batch_execute(&format!("INSERT INTO {name}.t VALUES (41)"))
        .await
        .unwrap();
    wait_verified(&tool, Duration::from_secs(30)).await;
    let s = status_json(&tool).await;
    assert_eq!(s["phase"], "stream", "{s:#}");
    assert!(
        s["checkpoint"]["lsn"]
            .as_str()
            .is_some_and(|l| l.contains('/')),
        "{s:#}"
    );
    assert!(
        s["source"]["lsn"].as_str().is_some() && s["source"]["bytes_behind"].as_u64().is_some(),
        "{s:#}"
    );
    assert!(
        s["source"]["slot_confirmed_lsn"].as_str().is_some(),
        "{s:#}"
    );
    assert_eq!(
        s["tables"],
        serde_json::json!([{ "table": format!("{name}.t"), "keys": 41 }]),
        "{s:#}"
    );
    tool.term();
    pg_cleanup(&name, &[&name], &name).await;
}

/// SIGTERM, `TXNS` source transactions of 100 rows (`k` = the transaction) committed while the
/// tool was stopped: the tool exits 0 after the transaction it is in, so every source transaction
/// is in etcd whole or not at all, and the applied ones are the oldest.
const TXNS: u64 = 60;

async fn stops_between_transactions(tool: &mut Tool, path: &str) {
    tool.signal("CONT");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let st = term_and_wait(tool, Duration::from_secs(25));
    assert!(st.success(), "exit status {st}:\n{}", tool.log());
    let log = tool.log();
    assert!(
        log.contains("stopped between transactions; everything read is in etcd"),
        "{log}"
    );
    let got = etcd_map(&mut etcd().await, &format!("/{path}/")).await;
    let mut per_txn = vec![0u64; TXNS as usize];
    for v in got.values() {
        per_txn[v["k"].as_u64().unwrap() as usize] += 1;
    }
    let whole = per_txn.iter().take_while(|n| **n == 100).count();
    assert!(
        per_txn[whole..].iter().all(|n| *n == 0),
        "a transaction is in etcd in part, or out of order: {per_txn:?}"
    );
    println!("{whole} of {TXNS} source transactions applied before the stop");
}

/// 16 operations per etcd transaction: a 100-row source transaction takes 7.
const SPLIT: &str = "  max_txn_ops: 16\n  txns_in_flight: 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_at_a_transaction_boundary_mysql() {
    if skip("sigterm_stops_at_a_transaction_boundary_mysql") {
        return;
    }
    let name = unique("opstermmy");
    let mut c = my().await;
    my_exec(&mut c, &format!("CREATE DATABASE {name}; CREATE TABLE {name}.t (id INT PRIMARY KEY, k INT, pad VARCHAR(200))")).await;
    let dir = tmpdir(&name);
    let mut tool = streaming_tool(
        &dir,
        &name,
        &my_config(&name, &[&format!("{name}.*")], SPLIT),
    )
    .await;
    tool.signal("STOP");
    for k in 0..TXNS {
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop(format!("INSERT INTO {name}.t SELECT {k} * 100 + seq, {k}, repeat('p', 150) FROM {name}.seq_0_to_99"))
            .await
            .unwrap();
        c.query_drop("COMMIT").await.unwrap();
    }
    stops_between_transactions(&mut tool, &name).await;
    assert_valid_position(
        &mut c,
        &read_checkpoint(&format!("/sync-tool/{name}")).await,
    )
    .await;
    // the rest follows after a restart, from the checkpoint
    tool.start();
    wait_verified(&tool, Duration::from_secs(60)).await;
    assert!(
        tool.log().contains("resuming from checkpoint"),
        "{}",
        tool.log()
    );
    assert_eq!(tool.log().matches("dump: snapshot taken").count(), 1);
    tool.term();
    my_cleanup(&[&name], &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_at_a_transaction_boundary_postgres() {
    if skip("sigterm_stops_at_a_transaction_boundary_postgres") {
        return;
    }
    let name = unique("opstermpg");
    let c = pg("testdb").await;
    c.batch_execute(&format!(
        "CREATE SCHEMA {name}; CREATE TABLE {name}.t (id int PRIMARY KEY, k int, pad text)"
    ))
    .await
    .unwrap();
    let dir = tmpdir(&name);
    let mut tool = streaming_tool(
        &dir,
        &name,
        &pg_config(&name, &name, &[&format!("{name}.*")], SPLIT),
    )
    .await;
    tool.signal("STOP");
    for k in 0..TXNS {
        c.batch_execute(&format!("INSERT INTO {name}.t SELECT {k} * 100 + i, {k}, repeat('p', 150) FROM generate_series(0, 99) i"))
            .await
            .unwrap();
    }
    stops_between_transactions(&mut tool, &name).await;
    tool.start();
    wait_verified(&tool, Duration::from_secs(60)).await;
    assert!(
        tool.log().contains("resuming from checkpoint"),
        "{}",
        tool.log()
    );
    assert_eq!(
        tool.log().matches("replication slot created").count(),
        1,
        "no re-dump"
    );
    tool.term();
    pg_cleanup(&name, &[&name], &name).await;
}

/// SIGHUP reads the file again and applies its log_level (a broken file leaves it as it is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_log_level() {
    if skip("sighup_reloads_the_log_level") {
        return;
    }
    let name = unique("opshup");
    let mut c = my().await;
    my_exec(
        &mut c,
        &format!("CREATE DATABASE {name}; CREATE TABLE {name}.t (id INT PRIMARY KEY)"),
    )
    .await;
    let dir = tmpdir(&name);
    let yaml = my_config(&name, &[&format!("{name}.*")], "");
    assert!(yaml.starts_with("log_level: info\n"));
    let mut tool = streaming_tool(&dir, &name, &yaml).await;
    let traced = |tool: &Tool| tool.log().matches(" TRACE ").count();
    let insert_and_wait = async |c: &mut mysql_async::Conn, tool: &Tool, id: u32| {
        my_exec(c, &format!("INSERT INTO {name}.t VALUES ({id})")).await;
        wait_verified(tool, Duration::from_secs(30)).await;
    };
    insert_and_wait(&mut c, &tool, 1).await;
    assert_eq!(traced(&tool), 0);

    std::fs::write(
        &tool.cfg,
        yaml.replacen("log_level: info", "log_level: trace", 1),
    )
    .unwrap();
    tool.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tool.log().contains("SIGHUP: log level reloaded") {
        assert!(Instant::now() < deadline, "{}", tool.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    insert_and_wait(&mut c, &tool, 2).await;
    let after_trace = traced(&tool);
    assert!(
        after_trace > 0,
        "trace lines after the reload:\n{}",
        tool.log()
    );

    std::fs::write(&tool.cfg, "log_level: [broken\n").unwrap();
    tool.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tool
        .log()
        .contains("SIGHUP: the configuration cannot be read; log level unchanged")
    {
        assert!(Instant::now() < deadline, "{}", tool.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tool.exited().is_none(), "SIGHUP must not end the process");

    std::fs::write(&tool.cfg, &yaml).unwrap();
    tool.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tool.log().matches("SIGHUP: log level reloaded").count() < 2 {
        assert!(Instant::now() < deadline, "{}", tool.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = traced(&tool);
    insert_and_wait(&mut c, &tool, 3).await;
    assert_eq!(
        traced(&tool),
        before,
        "no trace lines at info:\n{}",
        tool.log()
    );
    tool.term();
    my_cleanup(&[&name], &name).await;
}
