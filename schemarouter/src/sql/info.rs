//! Queries on information_schema's object lists (SCHEMATA, TABLES, COLUMNS ...): which
//! schemas and tables their conditions name, and whether their rows can be merged from
//! several servers into what one server holding every shard would answer.
//!
//! Handled: one SELECT (UNIONs and subqueries included) whose tables are all in
//! information_schema; conditions `col = 'x'`, `col = DATABASE()` and `col IN ('x', ...)`
//! on schema columns (`*_SCHEMA`, `SCHEMA_NAME`) and table columns (`TABLE_NAME`,
//! `EVENT_OBJECT_TABLE`); a final `ORDER BY` of result columns (by name, alias or position,
//! ASC/DESC) and `LIMIT n`, `LIMIT m, n`, `LIMIT n OFFSET m`. Aggregates, GROUP BY, HAVING,
//! window functions, SELECT ... INTO and locking reads are not mergeable.

use super::lexer::Tok;

/// The object lists whose rows are spread over the shards.
#[rustfmt::skip]
const LISTS: &[&str] = &[
    "schemata", "tables", "columns", "statistics", "routines", "views", "key_column_usage",
    "referential_constraints", "table_constraints", "check_constraints", "triggers", "events", "parameters",
    "partitions", "schema_privileges", "table_privileges", "column_privileges",
];

#[rustfmt::skip]
const AGGREGATES: &[&str] = &[
    "count", "sum", "min", "max", "avg", "group_concat", "bit_and", "bit_or", "bit_xor", "std", "stddev",
    "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "json_arrayagg", "json_objectagg",
];

