//! contrail's configuration files, used unchanged: files of our own in the shape of
//! contrail's samples (`tests/contrail/`: the Watcher's, the Sync service's, the whole-process
//! file, the MySQL-era Sync file) run the tool against the real PostgreSQL / MariaDB / etcd and
//! sync; the notices name what is ignored; a key neither sync-tool nor contrail knows is still
//! an error naming it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn render(file: &str, vars: &[(&str, &str)]) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/contrail")
        .join(file);
    let mut text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    for (k, v) in vars {
        text = text.replace(k, v);
    }
    text
}

async fn pg_admin(db: &str) -> tokio_postgres::Client {
    let conn = format!("host=127.0.0.1 port={PG_PORT} user=postgres password=postgres dbname={db} connect_timeout=5");
    let (c, conn) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL superuser (tests/services/up.sh)");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// The slot contrail's files imply (`sync_service`), dropped once no tool holds it.
async fn drop_default_slot(db: &str) {
    let c = pg_admin(db).await;
    for _ in 0..100 {
        let _ = c
            .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'sync_service' AND NOT active", &[])
            .await;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'sync_service'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("slot sync_service is still held by a tool");
}

async fn clear_path(path: &str) {
    let mut e = etcd().await;
    etcd_clear(&mut e, &format!("/{path}/")).await;
    etcd_clear(&mut e, &format!("/sync-tool/{path}/")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contrail_files_sync_postgres() {
    if skip("contrail_files_sync_postgres") {
        return;
    }
    let db = unique("ctrpg");
    let dir = tmpdir(&db);
    pg_admin("testdb")
        .await
        .batch_execute(&format!("CREATE DATABASE {db} OWNER repl"))
        .await
        .unwrap();
    let c = pg(&db).await;
    c.batch_execute(
        "CREATE TABLE virtual_network (uuid text PRIMARY KEY, name text, mtu int);
         CREATE TABLE project (uuid text PRIMARY KEY, fq_name text[]);
         INSERT INTO virtual_network SELECT 'vn-' || i, 'net ' || i, 1500 FROM generate_series(1, 50) i;
         INSERT INTO project VALUES ('p-1', '{default-domain,admin}')",
    )
    .await
    .unwrap();
    let whole = unique("ctrpath");
    let port = PG_PORT.to_string();
    // (file, etcd.path it implies, what its start-up log must say)
    let cases = [
        ("sync.yml", "contrail", vec!["ignoring keys of contrail's configuration that mean nothing to sync-tool: database.dialect"]),
        ("watcher.yml", "contrail", vec![]),
        (
            "contrail_postgres.yml",
            whole.as_str(),
            vec![
                "ignoring the sections of other contrail services: server, keystone, agent, cache, compilation, client, homepage, no_auth, insecure, replication, cassandra, amqp",
                "ignoring keys of contrail's configuration that mean nothing to sync-tool: database.dialect, database.max_open_conn, database.debug, etcd.grpc_insecure, sync.enabled",
            ],
        ),
    ];
    for (round, (file, path, notices)) in cases.iter().enumerate() {
        clear_path(path).await;
        drop_default_slot(&db).await;
        let yaml = render(
            file,
            &[("__DB__", &db), ("__PG_PORT__", &port), ("__PATH__", path)],
        );
        // the file is accepted as it is, and says what it ignores
        let cfg = dir.join(file);
        std::fs::write(&cfg, &yaml).unwrap();
        let out = Command::new(BIN)
            .arg("-c")
            .arg(&cfg)
            .arg("--check-config")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        for n in notices {
            assert!(
                stdout.contains(n),
                "{file}: notice {n:?} missing in\n{stdout}"
            );
        }
        let mut tool = Tool::new(&dir, &format!("run{round}"), &yaml);
        tool.start();
        wait_streaming(
            &format!("/sync-tool/{path}"),
            Duration::from_secs(60),
            &mut tool,
        )
        .await;
        c.batch_execute(&format!(
            "INSERT INTO virtual_network VALUES ('vn-new-{round}', 'streamed', 9000);
             UPDATE virtual_network SET mtu = mtu + {round} + 1 WHERE uuid = 'vn-1';
             DELETE FROM virtual_network WHERE uuid = 'vn-{}';
             UPDATE project SET fq_name = fq_name || 'r{round}'::text",
            round + 2
        ))
        .await
        .unwrap();
        // `verify` reads the contrail file too
        wait_verified(&tool, Duration::from_secs(60)).await;
        let got = etcd_map(&mut etcd().await, &format!("/{path}/")).await;
        assert_eq!(
            got[&format!("virtual_network/vn-new-{round}")]["mtu"],
            9000,
            "{got:?}"
        );
        assert!(!got.contains_key(&format!("virtual_network/vn-{}", round + 2)));
        let log = tool.log();
        for n in notices {
            assert!(log.contains(n), "{file}: notice {n:?} not logged:\n{log}");
        }
        if *file != "contrail_postgres.yml" {
            // no log_level in the file: the original's default (debug)
            assert!(
                log.contains("log_level=debug"),
                "{file}: debug logging expected:\n{log}"
            );
        }
        tool.term();
        clear_path(path).await;
    }
    drop_default_slot(&db).await;
    drop(c);
    pg_admin("testdb")
        .await
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contrail_mysql_sync_file_syncs_mariadb() {
    if skip("contrail_mysql_sync_file_syncs_mariadb") {
        return;
    }
    let db = unique("ctrmy");
    let dir = tmpdir(&db);
    let mut c = my().await;
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {db};
             CREATE TABLE {db}.virtual_network (uuid VARCHAR(40) PRIMARY KEY, name TEXT, mtu INT);
             INSERT INTO {db}.virtual_network SELECT concat('vn-', seq), concat('net ', seq), 1500 FROM {db}.seq_1_to_40"
        ),
    )
    .await;
    let path = db.as_str();
    let yaml = render(
        "sync_mysql.yml",
        &[
            ("__DB__", &db),
            ("__MY_PORT__", &MY_PORT.to_string()),
            ("__PATH__", path),
        ],
    );
    let mut tool = streaming_tool(&dir, path, &yaml).await;
    my_exec(
        &mut c,
        &format!(
            "INSERT INTO {db}.virtual_network VALUES ('vn-new', 'streamed', 9000);
             UPDATE {db}.virtual_network SET mtu = 1400 WHERE uuid = 'vn-1';
             DELETE FROM {db}.virtual_network WHERE uuid = 'vn-2'"
        ),
    )
    .await;
    let reference = format!("{db}ref");
    let ref_yaml = format!(
        "database: {{type: mysql, host: 127.0.0.1, port: {MY_PORT}, user: repl, password: replpass, name: {db}}}\n\
         etcd: {{endpoints: [\"{ETCD}\"], path: {reference}}}\n"
    );
    let expected = dump_only(&dir, &ref_yaml, &reference).await;
    assert_eq!(expected.len(), 40);
    wait_equal(path, &expected, Duration::from_secs(60), &|| tool.log()).await;
    tool.term();
    clear_path(path).await;
    drop(c);
    my_cleanup(&[&db], &reference).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Typo protection stays: a key that neither sync-tool nor contrail knows is an error (exit 2)
/// naming it, in a contrail file as anywhere.
#[test]
fn contrail_file_with_a_typo_is_refused() {
    let dir = tmpdir(&unique("ctrtypo"));
    let base = render(
        "contrail_postgres.yml",
        &[("__DB__", "d"), ("__PG_PORT__", "5432"), ("__PATH__", "p")],
    );
    for (from, to) in [
        ("keystone:", "kestone:"),
        ("  max_open_conn:", "  max_open_con:"),
        ("  grpc_insecure:", "  grpc_insecur:"),
    ] {
        let cfg = dir.join("typo.yml");
        std::fs::write(&cfg, base.replacen(from, to, 1)).unwrap();
        let out = Command::new(BIN)
            .arg("-c")
            .arg(&cfg)
            .arg("--check-config")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{to}: {err}");
        assert!(err.contains(to.trim().trim_end_matches(':')), "{to}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
