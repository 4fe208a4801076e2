//! Property tests of the SQL lexer and analysis on untrusted text: random bytes, random SQL
//! made of the words the analysis looks for, and pathological shapes (deep nesting, endless
//! comments). Invariants: no panic, token offsets inside the text, bounded stack, time linear
//! in the input (compared between an input and one four times as long).

use super::lexer::tokenize_spans;
use super::{analyze, like_match};
use proptest::prelude::*;
use std::time::{Duration, Instant};

const WORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "JOIN",
    "LEFT",
    "WHERE",
    "INTO",
    "UPDATE",
    "INSERT",
    "REPLACE",
    "DELETE",
    "TABLE",
    "TABLES",
    "LOCK",
    "UNLOCK",
    "READ",
    "WRITE",
    "USE",
    "SHOW",
    "DATABASES",
    "LIKE",
    "CREATE",
    "DROP",
    "ALTER",
    "RENAME",
    "TO",
    "AS",
    "WITH",
    "RECURSIVE",
    "PREPARE",
    "EXECUTE",
    "IMMEDIATE",
    "DEALLOCATE",
    "SET",
    "BEGIN",
    "COMMIT",
    "ORDER",
    "BY",
    "GROUP",
    "LIMIT",
    "OFFSET",
    "UNION",
    "DISTINCT",
    "information_schema",
    "tables",
    "schemata",
    "table_schema",
    "IN",
    "NOT",
    "DATABASE",
    "LOAD",
    "DATA",
    "LOCAL",
    "INFILE",
    "CALL",
    "DESCRIBE",
    "TRUNCATE",
    "FLUSH",
    "db1",
    "t1",
    "x",
    "count",
];

const PUNCT: &[&str] = &[
    "(",
    ")",
    ",",
    ".",
    ";",
    "*",
    "=",
    "'s'",
    "`q`",
    "\"d\"",
    "@v",
    "@@g",
    ":=",
    "/* c */",
    "/*!50100 ",
    "*/",
    "-- c\n",
    "#c\n",
    "1",
    "0x1F",
    "'",
    "`",
    "/*",
    "\\",
    "é",
    "\u{0}",
];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_string),
        2 => prop::sample::select(PUNCT).prop_map(str::to_string),
        1 => "[a-z_$0-9]{1,8}",
        1 => any::<String>().prop_map(|s| s.chars().take(4).collect()),
    ]
}

fn sql() -> impl Strategy<Value = String> {
    prop::collection::vec((token(), prop::sample::select(vec!["", " ", "\n"])), 0..60)
        .prop_map(|ts| ts.into_iter().map(|(t, sep)| t + sep).collect())
}

/// Token offsets rise strictly, lie inside the text, on character boundaries.
fn check_spans(sql: &str) -> Result<(), TestCaseError> {
    let (toks, starts) = tokenize_spans(sql);
    prop_assert_eq!(toks.len(), starts.len());
    for w in starts.windows(2) {
        prop_assert!(w[0] < w[1], "offsets rise: {:?}", starts);
    }
    for &s in &starts {
        prop_assert!(
            s < sql.len() && sql.is_char_boundary(s),
            "offset {} in {:?}",
            s,
            sql
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let sql = String::from_utf8_lossy(&bytes);
        check_spans(&sql)?;
        let _ = analyze(&sql);
    }

    #[test]
    fn random_sql(sql in sql()) {
        check_spans(&sql)?;
        let a = analyze(&sql);
        // Every name the analysis reports is text of the statement (unescaped), never made up.
        let lower = sql.to_ascii_lowercase();
        for t in &a.tables {
            let name = t.table.to_ascii_lowercase();
            prop_assert!(name.is_empty() || lower.contains(name.split('`').next().unwrap_or_default()), "table {:?} of {:?}", t, sql);
        }
    }

    /// The linear-time LIKE matcher agrees with the textbook recursive definition.
    #[test]
    fn like_matches_as_defined(pattern in "[ab%_\\\\]{0,8}", s in "[abAB_%\\\\]{0,8}") {
        prop_assert_eq!(like_match(&pattern, &s), reference_like(&pattern, &s), "{:?} LIKE {:?}", s, pattern);
    }
}

/// The recursive definition of LIKE (exponential on patterns with many `%`: test sizes only).
fn reference_like(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('%') => (0..=s.len()).any(|k| go(&p[1..], &s[k..])),
            Some('_') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some('\\') if p.len() > 1 => {
                !s.is_empty() && s[0].eq_ignore_ascii_case(&p[1]) && go(&p[2..], &s[1..])
            }
            Some(c) => {
                !s.is_empty() && s[0].to_lowercase().eq(c.to_lowercase()) && go(&p[1..], &s[1..])
            }
        }
    }
    go(
        &pattern.chars().collect::<Vec<_>>(),
        &s.chars().collect::<Vec<_>>(),
    )
}

