//! Writes a made-up mirror export for `make bench-report`: a realistic mix of query classes
//! (point and range reads, IN lists of varying length, multi-row inserts, updates, other
//! commands), sessions of a few dozen statements, per-class latencies with a long tail, a
//! compared target that is slower on some classes and differs on a few, a baseline that
//! differs only on the non-deterministic classes, and the odd invalid line.
//!
//! `cargo run --release -p mirror-report --features bench-generator --bin gen-export -- LINES [--baseline] > export.jsonl`

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::io::{BufWriter, Write};

/// What a class's statements look like and how the targets answer them.
struct Template {
    command: &'static str,
    /// SQL with `{n}` (a number), `{t}` (one of 16 table numbers), `{s}` (a string) and `{in}`
    /// (an IN list) placeholders.
    sql: &'static str,
    weight: u32,
    /// Typical main latency (ms); the tail is up to 20× that.
    ms: f64,
    /// The compared target's latency over main's.
    slower: f64,
    /// Share of statements where the compared target answers differently, and how.
    conflict: f64,
    how: How,
    /// Differs on every server each time (NOW(), UUID()): the baseline differs too.
    noisy: bool,
    rows: u64,
}

#[derive(Clone, Copy)]
enum How {
    Data,
    Rows,
    ErrorOnNew,
    Warnings,
}

const fn t(command: &'static str, sql: &'static str, weight: u32, ms: f64) -> Template {
    Template {
        command,
        sql,
        weight,
        ms,
        slower: 1.0,
        conflict: 0.0,
        how: How::Data,
        noisy: false,
        rows: 1,
    }
}

fn templates() -> Vec<Template> {
    let mut v = vec![
        t("COM_QUERY", "SELECT c, pad FROM sbtest{t} WHERE id = {n}", 300, 0.6),
        t("COM_QUERY", "SELECT name, email FROM users WHERE id = {n}", 200, 0.5),
        t("COM_QUERY", "SELECT * FROM orders WHERE customer_id = {n} ORDER BY created DESC LIMIT 20", 80, 2.0),
        t("COM_QUERY", "SELECT id, status FROM orders WHERE id IN ({in})", 60, 1.2),
        t("COM_QUERY", "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN {n} AND {n}", 40, 3.0),
        t("COM_QUERY", "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN {n} AND {n} ORDER BY c", 30, 4.0),
        t("COM_QUERY", "UPDATE sbtest1 SET k = k + 1 WHERE id = {n}", 50, 1.5),
        t("COM_QUERY", "UPDATE users SET last_login = '{s}' WHERE id = {n}", 40, 1.2),
        t("COM_QUERY", "INSERT INTO events (user_id, kind, payload) VALUES ({n}, '{s}', '{s}'), ({n}, '{s}', '{s}')", 40, 2.5),
        t("COM_QUERY", "DELETE FROM sessions WHERE expires < '{s}'", 10, 8.0),
        t("COM_QUERY", "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = {n}", 40, 1.8),
        t("COM_QUERY", "SELECT COUNT(*) FROM orders WHERE status = '{s}'", 15, 25.0),
        t("COM_QUERY", "BEGIN", 30, 0.2),
        t("COM_QUERY", "COMMIT", 30, 0.8),
        t("COM_QUERY", "SET autocommit = 1", 10, 0.1),
        t("COM_QUERY", "SELECT @@version_comment LIMIT 1", 5, 0.1),
        t("COM_PING", "", 20, 0.1),
        t("COM_INIT_DB", "", 5, 0.1),
        t("COM_STMT_PREPARE", "SELECT c FROM sbtest1 WHERE id = ?", 10, 0.3),
    ];
    // The differences an upgrade check is for.
    v.push(Template {
        slower: 3.0,
        ..t(
            "COM_QUERY",
            "SELECT * FROM reports WHERE day >= '{s}' GROUP BY region",
            8,
            40.0,
        )
    });
    v.push(Template {
        conflict: 0.3,
        how: How::Rows,
        ..t(
            "COM_QUERY",
            "SELECT id FROM tags WHERE name LIKE '{s}%'",
            10,
            1.0,
        )
    });
    v.push(Template {
        conflict: 1.0,
        how: How::ErrorOnNew,
        ..t(
            "COM_QUERY",
            "SELECT * FROM legacy_audit WHERE id = {n}",
            3,
            0.8,
        )
    });
    v.push(Template {
        conflict: 1.0,
        how: How::Warnings,
        ..t(
            "COM_QUERY",
            "INSERT INTO codes (code) VALUES ('{s}')",
            5,
            1.0,
        )
    });
    v.push(Template {
        conflict: 0.05,
        how: How::Data,
        ..t(
            "COM_QUERY",
            "SELECT price * {n} FROM products WHERE id = {n}",
            20,
            0.7,
        )
    });
    v.push(Template {
        conflict: 1.0,
        noisy: true,
        ..t("COM_QUERY", "SELECT NOW(), {n}", 10, 0.2)
    });
    v.push(Template {
        conflict: 1.0,
        noisy: true,
        ..t(
            "COM_QUERY",
            "INSERT INTO tokens VALUES (UUID(), {n})",
            5,
            1.0,
        )
    });
    v.push(Template {
        slower: 1.4,
        rows: 20,
        ..t(
            "COM_QUERY",
            "SELECT * FROM sbtest1 WHERE id BETWEEN {n} AND {n} LIMIT 20",
            40,
            2.2,
        )
    });
    v
}

