//! PostgreSQL → etcd 3.4 integration tests against the real services on loopback: the shared
//! PostgreSQL 15, or a private server of the major SYNC_PG_MAJOR names (10 to 18).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;
use serde_json::json;

#[test]
fn cli_help_and_bad_config() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--config"));
    let dir = tmpdir("badcfg");
    for (yaml, needle) in [
        ("database: {type: postgres, user: u, name: d}\netcd: {endpoints: [x]}\nbogus: 1\n", "bogus"),
        ("database: {type: oracle, user: u, name: d}\netcd: {endpoints: [x]}\n", "oracle"),
        ("database: {type: postgres, user: u, name: d, retry_period: soon}\netcd: {endpoints: [x]}\n", "duration"),
        ("database: {type: postgres, user: u, name: d}\netcd: {endpoints: []}\n", "endpoints"),
        ("database: {type: postgres, user: u, name: d}\netcd: {endpoints: [x]}\nsync: {key_template: \"/{path}/{table}\"}\n", "{pk}"),
        (": : :\n", "invalid"),
    ] {
        let p = dir.join("c.yml");
        std::fs::write(&p, yaml).unwrap();
        let out = Command::new(BIN).arg("-c").arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(err.contains(needle), "{yaml}: expected {needle:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = Command::new(BIN)
        .arg("-c")
        .arg(dir.join("missing.yml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_table_without_pk_is_a_clear_error() {
    if skip("pg_table_without_pk_is_a_clear_error") {
        return;
    }
    let name = unique("nopk");
    let c = pg("testdb").await;
    let _ = etcd().await;
    c.batch_execute(&format!(
        "CREATE SCHEMA {name}; CREATE TABLE {name}.t (a int, b text);"
    ))
    .await
    .unwrap();
    let dir = tmpdir(&name);
    let mut tool = Tool::new(
        &dir,
        "tool",
        &pg_config(&name, &name, &[&format!("{name}.*")], ""),
    );
    tool.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        if let Some(st) = tool.exited() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "tool did not exit:\n{}",
            tool.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(st.code(), Some(1));
    assert!(tool.log().contains("has no primary key"), "{}", tool.log());
    assert!(
        !tool.log().contains("replpass"),
        "password leaked into the log"
    );
    pg_cleanup(&name, &[&name], &name).await;
}

/// Dump + stream equality on a mixed schema: two schemas, composite keys with '/' and ',',
/// every mapped type, a TOASTed column kept on updates that don't touch it, TRUNCATE,
/// ALTER TABLE ADD/DROP COLUMN, a primary-key change, a transaction larger than etcd's
/// 128-operation limit. The end state must equal a fresh dump, and selected values must be
/// exactly the documented JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_stream_equality_mixed_schema() {
    if skip("pg_dump_stream_equality_mixed_schema") {
        return;
    }
    let name = unique("mixed");
    let (sa, sb) = (format!("{name}_a"), format!("{name}_b"));
    let c = pg("testdb").await;
    let mut e = etcd().await;
    c.batch_execute(&format!(
        "CREATE SCHEMA {sa}; CREATE SCHEMA {sb};
         CREATE TYPE {sa}.mood AS ENUM ('sad', 'happy');
         CREATE TABLE {sa}.types (id bigint PRIMARY KEY, i2 smallint, i4 int, n numeric(30,10), f float8, r real,
            b bool, t text, vc varchar(20), j json, jb jsonb, by bytea, ts timestamp, tstz timestamptz, d date,
            tm time, iv interval, u uuid, arr int[], tarr text[], m {sa}.mood, big text);
         CREATE TABLE {sb}.comp (k1 int, k2 text, v text, PRIMARY KEY (k1, k2));
         CREATE TABLE {sa}.trunc (id int PRIMARY KEY, v text);
         INSERT INTO {sa}.types VALUES (1, -32768, 2147483647, 12345678901234567890.0123456789, 1.5, 0.25, true,
            'hé \"q\"', 'vc', '{{\"a\": [1, 2]}}', '{{\"b\": {{\"c\": null}}}}', '\\x00ff10', '2024-01-02 03:04:05.123456',
            '2024-01-02 03:04:05+02', '2024-02-29', '13:14:15', '1 year 2 mons 3 days 04:05:06', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
            '{{1,NULL,3}}', '{{\"x y\",z}}', 'happy', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 4000) i));
         INSERT INTO {sa}.types (id, f, t) VALUES (2, 'NaN', E'a\\tb\\nc\\\\d\\\\N');
         INSERT INTO {sb}.comp SELECT i, 'k/' || i || ',x', 'v' || i FROM generate_series(1, 50) i;
         INSERT INTO {sa}.trunc SELECT i, 'old' FROM generate_series(1, 20) i;"
    ))
    .await
    .unwrap();
    let include = [format!("{sa}.*"), format!("{sb}.*")];
    let include: Vec<&str> = include.iter().map(String::as_str).collect();
    let dir = tmpdir(&name);
    let yaml = pg_config(&name, &name, &include, "");
    // PostgreSQL 10 does not replicate TRUNCATE (pg_truncate_not_replicated_on_10 checks what
    // it does instead): the same rows go with DELETE there
    let truncate = if server_num(&c).await >= 110_000 {
        "TRUNCATE"
    } else {
        "DELETE FROM"
    };
    let mut tool = Tool::new(&dir, "tool", &yaml);
    tool.start();
    let state = format!("/sync-tool/{name}");
    wait_streaming(&state, Duration::from_secs(60), &mut tool).await;

    // exact type mapping after the dump
    let m = etcd_map(&mut e, &format!("/{name}/")).await;
    let row = m
        .get(&format!("{sa}.types/1"))
        .unwrap_or_else(|| panic!("row 1 missing: {:?}", m.keys().collect::<Vec<_>>()));
    let mut expect = json!({"id": 1, "i2": -32768, "i4": 2147483647, "n": "12345678901234567890.0123456789", "f": 1.5,
        "r": 0.25, "b": true, "t": "hé \"q\"", "vc": "vc", "j": {"a": [1, 2]}, "jb": {"b": {"c": null}}, "by": "AP8Q",
        "ts": "2024-01-02T03:04:05.123456", "tstz": "2024-01-02T01:04:05Z", "d": "2024-02-29", "tm": "13:14:15",
        "iv": "P1Y2M3DT4H5M6S", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "arr": [1, null, 3], "tarr": ["x y", "z"],
        "m": "happy"});
    let big = row["big"].as_str().unwrap_or_default().to_string();
    assert_eq!(big.len(), 128_000);
    expect["big"] = json!(big);
    assert_eq!(row, &expect);
    assert_eq!(m[&format!("{sa}.types/2")]["f"], json!("NaN"));
    // tab, newline and backslashes survive the dump's COPY escaping
    assert_eq!(m[&format!("{sa}.types/2")]["t"], json!("a\tb\nc\\d\\N"));
    assert!(
        m.contains_key(&format!("{sb}.comp/7,k%2F7%2Cx")),
        "composite key encoding"
    );

    // stream
    c.batch_execute(&format!(
        "UPDATE {sa}.types SET i4 = 7 WHERE id = 1;  -- big is TOASTed and unchanged
         INSERT INTO {sa}.types (id, t, arr, tstz) VALUES (3, 'three', '{{}}', 'infinity');
         BEGIN; INSERT INTO {sb}.comp SELECT i, 'big', 'tx' FROM generate_series(1000, 1400) i;
                UPDATE {sb}.comp SET v = 'upd' WHERE k1 < 30; COMMIT;
         DELETE FROM {sb}.comp WHERE k1 BETWEEN 40 AND 45;
         UPDATE {sb}.comp SET k2 = 'moved' WHERE k1 = 1;
         {truncate} {sa}.trunc;
         INSERT INTO {sa}.trunc VALUES (100, 'after truncate');
         ALTER TABLE {sb}.comp ADD COLUMN extra int;
         UPDATE {sb}.comp SET extra = 5 WHERE k1 = 2;
         ALTER TABLE {sb}.comp DROP COLUMN v;
         UPDATE {sb}.comp SET extra = 6 WHERE k1 = 3;
         BEGIN; INSERT INTO {sa}.trunc VALUES (101, 'a'); {truncate} {sa}.trunc; INSERT INTO {sa}.trunc VALUES (102, 'b'); COMMIT;
         UPDATE {sa}.types SET t = 'changed' WHERE id = 1;"
    ))
    .await
    .unwrap();
    let expected = dump_only(
        &dir,
        &pg_config(&format!("{name}x"), &format!("{name}x"), &include, ""),
        &format!("{name}x"),
    )
    .await;
    assert_eq!(expected[&format!("{sa}.types/1")]["big"], json!(big));
    assert_eq!(
        expected[&format!("{sb}.comp/2,k%2F2%2Cx")],
        json!({"k1": 2, "k2": "k/2,x", "extra": 5})
    );
    wait_equal(&name, &expected, Duration::from_secs(60), &|| tool.log()).await;
    tool.term();
    pg_cleanup(&name, &[&sa, &sb], &name).await;
}