pub fn is_list(table: &str) -> bool {
    LISTS.iter().any(|l| l.eq_ignore_ascii_case(table))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKey {
    /// A column name or alias (the qualifier dropped).
    Name(String),
    /// `ORDER BY 2`: a position in the select list, from 1.
    Position(usize),
    /// An expression: the merged rows cannot be sorted by it.
    Expression,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub key: OrderKey,
    pub desc: bool,
    /// The item as written, without ASC/DESC.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub offset: u64,
    pub count: u64,
    /// Byte range of the LIMIT clause in the statement text.
    pub span: (usize, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoQuery {
    /// Schemas the conditions compare with; `None` stands for `DATABASE()`.
    pub schemas: Vec<Option<String>>,
    pub tables: Vec<String>,
    pub mergeable: bool,
    pub order: Vec<OrderItem>,
    pub limit: Option<Limit>,
    /// One SELECT (no UNION), not DISTINCT: columns may be added to its select list.
    pub plain: bool,
    /// Byte offset of the top-level FROM (where added columns go).
    pub from_at: Option<usize>,
    /// The first table of the top-level FROM if it is an object list: (its name, the
    /// qualifier its columns take: the alias, or the name).
    pub list: Option<(String, String)>,
    /// Aliases (`AS x`) of the select list, which the select list itself cannot name.
    pub aliases: Vec<String>,
}

/// The columns that say which object a row of an object list is about: rows of other shards
/// about the same object are left out of a merge.
pub fn identity(list: &str) -> &'static [&'static str] {
    match list.to_ascii_lowercase().as_str() {
        "schemata" => &["SCHEMA_NAME"],
        "schema_privileges" => &["TABLE_SCHEMA"],
        "routines" => &["ROUTINE_SCHEMA", "ROUTINE_NAME"],
        "parameters" => &["SPECIFIC_SCHEMA", "SPECIFIC_NAME"],
        "events" => &["EVENT_SCHEMA", "EVENT_NAME"],
        "triggers" => &["EVENT_OBJECT_SCHEMA", "EVENT_OBJECT_TABLE"],
        "referential_constraints" | "check_constraints" => &["CONSTRAINT_SCHEMA", "TABLE_NAME"],
        _ => &["TABLE_SCHEMA", "TABLE_NAME"],
    }
}

/// Words after a table reference that are not its alias.
#[rustfmt::skip]
const NOT_ALIAS: &[&str] = &[
    "where", "join", "left", "right", "inner", "outer", "cross", "natural", "straight_join", "order", "group",
    "limit", "union", "having", "window", "on", "using", "for", "lock", "into", "procedure", "except",
    "intersect",
];

fn is_schema_col(c: &str) -> bool {
    let c = c.to_ascii_lowercase();
    c == "schema_name"
        || c == "db"
        || (c.ends_with("_schema")
            && !c.starts_with("referenced_")
            && !c.starts_with("unique_constraint_"))
}

fn is_table_col(c: &str) -> bool {
    c.eq_ignore_ascii_case("table_name") || c.eq_ignore_ascii_case("event_object_table")
}

/// The column named at `i` (`col` or `q.col`): its name and the index after it.
fn column_at<'a>(t: &'a [Tok<'_>], i: usize) -> Option<(&'a str, usize)> {
    let first = t.get(i)?.ident()?;
    if t.get(i + 1).is_some_and(|x| x.is_punct('.')) {
        return Some((t.get(i + 2)?.ident()?, i + 3));
    }
    Some((first, i + 1))
}

/// A compared value at `i`: a string, or DATABASE()/SCHEMA() (`Some(None)`).
fn value_at(t: &[Tok<'_>], i: usize) -> Option<Option<String>> {
    match t.get(i)? {
        Tok::Str(s) => Some(Some(s.to_string())),
        Tok::Word(w)
            if (w.eq_ignore_ascii_case("database") || w.eq_ignore_ascii_case("schema"))
                && t.get(i + 1).is_some_and(|x| x.is_punct('('))
                && t.get(i + 2).is_some_and(|x| x.is_punct(')')) =>
        {
            Some(None)
        }
        _ => None,
    }
}

/// Values a condition on a column of kind `col` compares with, anywhere in the statement.
pub fn compared_values(t: &[Tok<'_>], col: fn(&str) -> bool) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let Some((name, next)) = column_at(t, i) else {
            i += 1;
            continue;
        };
        let negated = i > 0 && t[i - 1].is("not");
        if !col(name) || t.get(i.wrapping_sub(1)).is_some_and(|x| x.is_punct('.')) {
            i = next;
            continue;
        }
        if t.get(next).is_some_and(|x| x.is_punct('=')) {
            if let Some(v) = value_at(t, next + 1) {
                out.push(v);
            }
        } else if t.get(next).is_some_and(|x| x.is("in"))
            && !negated
            && t.get(next + 1).is_some_and(|x| x.is_punct('('))
        {
            let mut j = next + 2;
            while let Some(Tok::Str(s)) = t.get(j) {
                out.push(Some(s.to_string()));
                if !t.get(j + 1).is_some_and(|x| x.is_punct(',')) {
                    break;
                }
                j += 2;
            }
        }
        // `'x' = col`
        if i >= 2 && t[i - 1].is_punct('=') {
            if let Tok::Str(s) = &t[i - 2] {
                out.push(Some(s.to_string()));
            }
        }
        i = next;
    }
    out
}

/// Parenthesis depth before each token.
fn depths(t: &[Tok<'_>]) -> Vec<usize> {
    let mut d = 0usize;
    t.iter()
        .map(|x| {
            if x.is_punct(')') {
                d = d.saturating_sub(1);
            }
            let here = d;
            if x.is_punct('(') {
                d += 1;
            }
            here
        })
        .collect()
}

/// Analyses a statement whose tables are all in information_schema (`starts`: each token's
/// byte offset in `sql`, `end`: where the statement ends there).
pub fn analyze(t: &[Tok<'_>], starts: &[usize], sql: &str, end: usize) -> InfoQuery {
    let mut q = InfoQuery {
        schemas: compared_values(t, is_schema_col),
        tables: compared_values(t, is_table_col)
            .into_iter()
            .flatten()
            .collect(),
        mergeable: t.first().is_some_and(|x| x.is("select") || x.is("with")),
        order: Vec::new(),
        limit: None,
        plain: false,
        from_at: None,
        list: None,
        aliases: Vec::new(),
    };
    let d = depths(t);
    let top = |i: usize| d[i] == 0;
    // The final ORDER BY and LIMIT follow the last top-level UNION.
    let last_union = (0..t.len())
        .rev()
        .find(|&i| top(i) && (t[i].is("union") || t[i].is("except") || t[i].is("intersect")));
    let from = last_union.unwrap_or(0);
    let from_kw = (0..t.len()).find(|&i| top(i) && t[i].is("from"));
    let distinct = (0..from_kw.unwrap_or(0))
        .any(|i| top(i) && (t[i].is("distinct") || t[i].is("distinctrow")));
    q.plain = t.first().is_some_and(|x| x.is("select")) && last_union.is_none() && !distinct;
    q.aliases = (0..from_kw.unwrap_or(0))
        .filter(|&i| top(i) && t[i].is("as"))
        .filter_map(|i| t.get(i + 1)?.ident().map(str::to_string))
        .collect();
    if let Some(f) = from_kw {
        q.from_at = Some(starts[f]);
        let (name, next) = match (t.get(f + 1), t.get(f + 2), t.get(f + 3)) {
            (Some(db), Some(dot), Some(n))
                if dot.is_punct('.')
                    && db
                        .ident()
                        .is_some_and(|x| x.eq_ignore_ascii_case("information_schema")) =>
            {
                (n.ident(), f + 4)
            }
            _ => (None, f + 1),
        };
        if let Some(name) = name.filter(|n| is_list(n)) {
            let alias = match t.get(next) {
                Some(a) if a.is("as") => t.get(next + 1).and_then(|x| x.ident()),
                Some(Tok::Quoted(a)) => Some(a.as_ref()),
                Some(Tok::Word(a)) if !NOT_ALIAS.iter().any(|w| w.eq_ignore_ascii_case(a)) => {
                    Some(a.as_ref())
                }
                _ => None,
            };
            q.list = Some((name.to_string(), alias.unwrap_or(name).to_string()));
        }
    }
    for i in 0..t.len() {
        if !top(i) {
            continue;
        }
        let w = &t[i];
        let agg = matches!(w, Tok::Word(x) if AGGREGATES.iter().any(|a| a.eq_ignore_ascii_case(x)))
            && t.get(i + 1).is_some_and(|x| x.is_punct('('));
        let grouping = w.is("group") && t.get(i + 1).is_some_and(|x| x.is("by"));
        if agg
            || grouping
            || w.is("having")
            || w.is("over")
            || w.is("into")
            || w.is("fetch")
            || w.is("for")
            || w.is("lock")
            || w.is("procedure")
        {
            q.mergeable = false;
        }
    }
    let Some(ob) = (from..t.len())
        .find(|&i| top(i) && t[i].is("order") && t.get(i + 1).is_some_and(|x| x.is("by")))
    else {
        q.limit = limit(t, starts, end, &d, from);
        if q.limit.is_none() && has_limit(t, &d, from) {
            q.mergeable = false;
        }
        return q;
    };
    let mut i = ob + 2;
    while i < t.len() && !(top(i) && t[i].is("limit")) {
        let item_end = (i..t.len())
            .find(|&j| top(j) && (t[j].is_punct(',') || t[j].is("limit")))
            .unwrap_or(t.len());
        let mut item = &t[i..item_end];
        let mut desc = false;
        if let Some(last) = item.last() {
            if last.is("desc") || last.is("asc") {
                desc = last.is("desc");
                item = &item[..item.len() - 1];
            }
        }
        let key = match item {
            [Tok::Num(n)] => n.parse().map_or(OrderKey::Expression, OrderKey::Position),
            [x] if x.ident().is_some() => OrderKey::Name(x.ident().unwrap_or_default().to_string()),
            [q, p, x] if q.ident().is_some() && p.is_punct('.') && x.ident().is_some() => {
                OrderKey::Name(x.ident().unwrap_or_default().to_string())
            }
            _ => OrderKey::Expression,
        };
        let n = item.len();
        let text_end = if i + n < t.len() { starts[i + n] } else { end };
        let text = if n == 0 {
            String::new()
        } else {
            sql[starts[i]..text_end].trim().to_string()
        };
        q.order.push(OrderItem { key, desc, text });
        i = if item_end < t.len() && t[item_end].is_punct(',') {
            item_end + 1
        } else {
            item_end
        };
    }
    q.limit = limit(t, starts, end, &d, from);
    if q.limit.is_none() && has_limit(t, &d, from) {
        q.mergeable = false;
    }
    q
}

fn has_limit(t: &[Tok<'_>], d: &[usize], from: usize) -> bool {
    (from..t.len()).any(|i| d[i] == 0 && t[i].is("limit"))
}

/// The top-level LIMIT after `from`, if it has one of the forms handled.
fn limit(t: &[Tok<'_>], starts: &[usize], end: usize, d: &[usize], from: usize) -> Option<Limit> {
    let i = (from..t.len()).find(|&i| d[i] == 0 && t[i].is("limit"))?;
    let num = |j: usize| match t.get(j) {
        Some(Tok::Num(n)) => n.parse::<u64>().ok(),
        _ => None,
    };
    let (offset, count, last) = match (num(i + 1), t.get(i + 2)) {
        (Some(a), Some(c)) if c.is_punct(',') => (a, num(i + 3)?, i + 3),
        (Some(n), Some(o)) if o.is("offset") => (num(i + 3)?, n, i + 3),
        (Some(n), None) => (0, n, i + 1),
        _ => return None,
    };
    if last + 1 != t.len() {
        return None;
    }
    let stop = match &t[last] {
        Tok::Num(n) => starts[last] + n.len(),
        _ => end,
    };
    Some(Limit {
        offset,
        count,
        span: (starts[i], stop),
    })
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize_spans;
    use super::*;

    fn q(sql: &str) -> InfoQuery {
        let (t, s) = tokenize_spans(sql);
        analyze(&t, &s, sql, sql.len())
    }

    #[test]
    fn conditions_order_and_limit() {
        let a = q("SELECT table_name FROM information_schema.tables WHERE table_schema = 'd1' AND TABLE_NAME='t2'");
        assert_eq!(
            (a.schemas, a.tables, a.mergeable),
            (vec![Some("d1".into())], vec!["t2".to_string()], true)
        );
        let a =
            q("SELECT TRIGGER_NAME FROM INFORMATION_SCHEMA.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 't1'");
        assert_eq!((a.schemas, a.tables), (vec![None], vec!["t1".to_string()]));
        let a = q("select * from information_schema.columns c where c.table_schema IN ('a','b') and 'x' = c.table_name");
        assert_eq!(
            (a.schemas, a.tables),
            (
                vec![Some("a".into()), Some("b".into())],
                vec!["x".to_string()]
            )
        );
        assert!(
            q("SELECT * FROM information_schema.tables WHERE table_schema NOT IN ('a')")
                .schemas
                .is_empty()
        );
        assert!(
            q("SELECT * FROM information_schema.tables WHERE table_schema <> 'a'")
                .schemas
                .is_empty()
        );
        assert!(q(
            "SELECT * FROM information_schema.key_column_usage WHERE referenced_table_schema = 'a'"
        )
        .schemas
        .is_empty());

        let sql = "SELECT TABLE_SCHEMA s, table_name FROM information_schema.TABLES ORDER BY s DESC, t.TABLE_NAME, 2 ASC LIMIT 3, 4";
        let a = q(sql);
        assert!(a.mergeable);
        assert_eq!(
            a.order,
            vec![
                OrderItem {
                    key: OrderKey::Name("s".into()),
                    desc: true,
                    text: "s".into()
                },
                OrderItem {
                    key: OrderKey::Name("TABLE_NAME".into()),
                    desc: false,
                    text: "t.TABLE_NAME".into()
                },
                OrderItem {
                    key: OrderKey::Position(2),
                    desc: false,
                    text: "2".into()
                },
            ]
        );
        assert!(a.plain);
        assert_eq!(a.list, Some(("TABLES".into(), "TABLES".into())));
        assert_eq!(&sql[a.from_at.unwrap()..a.from_at.unwrap() + 4], "FROM");
        let b = q("SELECT DISTINCT c.table_schema AS s FROM information_schema.columns AS c ORDER BY LOWER(c.table_name) DESC");
        assert!(!b.plain);
        assert_eq!(
            (b.list, b.aliases),
            (Some(("columns".into(), "c".into())), vec!["s".to_string()])
        );
        assert_eq!(b.order[0].text, "LOWER(c.table_name)");
        assert_eq!(
            q("SELECT * FROM information_schema.tables t WHERE 1").list,
            Some(("tables".into(), "t".into()))
        );
        assert_eq!(
            q("SELECT * FROM information_schema.tables WHERE 1").list,
            Some(("tables".into(), "tables".into()))
        );
        assert_eq!(q("SELECT * FROM information_schema.engines").list, None);
        let l = a.limit.unwrap();
        assert_eq!(
            (l.offset, l.count, &sql[l.span.0..l.span.1]),
            (3, 4, "LIMIT 3, 4")
        );
        let l = q("SELECT * FROM information_schema.schemata LIMIT 5 OFFSET 2")
            .limit
            .unwrap();
        assert_eq!((l.offset, l.count), (2, 5));
        assert_eq!(
            q("SELECT * FROM information_schema.schemata ORDER BY LOWER(schema_name)").order[0].key,
            OrderKey::Expression
        );
        let a = q("SELECT table_name FROM information_schema.tables WHERE table_schema='a' UNION SELECT table_name FROM information_schema.views ORDER BY 1 LIMIT 2");
        assert!(a.mergeable && a.order.len() == 1 && a.limit.is_some());
    }

    #[test]
    fn not_mergeable() {
        for sql in [
            "SELECT COUNT(*) FROM information_schema.tables",
            "SELECT table_schema, count(*) FROM information_schema.tables GROUP BY table_schema",
            "SELECT table_name, ROW_NUMBER() OVER () FROM information_schema.tables",
            "SELECT table_name INTO @x FROM information_schema.tables LIMIT 1",
            "SELECT * FROM information_schema.tables LIMIT ?",
            "SHOW TABLES",
        ] {
            assert!(!q(sql).mergeable, "{sql}");
        }
        for sql in [
            "SELECT * FROM information_schema.tables WHERE table_name IN (SELECT table_name FROM information_schema.columns GROUP BY table_name)",
            "SELECT GROUP_CONCAT(x) FROM (SELECT 1 x) d WHERE 0 UNION SELECT table_name FROM information_schema.tables",
        ] {
            let a = q(sql);
            assert_eq!(a.mergeable, !sql.contains("GROUP_CONCAT"), "{sql}");
        }
    }
}