fn fill(sql: &str, rng: &mut SmallRng, out: &mut String) {
    let mut rest = sql;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').map_or(rest.len(), |e| at + e + 1);
        match &rest[at..end] {
            "{n}" => out.push_str(&rng.gen_range(1..1_000_000u32).to_string()),
            "{t}" => out.push_str(&rng.gen_range(1..=16u32).to_string()),
            "{s}" => {
                for _ in 0..rng.gen_range(4..16) {
                    out.push(rng.gen_range(b'a'..=b'z') as char);
                }
            }
            "{in}" => {
                for i in 0..rng.gen_range(1..12) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&rng.gen_range(1..100_000u32).to_string());
                }
            }
            other => out.push_str(other),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
}

/// A latency around `typical` ms with a long tail, in whole ms as the mirror reports it.
fn latency(rng: &mut SmallRng, typical: f64) -> u64 {
    let tail: f64 = if rng.gen_bool(0.02) {
        rng.gen_range(3.0..20.0)
    } else {
        rng.gen_range(0.5..1.6)
    };
    (typical * tail).round() as u64
}

fn result(
    o: &mut String,
    target: &str,
    checksum: u32,
    rows: u64,
    warnings: u32,
    ms: u64,
    kind: &str,
) {
    use std::fmt::Write;
    let _ = write!(
        o,
        r#"{{"target":"{target}","checksum":"{checksum:08x}","rows":{rows},"warnings":{warnings},"duration":{ms},"type":"{kind}"}}"#
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let lines: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: gen_export LINES [--baseline]");
    let baseline = args.next().as_deref() == Some("--baseline");
    let ts = templates();
    let total_weight: u32 = ts.iter().map(|t| t.weight).sum();
    let mut rng = SmallRng::seed_from_u64(14);
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let (mut session, mut query_id, mut left_in_session) = (1u64, 0u64, 0u32);
    let mut sql = String::new();
    let mut line = String::new();
    for n in 0..lines {
        if n % 250_000 == 17 {
            writeln!(out, "{{\"query\":\"SELECT 1\",\"command\":\"COM_QU").unwrap(); // a line cut short
            continue;
        }
        if left_in_session == 0 {
            session += 1;
            query_id = 0;
            left_in_session = rng.gen_range(5..60);
        }
        left_in_session -= 1;
        query_id += 1;
        let mut pick = rng.gen_range(0..total_weight);
        let tpl = ts
            .iter()
            .find(|t| {
                pick < t.weight || {
                    pick -= t.weight;
                    false
                }
            })
            .expect("weights add up");
        sql.clear();
        fill(tpl.sql, &mut rng, &mut sql);
        let checksum: u32 = rng.gen();
        let main_ms = latency(&mut rng, tpl.ms);
        let new_ms = (main_ms as f64 * tpl.slower * rng.gen_range(0.9..1.1)).round() as u64;
        let differs = tpl.conflict > 0.0 && rng.gen_bool(tpl.conflict);
        let kind = if tpl.rows > 1 || tpl.sql.starts_with("SELECT") {
            "resultset"
        } else {
            "ok"
        };
        line.clear();
        line.push_str(r#"{"query":""#);
        line.push_str(&sql);
        line.push_str(&format!(
            r#"","command":"{}","session":{session},"query_id":{query_id},"results":["#,
            tpl.command
        ));
        result(&mut line, "old", checksum, tpl.rows, 0, main_ms, kind);
        line.push(',');
        match (differs, tpl.how) {
            (false, _) => result(&mut line, "new", checksum, tpl.rows, 0, new_ms, kind),
            (true, How::Data) => result(&mut line, "new", checksum ^ 1, tpl.rows, 0, new_ms, kind),
            (true, How::Rows) => result(
                &mut line,
                "new",
                checksum ^ 1,
                tpl.rows + 1,
                0,
                new_ms,
                kind,
            ),
            (true, How::ErrorOnNew) => {
                result(&mut line, "new", checksum ^ 1, 0, 0, new_ms, "error")
            }
            (true, How::Warnings) => {
                result(&mut line, "new", checksum ^ 1, tpl.rows, 1, new_ms, kind)
            }
        }
        if baseline {
            line.push(',');
            let c = if tpl.noisy { checksum ^ 2 } else { checksum };
            result(
                &mut line,
                "old2",
                c,
                tpl.rows,
                0,
                latency(&mut rng, tpl.ms),
                kind,
            );
        }
        line.push_str("]}\n");
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
}