async fn server_num(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0)
}

/// Transactions larger than the server's decoding memory: one committed (streamed while it runs
/// on 14+, spooled by the tool and applied at its commit), one with a rolled-back savepoint
/// (only the subtransaction's rows are left out), one rolled back whole (nothing applied).
/// The start-up line names what the major can do. Equality by `sync-tool verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_big_transactions_streamed() {
    if skip("pg_big_transactions_streamed") {
        return;
    }
    let name = unique("bigtx");
    let c = pg("testdb").await;
    workload_schema(&c, &name).await;
    let dir = tmpdir(&name);
    let mut tool = streaming_tool(
        &dir,
        &name,
        &pg_config(&name, &name, &[&format!("{name}.*")], ""),
    )
    .await;
    let pad = "x".repeat(40);
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO {name}.w SELECT i, i, '{pad}' || i FROM generate_series(10001, 18000) i;
                UPDATE {name}.w SET v = -v WHERE id <= 1000; COMMIT;
         BEGIN; INSERT INTO {name}.w SELECT i, 0, '{pad}' FROM generate_series(30001, 33000) i;
                SAVEPOINT a; INSERT INTO {name}.w SELECT i, 0, '{pad}' FROM generate_series(40001, 43000) i;
                ROLLBACK TO SAVEPOINT a;
                INSERT INTO {name}.c VALUES (1, 'after savepoint', 1); COMMIT;
         BEGIN; INSERT INTO {name}.w SELECT i, 0, '{pad}' FROM generate_series(50001, 53000) i; ROLLBACK;"
    ))
    .await
    .unwrap();
    wait_verified(&tool, Duration::from_secs(90)).await;
    let got = etcd_map(&mut etcd().await, &format!("/{name}/")).await;
    assert!(
        got.contains_key(&format!("{name}.w/18000"))
            && got.contains_key(&format!("{name}.w/33000"))
    );
    assert!(
        !got.contains_key(&format!("{name}.w/40001"))
            && !got.contains_key(&format!("{name}.w/50001"))
    );
    let num = server_num(&c).await;
    let work_mem: String = c
        .query_one(
            "SELECT current_setting('logical_decoding_work_mem', true)",
            &[],
        )
        .await
        .unwrap()
        .get::<_, Option<String>>(0)
        .unwrap_or_default();
    let log = tool.log();
    if num >= 140_000 {
        assert!(
            log.contains("streamed in-progress transactions on"),
            "{log}"
        );
        if work_mem == "64kB" {
            assert!(
                log.contains("streamed transaction applied"),
                "not streamed:\n{log}"
            );
        }
    } else {
        assert!(
            log.contains("no streamed in-progress transactions before 14"),
            "{log}"
        );
        assert!(!log.contains("streamed transaction applied"), "{log}");
    }
    println!(
        "server {num}: logical_decoding_work_mem {work_mem:?}; streamed transactions applied: {}",
        log.matches("streamed transaction applied").count()
    );
    tool.term();
    pg_cleanup(&name, &[&name], &name).await;
}

