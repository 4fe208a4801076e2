//! Password authentication methods a PostgreSQL user may have: MD5 (the default of
//! `password_encryption` up to PostgreSQL 13, so what most older clusters' roles have) and
//! SCRAM-SHA-256, for the dump (tokio-postgres) and for the stream (the tool's own walsender
//! client). A private cluster (15, or the major SYNC_PG_MAJOR names) with `md5` and
//! `scram-sha-256` lines in pg_hba.conf; a wrong password is a clear error.

mod common;

use std::time::{Duration, Instant};

use common::pg_server::{chosen_major, connect_superuser, PgServer};
use common::*;
use etcd_client::GetOptions;

fn config(port: u16, user: &str, password: &str, path: &str) -> String {
    format!(
        "database: {{type: postgres, host: 127.0.0.1, port: {port}, user: {user}, password: {password}, name: postgres, retry_period: 200ms}}\n\
         etcd: {{endpoints: [\"127.0.0.1:2379\"], path: {path}, dial_timeout: 3s, request_timeout: 5s}}\n\
         sync: {{tables: {{include: [\"auth.t\"]}}, slot: s_{path}, publication: p_{path}, lease_ttl: 2s, max_backoff: 1s}}\n"
    )
}

async fn keys(path: &str) -> i64 {
    etcd()
        .await
        .get(
            format!("/{path}/t/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count()
}

async fn wait_keys(path: &str, n: i64, tool: &mut Tool) {
    let t0 = Instant::now();
    while keys(path).await != n {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{n} keys expected under /{path}/t/, have {}:\n{}",
            keys(path).await,
            tool.log()
        );
        assert!(tool.exited().is_none(), "tool exited:\n{}", tool.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_md5_and_scram_passwords() {
    if skip("pg_md5_and_scram_passwords") {
        return;
    }
    let name = unique("auth");
    let dir = tmpdir(&name);
    let port = 24000 + (std::process::id() % 4000) as u16;
    let major = chosen_major().unwrap_or_else(|| "15".into());
    let pg = PgServer::start(&dir.join("pg"), port, &major);
    pg.stop_after(std::process::id(), &dir.join("pg"));
    pg.hba_first("host all md5user 127.0.0.1/32 md5\nhost replication md5user 127.0.0.1/32 md5\n");
    let c = connect_superuser(port).await;
    c.batch_execute(
        "SET password_encryption = 'md5';
         CREATE ROLE md5user LOGIN REPLICATION SUPERUSER PASSWORD 'md5 pass';
         SET password_encryption = 'scram-sha-256';
         CREATE ROLE scramuser LOGIN REPLICATION SUPERUSER PASSWORD 'scram pass';
         CREATE SCHEMA auth; CREATE TABLE auth.t (id int PRIMARY KEY, v text);
         INSERT INTO auth.t SELECT i, 'v' || i FROM generate_series(1, 3) i;",
    )
    .await
    .unwrap();
    // the roles really have the two kinds of stored password
    for (role, prefix) in [("md5user", "md5"), ("scramuser", "SCRAM-SHA-256$")] {
        let stored: String = c
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(stored.starts_with(prefix), "{role}: {stored}");
    }

    // 3 rows dumped, then one streamed per user
    let users = [("md5user", "'md5 pass'"), ("scramuser", "'scram pass'")];
    for (next, (user, password)) in (4..).zip(users) {
        let path = format!("{name}_{user}");
        let mut tool = Tool::new(&dir, user, &config(port, user, password, &path));
        tool.start();
        wait_keys(&path, next - 1, &mut tool).await;
        // a row committed now can only reach etcd through the stream
        c.batch_execute(&format!("INSERT INTO auth.t VALUES ({next}, 'streamed')"))
            .await
            .unwrap();
        wait_keys(&path, next, &mut tool).await;
        assert!(
            tool.log().contains(&format!("PostgreSQL {major}")),
            "not the chosen major {major}:\n{}",
            tool.log()
        );
        tool.term();
        etcd_clear(&mut etcd().await, &format!("/{path}/")).await;
        c.batch_execute(&format!("SELECT pg_drop_replication_slot('s_{path}')"))
            .await
            .unwrap();
    }

    // a wrong password: the tool says so (and does not stream)
    let path = format!("{name}_bad");
    let mut tool = Tool::new(
        &dir,
        "bad",
        &config(port, "md5user", "Wr0ngPassw0rd", &path),
    );
    tool.start();
    let t0 = Instant::now();
    while !tool.log().contains("password authentication failed") {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no authentication error in the log:\n{}",
            tool.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !tool.log().contains("Wr0ngPassw0rd"),
        "the password is in the log"
    );
    tool.term();
    assert_eq!(keys(&path).await, 0);
    drop(pg);
}
