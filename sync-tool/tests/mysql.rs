//! MariaDB 10.11 → etcd 3.4 integration tests against the real services on loopback.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Dump + stream equality on a mixed schema: two databases, every mapped type (exact JSON
/// asserted after the dump and after the stream), composite keys with '/' and ',', a
/// transaction larger than etcd's 128-operation limit, a primary-key change, deletes,
/// TRUNCATE, ALTER TABLE ADD/DROP COLUMN mid-stream (rows decoded with the schema of their
/// position). The end state must equal a fresh `--dump-only` of the source exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_dump_stream_equality_mixed_schema() {
    if skip("mysql_dump_stream_equality_mixed_schema") {
        return;
    }
    let name = unique("mymixed");
    let (da, db) = (format!("{name}_a"), format!("{name}_b"));
    let mut c = my().await;
    let mut e = etcd().await;
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {da};
             CREATE DATABASE {db};
             CREATE TABLE {da}.types (id BIGINT UNSIGNED PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT,
                i INT, bi BIGINT, f FLOAT, d DOUBLE, dec1 DECIMAL(30,10), dec2 DECIMAL(5,2), c CHAR(5), vc VARCHAR(20),
                tx TEXT, bin VARBINARY(10), bl BLOB, bfix BINARY(4), e ENUM('sad','happy','x,y'), s SET('a','b','c'),
                b1 BIT(1), b10 BIT(10), j JSON, dt DATE, dtm DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(3), y YEAR);
             CREATE TABLE {db}.comp (k1 INT, k2 VARCHAR(20), v TEXT, PRIMARY KEY (k1, k2));
             CREATE TABLE {da}.trunc (id INT PRIMARY KEY, v VARCHAR(10));
             INSERT INTO {da}.types VALUES (18446744073709551615, -128, 65535, -8388608, -2147483648, -9223372036854775808,
                0.1, 1.5e300, 12345678901234567890.0123456789, -0.5, 'ab', 'hé \"q\"', 'long', 0x00ff10, 0x0102, 'ab',
                'happy', 'a,c', b'1', b'1000000010', '{{\"a\": [1, 2]}}', '2024-02-29', '2024-01-02 03:04:05.123456',
                '2024-01-02 03:04:05.5', '-26:03:04.25', 2024);
             INSERT INTO {da}.types (id) VALUES (2);
             INSERT INTO {db}.comp SELECT seq, CONCAT('k/', seq, ',x'), CONCAT('v', seq) FROM {da}.seq_1_to_50;
             INSERT INTO {da}.trunc SELECT seq, 'old' FROM {da}.seq_1_to_20"
        ),
    )
    .await;
    let include = [format!("{da}.*"), format!("{db}.*")];
    let include: Vec<&str> = include.iter().map(String::as_str).collect();
    let dir = tmpdir(&name);
    let mut tool = Tool::new(&dir, "tool", &my_config(&name, &include, ""));
    tool.start();
    let state = format!("/sync-tool/{name}");
    wait_streaming(&state, Duration::from_secs(60), &mut tool).await;

    let expect1 = json!({"id": 18446744073709551615u64, "ti": -128, "si": 65535, "mi": -8388608, "i": -2147483648i64,
        "bi": i64::MIN, "f": 0.1, "d": 1.5e300, "dec1": "12345678901234567890.0123456789", "dec2": "-0.50", "c": "ab",
        "vc": "hé \"q\"", "tx": "long", "bin": "AP8Q", "bl": "AQI=", "bfix": "YWIAAA==", "e": "happy", "s": ["a", "c"],
        "b1": true, "b10": "1000000010", "j": {"a": [1, 2]}, "dt": "2024-02-29", "dtm": "2024-01-02T03:04:05.123456",
        "ts": "2024-01-02T03:04:05.5Z", "tm": "-26:03:04.25", "y": 2024});
    let m = etcd_map(&mut e, &format!("/{name}/")).await;
    let k1 = format!("{da}.types/18446744073709551615");
    assert_eq!(m.get(&k1), Some(&expect1), "dump row: {:?}", m.get(&k1));
    assert_eq!(m[&format!("{da}.types/2")]["e"], json!(null));
    assert!(
        m.contains_key(&format!("{db}.comp/7,k%2F7%2Cx")),
        "composite key encoding: {:?}",
        m.keys().take(5).collect::<Vec<_>>()
    );
    assert_eq!(m.len(), 2 + 50 + 20);

    // stream: the same row re-written by an update must serialize identically (except vc)
    my_exec(
        &mut c,
        &format!(
            "UPDATE {da}.types SET vc = 'upd' WHERE id = 18446744073709551615;
             INSERT INTO {da}.types VALUES (3, 127, 0, 8388607, 2147483647, 9223372036854775807, -3.25, -0.0001,
                -0.0000000001, 999.99, 'x', '', '', '', '', 0x01, 'x,y', '', b'0', b'0000000001', '[1, \"two\", null]',
                '1999-12-31', '1999-12-31 23:59:59', '2038-01-19 03:14:07.999', '838:59:59', 1999);
             UPDATE {da}.types SET e = 'sad', s = 'b,c', ts = '1970-01-01 00:00:01', j = '{{}}' WHERE id = 2"
        ),
    )
    .await;
    let k3 = format!("{da}.types/3");
    let expect3 = json!({"id": 3, "ti": 127, "si": 0, "mi": 8388607, "i": 2147483647, "bi": i64::MAX, "f": -3.25,
        "d": -0.0001, "dec1": "-0.0000000001", "dec2": "999.99", "c": "x", "vc": "", "tx": "", "bin": "", "bl": "",
        "bfix": "AQAAAA==", "e": "x,y", "s": [], "b1": false, "b10": "0000000001", "j": [1, "two", null], "dt": "1999-12-31",
        "dtm": "1999-12-31T23:59:59", "ts": "2038-01-19T03:14:07.999Z", "tm": "838:59:59", "y": 1999});
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = etcd_map(&mut e, &format!("/{name}/")).await;
        if m.contains_key(&k3) && m[&k1]["vc"] == json!("upd") {
            let mut want1 = expect1.clone();
            want1["vc"] = json!("upd");
            assert_eq!(m[&k1], want1, "row after update");
            assert_eq!(m[&k3], expect3, "streamed row");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stream did not deliver:\n{}",
            tool.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // big transaction, PK change, deletes, truncate, ALTER mid-stream
    my_exec(
        &mut c,
        &format!(
            "START TRANSACTION;
             INSERT INTO {db}.comp SELECT 1000 + seq, 'big/x', REPEAT('z', 100) FROM {da}.seq_1_to_300;
             UPDATE {db}.comp SET v = 'changed' WHERE k1 <= 10;
             DELETE FROM {db}.comp WHERE k1 BETWEEN 11 AND 15;
             UPDATE {db}.comp SET k2 = 'moved,/' WHERE k1 = 20;
             COMMIT;
             TRUNCATE TABLE {da}.trunc;
             INSERT INTO {da}.trunc VALUES (100, 'new'), (101, 'new');
             ALTER TABLE {db}.comp ADD COLUMN n2 VARCHAR(10) NULL AFTER k1, ADD COLUMN e2 ENUM('p','q') NULL FIRST;
             INSERT INTO {db}.comp (k1, k2, v, n2, e2) VALUES (5000, 'after-alter', 'v', 'n2', 'q');
             UPDATE {db}.comp SET n2 = 'set' WHERE k1 = 1;
             ALTER TABLE {da}.types DROP COLUMN tx, ADD COLUMN j2 JSON NULL;
             UPDATE {da}.types SET j2 = '{{\"k\": true}}', vc = 'after' WHERE id = 3;
             INSERT INTO {da}.types (id, j2, e) VALUES (4, '[]', 'sad');
             DELETE FROM {da}.types WHERE id = 2"
        ),
    )
    .await;
    let path2 = format!("{name}ref");
    let expected = dump_only(&dir, &my_config(&path2, &include, ""), &path2).await;
    assert_eq!(expected.len(), 3 + 50 + 300 - 5 + 1 + 2);
    assert_eq!(
        expected[&format!("{db}.comp/5000,after-alter")],
        json!({"e2": "q", "k1": 5000, "n2": "n2", "k2": "after-alter", "v": "v"})
    );
    assert_eq!(expected[&format!("{da}.types/3")]["j2"], json!({"k": true}));
    wait_equal(&name, &expected, Duration::from_secs(60), &|| tool.log()).await;
    // the stored rows follow the table's current column order too
    let m = etcd_map(&mut e, &format!("/{name}/")).await;
    let keys: Vec<&String> = m[&format!("{db}.comp/1,k%2F1%2Cx")]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["e2", "k1", "n2", "k2", "v"]);
    tool.term();
    my_cleanup(&[&da, &db], &name).await;
}