/// PostgreSQL 10 has no TRUNCATE in pgoutput: the tool says so at start-up, and a TRUNCATE
/// leaves the rows in etcd (documented) while the changes after it are still streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_truncate_not_replicated_on_10() {
    if skip("pg_truncate_not_replicated_on_10") {
        return;
    }
    let c = pg("testdb").await;
    if server_num(&c).await >= 110_000 {
        println!("pg_truncate_not_replicated_on_10: the server is 11 or newer (TRUNCATE is tested in pg_dump_stream_equality_mixed_schema)");
        return;
    }
    let name = unique("trunc10");
    workload_schema(&c, &name).await;
    let dir = tmpdir(&name);
    let mut tool = streaming_tool(
        &dir,
        &name,
        &pg_config(&name, &name, &[&format!("{name}.*")], ""),
    )
    .await;
    c.batch_execute(&format!(
        "TRUNCATE {name}.c; INSERT INTO {name}.c VALUES (7, 'x', 1); TRUNCATE {name}.w; INSERT INTO {name}.w VALUES (1, 1, 'after');"
    ))
    .await
    .unwrap();
    let key = format!("{name}.c/7,x");
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = etcd_map(&mut etcd().await, &format!("/{name}/")).await;
        if got.contains_key(&key) || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        got.contains_key(&key),
        "the insert after TRUNCATE was not streamed:\n{}",
        tool.log()
    );
    assert_eq!(got[&format!("{name}.w/1")]["t"], json!("after"));
    assert!(
        got.contains_key(&format!("{name}.w/2000")),
        "rows removed by TRUNCATE stay in etcd on 10"
    );
    assert!(
        tool.log()
            .contains("TRUNCATE is not replicated before PostgreSQL 11"),
        "{}",
        tool.log()
    );
    tool.term();
    pg_cleanup(&name, &[&name], &name).await;
}