/// Runs `f` on a thread with a small stack: deep input must not recurse deeply.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .expect("analysis overflowed a 256 KiB stack or panicked");
}

/// Inputs of size n for each pathological shape.
/// `f(0), f(1), ... f(n-1)` joined by `sep`.
fn joined(n: usize, sep: &str, f: impl Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(sep)
}

/// A shape's name and how to make an input of size n.
type Shape = (&'static str, fn(usize) -> String);

fn shapes() -> Vec<Shape> {
    vec![
        ("nested parentheses", |n| {
            format!("SELECT * FROM {}t1{}", "(".repeat(n), ")".repeat(n))
        }),
        ("open parentheses", |n| {
            format!("SELECT f{} FROM t", "(".repeat(n))
        }),
        ("nested subqueries", |n| {
            format!(
                "SELECT * FROM t WHERE a IN {}",
                "(SELECT a FROM t WHERE a IN ".repeat(n)
            )
        }),
        ("executable comments", |n| {
            format!("SELECT {} 1", "/*!50100 ".repeat(n))
        }),
        ("comment openers", |n| {
            format!("SELECT {} FROM t", "/* /*".repeat(n))
        }),
        ("unterminated comments", |n| "/* x */ SELECT /*".repeat(n)),
        ("line comments", |n| "-- x\nSELECT 1 # y\n".repeat(n)),
        ("quotes", |n| "'a''b' `c``d` \"e\\\"f\" ".repeat(n)),
        ("table list", |n| {
            format!(
                "SELECT * FROM {}",
                joined(n, ", ", |i| format!("db{i}.t{i} AS a{i}"))
            )
        }),
        ("joins", |n| {
            format!(
                "SELECT * FROM t0 {}",
                joined(n, " ", |i| format!("JOIN t{i} ON a = b"))
            )
        }),
        ("statements", |n| {
            "USE db1; SELECT * FROM t1; SET @a := 1; ".repeat(n)
        }),
        ("information_schema order by", |n| {
            format!(
                "SELECT * FROM information_schema.tables WHERE table_schema IN ({}) ORDER BY {} LIMIT 10",
                vec!["'d'"; n].join(","),
                vec!["f(a, b)"; n].join(", ")
            )
        }),
        ("unions", |n| {
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'a' UNION "
                .repeat(n)
        }),
        ("ctes", |n| {
            format!(
                "WITH {} SELECT 1",
                joined(n, ", ", |i| format!("c{i} AS (SELECT 1)"))
            )
        }),
        ("rename list", |n| {
            format!(
                "RENAME TABLE {}",
                joined(n, ", ", |i| format!("a{i} TO b{i}"))
            )
        }),
        ("lock list", |n| {
            format!(
                "LOCK TABLES {}",
                joined(n, ", ", |i| format!("t{i} READ /*!32311 LOCAL */"))
            )
        }),
        ("dotted names", |n| {
            format!("SELECT {} FROM t", "x.from.".repeat(n))
        }),
        ("variables", |n| {
            format!("SELECT {}", "@a := @@b.c, ".repeat(n))
        }),
    ]
}

fn best_time(sql: &str) -> Duration {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(analyze(std::hint::black_box(sql)));
            t.elapsed()
        })
        .min()
        .unwrap()
}

/// Deep nesting and long inputs on a small stack, and 4x the input costs about 4x the time:
/// quadratic work would show as 16x; the bound 10x leaves room for a busy machine.
#[test]
fn pathological_inputs_take_linear_time_and_little_stack() {
    for (name, make) in shapes() {
        on_small_stack(move || {
            let _ = analyze(&make(100_000));
        });
        let (small, large) = (make(2_000), make(8_000));
        // Warm up (allocator, caches), then compare the best of several runs; a busy machine
        // gets three tries.
        let _ = best_time(&small);
        let ratios: Vec<f64> = (0..3)
            .map(|_| {
                let (a, b) = (best_time(&small), best_time(&large));
                b.as_secs_f64() / a.as_secs_f64().max(1e-6)
            })
            .collect();
        let best = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        eprintln!(
            "{name}: {} -> {} bytes: time x{best:.1}",
            small.len(),
            large.len()
        );
        assert!(
            best < 10.0,
            "{name}: {} -> {} bytes took x{ratios:.1?} the time: not linear",
            small.len(),
            large.len()
        );
    }
}

/// SHOW DATABASES LIKE takes its pattern from the client: a pattern of many `%` must not take
/// exponential time against a long database name.
#[test]
fn like_pattern_of_many_wildcards_is_fast() {
    let name = "a".repeat(64);
    let pattern = format!("{}b", "%a".repeat(30));
    let t = Instant::now();
    assert!(!like_match(&pattern, &name));
    assert!(like_match(&format!("{}%", "%a".repeat(30)), &name));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}
