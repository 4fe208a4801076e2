//! Table selection changes while the tool has a checkpoint, against the real PostgreSQL,
//! MariaDB and etcd: a table added to `include` is copied by an incremental snapshot while the
//! stream of the other tables goes on (writes to every table, also to rows of chunks not yet
//! read and already read, during the snapshot; a `kill -9` in the middle of one), never a
//! re-dump; a removed table's keys are deleted, or kept with `sync.on_table_removed: keep`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;

/// Rows of each added table: enough for many chunks of `snapshot_chunk: 100`.
const ROWS: u64 = 20_000;

/// Keys of inserted rows and new primary keys: above the initial rows, never reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(1_000_000);

#[derive(Clone, Copy, PartialEq)]
enum Db {
    Pg,
    My,
}

/// One connection to the source; `sql`: statements separated by ";\n".
enum Conn {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

impl Conn {
    async fn open(db: Db) -> Conn {
        match db {
            Db::Pg => Conn::Pg(pg("testdb").await),
            Db::My => Conn::My(my().await),
        }
    }
    async fn exec(&mut self, sql: &str) {
        match self {
            Conn::Pg(c) => c
                .batch_execute(&sql.replace(";\n", ";"))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Conn::My(c) => my_exec(c, sql).await,
        }
    }
    async fn txn(&mut self, stmts: &[String]) {
        let begin = match self {
            Conn::Pg(_) => "BEGIN",
            Conn::My(_) => "START TRANSACTION",
        };
        self.exec(&format!("{begin};\n{};\nCOMMIT", stmts.join(";\n")))
            .await;
    }
}

fn create_table(db: Db, schema: &str, t: &str, rows: u64) -> String {
    let fill = match db {
        Db::Pg => {
            format!("INSERT INTO {schema}.{t} SELECT g, 'v' || g FROM generate_series(1, {rows}) g")
        }
        Db::My => format!(
            "INSERT INTO {schema}.{t} SELECT seq, CONCAT('v', seq) FROM {schema}.seq_1_to_{rows}"
        ),
    };
    format!("CREATE TABLE {schema}.{t} (id BIGINT PRIMARY KEY, v VARCHAR(40));\n{fill}")
}

/// Random transactions on every table of `tables` until `stop`: updates, deletes and primary-key
/// changes of rows anywhere in the key range (chunks read and not yet read), inserts after it.
fn writer(
    db: Db,
    schema: String,
    tables: Vec<&'static str>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = Conn::open(db).await;
        while !stop.load(Ordering::Relaxed) {
            let mut stmts = Vec::new();
            for _ in 0..rand::thread_rng().gen_range(1..6) {
                let (t, id, pick) = {
                    let mut r = rand::thread_rng();
                    (
                        tables[r.gen_range(0..tables.len())],
                        r.gen_range(1..=ROWS),
                        r.gen_range(0..10),
                    )
                };
                let next = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                stmts.push(match pick {
                    0..=4 => format!("UPDATE {schema}.{t} SET v = 'u{next}' WHERE id = {id}"),
                    5 | 6 => format!("DELETE FROM {schema}.{t} WHERE id = {id}"),
                    7 => format!("UPDATE {schema}.{t} SET id = {next} WHERE id = {id}"),
                    _ => format!("INSERT INTO {schema}.{t} (id, v) VALUES ({next}, 'n{next}')"),
                });
            }
            c.txn(&stmts).await;
            ops.fetch_add(stmts.len() as u64, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

fn config(db: Db, name: &str, include: &[String], extra: &str) -> String {
    let include: Vec<&str> = include.iter().map(String::as_str).collect();
    let extra = format!("  snapshot_chunk: 100\n  max_txn_ops: 32\n{extra}");
    match db {
        Db::Pg => pg_config(name, name, &include, &extra),
        Db::My => my_config(name, &include, &extra),
    }
}

async fn wait_log(tool: &mut Tool, what: &str, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while tool.log().matches(what).count() < n {
        if let Some(st) = tool.exited() {
            panic!("sync-tool exited ({st}):\n{}", last_lines(&tool.log(), 40));
        }
        assert!(
            Instant::now() < deadline,
            "no {what:?} in the log:\n{}",
            last_lines(&tool.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn keys(prefix: &str) -> usize {
    let mut e = etcd().await;
    etcd_map(&mut e, prefix).await.len()
}

async fn scenario(db: Db) {
    let name = unique(match db {
        Db::Pg => "pgsel",
        Db::My => "mysel",
    });
    let schema = name.clone();
    let mut c = Conn::open(db).await;
    let create = match db {
        Db::Pg => format!("CREATE SCHEMA {schema}"),
        Db::My => format!("CREATE DATABASE {schema}"),
    };
    c.exec(&format!(
        "{create};\n{};\n{};\n{};\n{}",
        create_table(db, &schema, "a", 300),
        create_table(db, &schema, "b", 300),
        create_table(db, &schema, "c", ROWS),
        create_table(db, &schema, "d", ROWS),
    ))
    .await;
    let t = |n: &str| format!("{schema}.{n}");
    let dir = tmpdir(&name);
    let state = format!("/sync-tool/{name}");

    // a, b synced, then stopped
    let mut tool = Tool::new(&dir, "tool", &config(db, &name, &[t("a"), t("b")], ""));
    tool.start();
    wait_streaming(&state, Duration::from_secs(60), &mut tool).await;
    wait_verified(&tool, Duration::from_secs(60)).await;
    tool.term();
    let dumps = tool.log().matches("dump: table started").count();
    assert_eq!(dumps, 2, "{}", tool.log());

    // c added: snapshotted while a, b and c are written to
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let w = writer(
        db,
        schema.clone(),
        vec!["a", "b", "c"],
        stop.clone(),
        ops.clone(),
    );
    std::fs::write(&tool.cfg, config(db, &name, &[t("a"), t("b"), t("c")], "")).unwrap();
    tool.start();
    wait_log(
        &mut tool,
        "incremental snapshot: table started",
        1,
        Duration::from_secs(60),
    )
    .await;
    let before = ops.load(Ordering::Relaxed);
    wait_log(
        &mut tool,
        "incremental snapshot: table done",
        1,
        Duration::from_secs(120),
    )
    .await;
    let during = ops.load(Ordering::Relaxed) - before;
    assert!(during > 20, "only {during} row changes during the snapshot");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    wait_verified(&tool, Duration::from_secs(60)).await;
    assert_eq!(
        tool.log().matches("dump: table started").count(),
        dumps,
        "re-dumped:\n{}",
        tool.log()
    );
    let cp = read_checkpoint(&state).await;
    assert!(cp.get("snapshot").is_none(), "snapshot left in {cp}");
    tool.term();

    // d added; kill -9 in the middle of its snapshot, restart: it resumes
    stop.store(false, Ordering::Relaxed);
    let w = writer(
        db,
        schema.clone(),
        vec!["a", "c", "d"],
        stop.clone(),
        ops.clone(),
    );
    let all = [t("a"), t("b"), t("c"), t("d")];
    std::fs::write(&tool.cfg, config(db, &name, &all, "")).unwrap();
    tool.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cp = read_checkpoint(&state).await;
        if cp["snapshot"]["cursor"].is_array() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot progress: {cp}\n{}",
            last_lines(&tool.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tool.kill9();
    let cp = read_checkpoint(&state).await;
    tool.start();
    wait_log(
        &mut tool,
        "incremental snapshot: table done",
        2,
        Duration::from_secs(120),
    )
    .await;
    let log = tool.log();
    assert!(
        log.contains("incremental snapshot: table resumed"),
        "not resumed after kill -9 (checkpoint {cp}):\n{}",
        last_lines(&log, 40)
    );
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    wait_verified(&tool, Duration::from_secs(60)).await;
    assert_eq!(log.matches("dump: table started").count(), dumps);
    tool.term();

    // b removed: its keys go; then a removed with `keep`: its keys stay
    let b_keys = format!("/{name}/{schema}.b/");
    let a_keys = format!("/{name}/{schema}.a/");
    assert!(keys(&b_keys).await > 0);
    std::fs::write(&tool.cfg, config(db, &name, &[t("a"), t("c"), t("d")], "")).unwrap();
    tool.start();
    wait_log(&mut tool, "deleting its keys", 1, Duration::from_secs(60)).await;
    wait_verified(&tool, Duration::from_secs(60)).await;
    assert_eq!(
        keys(&b_keys).await,
        0,
        "keys of the removed table b are left"
    );
    tool.term();
    let a_count = keys(&a_keys).await;
    assert!(a_count > 0);
    std::fs::write(
        &tool.cfg,
        config(db, &name, &[t("c"), t("d")], "  on_table_removed: keep\n"),
    )
    .unwrap();
    tool.start();
    wait_log(&mut tool, "its keys are kept", 1, Duration::from_secs(60)).await;
    wait_verified(&tool, Duration::from_secs(60)).await;
    assert_eq!(keys(&a_keys).await, a_count, "keys of a were not kept");
    let log = tool.log();
    assert_eq!(log.matches("dump: table started").count(), dumps, "{log}");
    tool.term();

    match db {
        Db::Pg => pg_cleanup(&name, &[&schema], &name).await,
        Db::My => my_cleanup(&[&schema], &name).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_added_table_incremental_snapshot() {
    if skip("mysql_added_table_incremental_snapshot") {
        return;
    }
    scenario(Db::My).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_added_table_incremental_snapshot() {
    if skip("pg_added_table_incremental_snapshot") {
        return;
    }
    scenario(Db::Pg).await;
}

#[test]
fn on_table_removed_is_validated() {
    let dir = tmpdir("on_table_removed");
    let cfg = dir.join("c.yml");
    std::fs::write(
        &cfg,
        config(Db::Pg, "x", &["s.t".into()], "  on_table_removed: drop\n"),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("-c")
        .arg(&cfg)
        .arg("--check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("on_table_removed") && err.contains("drop"),
        "{err}"
    );
}