/// A partitioned table selected by its parent's name: from 13 its changes (also an update that
/// moves a row to another partition) are published under the parent (publish_via_partition_root);
/// before 13 the start-up refuses it, naming the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_partitioned_table_via_root() {
    if skip("pg_partitioned_table_via_root") {
        return;
    }
    let name = unique("part");
    let c = pg("testdb").await;
    let num = server_num(&c).await;
    // primary keys on partitioned tables are 11+
    let pk = if num >= 110_000 {
        ", PRIMARY KEY (id, k)"
    } else {
        ""
    };
    c.batch_execute(&format!(
        "CREATE SCHEMA {name};
         CREATE TABLE {name}.p (id int NOT NULL, k int NOT NULL, v text{pk}) PARTITION BY RANGE (k);
         CREATE TABLE {name}.p1 PARTITION OF {name}.p FOR VALUES FROM (0) TO (10);
         CREATE TABLE {name}.p2 PARTITION OF {name}.p FOR VALUES FROM (10) TO (20);
         INSERT INTO {name}.p SELECT i, i % 20, 'seed' FROM generate_series(1, 100) i;"
    ))
    .await
    .unwrap();
    let dir = tmpdir(&name);
    let yaml = pg_config(&name, &name, &[&format!("{name}.p")], "");
    if num < 130_000 {
        let mut tool = Tool::new(&dir, "tool", &yaml);
        tool.start();
        let deadline = Instant::now() + Duration::from_secs(30);
        let st = loop {
            if let Some(st) = tool.exited() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "tool did not exit:\n{}",
                tool.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(st.code(), Some(1), "{}", tool.log());
        assert!(
            tool.log()
                .contains(&format!("{name}.p is a partitioned table")),
            "{}",
            tool.log()
        );
    } else {
        let mut tool = streaming_tool(&dir, &name, &yaml).await;
        c.batch_execute(&format!(
            "INSERT INTO {name}.p VALUES (500, 3, 'new'), (501, 13, 'new');
             UPDATE {name}.p SET k = 15 WHERE id = 5;  -- moves from p1 to p2
             UPDATE {name}.p SET v = 'upd' WHERE id = 12;
             DELETE FROM {name}.p WHERE id = 7;"
        ))
        .await
        .unwrap();
        wait_verified(&tool, Duration::from_secs(60)).await;
        let got = etcd_map(&mut etcd().await, &format!("/{name}/")).await;
        assert_eq!(got[&format!("{name}.p/5,15")]["v"], json!("seed"));
        assert!(
            !got.contains_key(&format!("{name}.p/5,5"))
                && got.contains_key(&format!("{name}.p/501,13"))
        );
        tool.term();
    }
    pg_cleanup(&name, &[&name], &name).await;
}

