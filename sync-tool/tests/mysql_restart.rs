//! A private MariaDB 10.11 (own port and directory, so the shared server on 3301 is never
//! restarted or purged): restarted mid-stream (the tool resumes, equality holds), then its
//! binlog is purged while the tool is down (the tool detects it, re-dumps, stale keys go).

mod common;

use std::time::Duration;

use common::maria::PrivateMaria;
use common::*;
use mysql_async::prelude::Queryable;

async fn keys(path: &str) -> usize {
    etcd_map(&mut etcd().await, &format!("/{path}/"))
        .await
        .len()
}

async fn binlog_files(c: &mut mysql_async::Conn) -> Vec<String> {
    let rows: Vec<mysql_async::Row> = c.query("SHOW BINARY LOGS").await.unwrap();
    rows.iter().filter_map(|r| r.get::<String, _>(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_private_server_restart_and_purged_binlog() {
    if skip("mysql_private_server_restart_and_purged_binlog") {
        return;
    }
    let name = unique("myrestart");
    let dir = tmpdir(&name);
    let port = 3390 + (std::process::id() % 50) as u16;
    let mut srv = PrivateMaria::start(&dir, port);
    let mut c = my_port(port).await;
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {name};
             CREATE TABLE {name}.t (id INT PRIMARY KEY, v VARCHAR(20));
             INSERT INTO {name}.t SELECT seq, 'init' FROM {name}.seq_1_to_200"
        ),
    )
    .await;
    drop(c);
    let include = format!("{name}.*");
    let yaml = my_config_port(port, &name, &[&include], "");
    let mut tool = Tool::new(&dir, "tool", &yaml);
    tool.start();
    wait_streaming(
        &format!("/sync-tool/{name}"),
        Duration::from_secs(60),
        &mut tool,
    )
    .await;

    // writes, restart of the server, more writes
    let mut c = my_port(port).await;
    my_exec(
        &mut c,
        &format!("INSERT INTO {name}.t SELECT seq, 'before' FROM {name}.seq_1000_to_1100"),
    )
    .await;
    drop(c);
    srv.down();
    tokio::time::sleep(Duration::from_secs(1)).await;
    srv.up();
    let mut c = my_port(port).await;
    my_exec(
        &mut c,
        &format!(
            "INSERT INTO {name}.t SELECT seq, 'after' FROM {name}.seq_2000_to_2100;
             UPDATE {name}.t SET v = 'upd' WHERE id <= 50;
             DELETE FROM {name}.t WHERE id BETWEEN 60 AND 70"
        ),
    )
    .await;
    wait_verified(&tool, Duration::from_secs(60)).await;
    assert_eq!(keys(&name).await, 200 + 101 + 101 - 11);

    // failover look-alike: the server comes back with another server_id (a different server
    // identity for the tool) while the tool is down; rows written meanwhile. The tool must not
    // re-dump but resume from the GTID position stored in its checkpoint.
    tool.term();
    let cp = etcd_map(&mut etcd().await, &format!("/sync-tool/{name}/")).await;
    let gtid = cp["checkpoint"]["gtid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        gtid.starts_with("0-7-"),
        "checkpoint has the GTID of the last transaction: {cp:?}"
    );
    my_exec(
        &mut c,
        &format!("INSERT INTO {name}.t SELECT seq, 'failover' FROM {name}.seq_3000_to_3020"),
    )
    .await;
    drop(c);
    srv.down();
    srv.set_server_id(8);
    srv.up();
    let mut c = my_port(port).await;
    my_exec(
        &mut c,
        &format!("UPDATE {name}.t SET v = 'on-new' WHERE id = 3001"),
    )
    .await;
    tool.start();
    wait_verified(&tool, Duration::from_secs(60)).await;
    assert_eq!(keys(&name).await, 200 + 101 + 101 - 11 + 21);
    let log = tool.log();
    assert!(log.contains("resuming from its GTID position"), "{log}");
    assert_eq!(
        log.matches("dump: snapshot taken").count(),
        1,
        "no re-dump after the identity change: {log}"
    );
    let cp = etcd_map(&mut etcd().await, &format!("/sync-tool/{name}/")).await;
    assert_eq!(cp["checkpoint"]["server"], "server_id:8", "{cp:?}");
    assert!(
        cp["checkpoint"]["gtid"]
            .as_str()
            .unwrap_or_default()
            .starts_with("0-8-"),
        "{cp:?}"
    );

    // tool down; rows deleted/updated; the binlog holding them purged
    tool.term();
    my_exec(
        &mut c,
        &format!(
            "DELETE FROM {name}.t WHERE id > 2050;
             UPDATE {name}.t SET v = 'while-down' WHERE id BETWEEN 100 AND 110"
        ),
    )
    .await;
    // MariaDB keeps a file its binlog checkpoint still needs (PURGE only warns): rotate and
    // purge until the checkpoint's file is gone
    let cp_file = read_checkpoint(&format!("/sync-tool/{name}")).await["file"]
        .as_str()
        .unwrap()
        .to_string();
    for attempt in 0.. {
        c.query_drop("FLUSH BINARY LOGS").await.unwrap();
        let r: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        let file: String = r.get(0).unwrap();
        c.query_drop(format!("PURGE BINARY LOGS TO '{file}'"))
            .await
            .unwrap();
        if !binlog_files(&mut c).await.contains(&cp_file) {
            break;
        }
        assert!(
            attempt < 50,
            "{cp_file} is not purged: {:?}",
            binlog_files(&mut c).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tool.start();
    wait_verified(&tool, Duration::from_secs(60)).await;
    assert_eq!(keys(&name).await, 200 + 101 + 51 - 11);
    assert!(tool.log().contains("purged"), "{}", tool.log());
    // and it streams again after the re-dump
    my_exec(
        &mut c,
        &format!("INSERT INTO {name}.t VALUES (9999, 'late')"),
    )
    .await;
    wait_verified(&tool, Duration::from_secs(30)).await;
    let got = etcd_map(&mut etcd().await, &format!("/{name}/")).await;
    assert_eq!(
        got[&format!("{name}.t/9999")],
        serde_json::json!({"id": 9999, "v": "late"})
    );

    tool.term();
    drop(c);
    srv.down();
    let mut e = etcd().await;
    etcd_clear(&mut e, &format!("/{name}/")).await;
    etcd_clear(&mut e, &format!("/sync-tool/{name}/")).await;
    let _ = std::fs::remove_dir_all(&dir);
}