/// Crash safety: ≥ 10k row changes in random transactions on two tables (one with a composite
/// key) while the tool is `kill -9`ed 6 times at random moments and restarted; every restart
/// resumes from the checkpoint (no re-dump) and etcd ends equal to the source exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_crash_kill9_during_workload() {
    use rand::Rng;
    if skip("mysql_crash_kill9_during_workload") {
        return;
    }
    let name = unique("mycrash");
    let mut c = my().await;
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {name};
             CREATE TABLE {name}.t1 (id INT PRIMARY KEY, v INT, s VARCHAR(40));
             CREATE TABLE {name}.t2 (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b));
             INSERT INTO {name}.t1 SELECT seq, seq, 'init' FROM {name}.seq_1_to_500"
        ),
    )
    .await;
    let dir = tmpdir(&name);
    let include = format!("{name}.*");
    let mut tool = Tool::new(
        &dir,
        "tool",
        &my_config(&name, &[&include], "  max_txn_ops: 16\n"),
    );
    tool.start();
    wait_streaming(
        &format!("/sync-tool/{name}"),
        Duration::from_secs(60),
        &mut tool,
    )
    .await;

    let writer = {
        let name = name.clone();
        tokio::spawn(async move {
            let mut c = my().await;
            let mut changes = 0usize;
            let mut next_id = 1000;
            let mut txn = 0;
            while changes < 10_500 {
                txn += 1;
                let (n_ins, n_upd) = {
                    let mut r = rand::thread_rng();
                    (r.gen_range(10..60), r.gen_range(1..40))
                };
                let lo = next_id;
                next_id += n_ins;
                my_exec(
                    &mut c,
                    &format!(
                        "START TRANSACTION;
                         INSERT INTO {name}.t1 SELECT seq, seq, CONCAT('txn', {txn}) FROM {name}.seq_{lo}_to_{hi};
                         UPDATE {name}.t1 SET v = v + 1, s = 'upd{txn}' WHERE id % 97 = {m} LIMIT {n_upd};
                         DELETE FROM {name}.t1 WHERE id % 89 = {m} LIMIT 3;
                         INSERT INTO {name}.t2 SELECT seq, CONCAT('b/', seq % 7), {txn} FROM {name}.seq_{lo}_to_{hi2} ON DUPLICATE KEY UPDATE v = v + 1;
                         COMMIT",
                        hi = next_id - 1,
                        hi2 = lo + n_ins / 2,
                        m = txn % 89,
                    ),
                )
                .await;
                changes += n_ins + n_upd + 3 + n_ins / 2;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            changes
        })
    };
    let mut kills = 0;
    while !writer.is_finished() || kills < 6 {
        let ms = rand::thread_rng().gen_range(300..1500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        tool.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(50..400))).await;
        tool.start();
        // the new instance waits for the killed one's lease (2 s) before it resumes
        let deadline = Instant::now() + Duration::from_secs(20);
        while tool.log().matches("resuming from checkpoint").count() < kills
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if kills > 30 {
            break;
        }
    }
    let changes = writer.await.unwrap();
    assert!(changes >= 10_000);
    wait_verified(&tool, Duration::from_secs(120)).await;
    let log = tool.log();
    let resumes = log.matches("resuming from checkpoint").count();
    assert!(
        kills >= 6 && resumes >= 5,
        "kills {kills}, resumes {resumes}"
    );
    assert_eq!(
        log.matches("dump: snapshot taken").count(),
        1,
        "a restart re-dumped"
    );
    let keys = etcd_map(&mut etcd().await, &format!("/{name}/"))
        .await
        .len();
    println!("{changes} row changes, {kills} kills, {resumes} resumes, {keys} keys");
    tool.term();
    my_cleanup(&[&name], &name).await;
}