/// Random insert/update/delete transactions (≥ 10k row changes) on two tables.
pub async fn workload(
    c: &tokio_postgres::Client,
    schema: &str,
    txns: usize,
    seed_ids: i64,
    pause_ms: u64,
) -> usize {
    let mut rows = 0;
    let mut next = seed_ids;
    for _ in 0..txns {
        let (n, sql) = {
            let mut rng = rand::thread_rng();
            let n = rng.gen_range(1..60);
            let mut sql = String::from("BEGIN;");
            for _ in 0..n {
                match rng.gen_range(0..10) {
                    0..=4 => {
                        next += 1;
                        sql.push_str(&format!("INSERT INTO {schema}.w VALUES ({next}, {}, 'r{}');", rng.gen_range(0..1000), rng.gen::<u32>()));
                    }
                    5..=7 => sql.push_str(&format!("UPDATE {schema}.w SET v = v + 1, t = 'u{}' WHERE id = {};", rng.gen::<u16>(), rng.gen_range(1..=next))),
                    8 => sql.push_str(&format!("DELETE FROM {schema}.w WHERE id = {};", rng.gen_range(1..=next))),
                    _ => sql.push_str(&format!(
                        "INSERT INTO {schema}.c VALUES ({}, 'k{}', 1) ON CONFLICT (a, b) DO UPDATE SET n = {schema}.c.n + 1;",
                        rng.gen_range(0..50),
                        rng.gen_range(0..50)
                    )),
                }
            }
            sql.push_str("COMMIT;");
            (n, sql)
        };
        c.batch_execute(&sql).await.unwrap();
        rows += n;
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
    rows
}

pub async fn workload_schema(c: &tokio_postgres::Client, schema: &str) {
    c.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.w (id bigint PRIMARY KEY, v int, t text);
         CREATE TABLE {schema}.c (a int, b text, n int, PRIMARY KEY (a, b));
         INSERT INTO {schema}.w SELECT i, i, 'seed' FROM generate_series(1, 2000) i;"
    ))
    .await
    .unwrap();
}

/// kill -9 at random points during a ≥ 10k-row workload, restart, ≥ 5 times; then etcd must
/// equal the source exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_crash_kill9_during_workload() {
    if skip("pg_crash_kill9_during_workload") {
        return;
    }
    let name = unique("crash");
    let c = pg("testdb").await;
    let _ = etcd().await;
    workload_schema(&c, &name).await;
    let dir = tmpdir(&name);
    let include = format!("{name}.*");
    // small transactions in etcd so that kills land between chunks of one source transaction
    let yaml = pg_config(&name, &name, &[&include], "  max_txn_ops: 16\n")
        .replace("lease_ttl: 2s", "lease_ttl: 1s");
    let mut tool = Tool::new(&dir, "tool", &yaml);
    tool.start();
    let w = {
        let name = name.clone();
        tokio::spawn(async move {
            let c = pg("testdb").await;
            workload(&c, &name, 450, 2000, 15).await
        })
    };
    let mut kills = 0;
    while kills < 6 || !w.is_finished() {
        // let the new process win the election and stream for a random while, then kill it
        let streams = tool.log().matches("streaming changes").count();
        let deadline = Instant::now() + Duration::from_secs(30);
        while tool.log().matches("streaming changes").count() <= streams
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ms = rand::thread_rng().gen_range(50..700);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        tool.kill9();
        kills += 1;
        tool.start();
        if kills > 40 {
            break;
        }
    }
    let rows = w.await.unwrap();
    assert!(rows >= 10_000, "workload too small: {rows}");
    println!("workload: {rows} row changes, {kills} kill -9 + restarts");
    wait_verified(&tool, Duration::from_secs(90)).await;
    let log = tool.log();
    assert!(
        log.contains("resuming from checkpoint"),
        "restarts must resume from the slot"
    );
    tool.term();
    pg_cleanup(&name, &[&name], &name).await;
}

/// Two instances; the active one is killed; the standby takes over within seconds and the
/// end state equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ha_failover() {
    if skip("pg_ha_failover") {
        return;
    }
    let name = unique("ha");
    let c = pg("testdb").await;
    let mut e = etcd().await;
    workload_schema(&c, &name).await;
    let dir = tmpdir(&name);
    let include = format!("{name}.*");
    let yaml = pg_config(&name, &name, &[&include], "");
    let mut a = Tool::new(&dir, "a", &yaml);
    let mut b = Tool::new(&dir, "b", &yaml);
    a.start();
    let state = format!("/sync-tool/{name}");
    wait_streaming(&state, Duration::from_secs(60), &mut a).await;
    b.start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // who leads? the election key's value holds "host:pid" of the leader
    let leader_pid = || async {
        let mut e = etcd().await;
        let r = e
            .get(
                format!("{state}/election/"),
                Some(etcd_client::GetOptions::new().with_prefix().with_sort(
                    etcd_client::SortTarget::Create,
                    etcd_client::SortOrder::Ascend,
                )),
            )
            .await
            .unwrap();
        r.kvs().first().map(|kv| {
            kv.value_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse::<u32>()
                .unwrap()
        })
    };
    assert_eq!(
        leader_pid().await,
        a.pid(),
        "first instance should be the leader"
    );
    let w = {
        let name = name.clone();
        tokio::spawn(async move {
            let c = pg("testdb").await;
            workload(&c, &name, 150, 2000, 5).await
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.kill9();
    let killed = Instant::now();
    // b must become leader and apply new changes
    loop {
        if leader_pid().await == b.pid() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "standby did not take over:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed.elapsed();
    println!("takeover after {takeover:?}");
    assert!(takeover < Duration::from_secs(10));
    w.await.unwrap();
    wait_verified(&b, Duration::from_secs(60)).await;
    assert!(b.log().contains("elected"));
    let _ = e.status().await;
    b.term();
    pg_cleanup(&name, &[&name], &name).await;
}

/// A delete while the tool is down, then the slot disappears (as on a new primary): the tool
/// re-dumps and removes the keys of rows that no longer exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_lost_slot_redump_removes_stale_keys() {
    if skip("pg_lost_slot_redump_removes_stale_keys") {
        return;
    }
    let name = unique("lost");
    let c = pg("testdb").await;
    let _ = etcd().await;
    workload_schema(&c, &name).await;
    let dir = tmpdir(&name);
    let include = format!("{name}.*");
    let yaml = pg_config(&name, &name, &[&include], "");
    let mut tool = Tool::new(&dir, "tool", &yaml);
    tool.start();
    wait_streaming(
        &format!("/sync-tool/{name}"),
        Duration::from_secs(60),
        &mut tool,
    )
    .await;
    tool.term();
    c.batch_execute(&format!(
        "DELETE FROM {name}.w WHERE id <= 100; UPDATE {name}.w SET v = -1 WHERE id = 200;"
    ))
    .await
    .unwrap();
    c.execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await
        .unwrap();
    tool.start();
    wait_verified(&tool, Duration::from_secs(60)).await;
    let got = etcd_map(&mut etcd().await, &format!("/{name}/")).await;
    assert!(
        !got.contains_key(&format!("{name}.w/5")) && got.contains_key(&format!("{name}.w/101")),
        "the deleted row's key is gone"
    );
    assert!(tool.log().contains("slot is missing"), "{}", tool.log());
    tool.term();
    pg_cleanup(&name, &[&name], &name).await;
}
