//! SQL analysis: which kind of statement a query is and which databases and tables it names.
//!
//! Keyword-driven extraction over the tokens of [`lexer`]: names are taken where the grammar
//! puts table names (after FROM, JOIN, INTO, UPDATE, TABLE, LIKE in CREATE TABLE, REFERENCES,
//! RENAME ... TO ...), with backquotes, `db.table` qualifiers, comments, several statements,
//! subqueries and CTEs (whose names are not tables) handled. Names keep the case they were
//! written in; the router compares them case-insensitively.

pub mod info;
pub mod lexer;

use info::InfoQuery;
use lexer::{tokenize_spans, Tok};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// The qualifier, if written.
    pub db: Option<String>,
    pub table: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Other,
    /// `USE db`.
    Use(String),
    /// `SHOW DATABASES|SCHEMAS [LIKE 'pattern' | WHERE ...]`.
    ShowDatabases {
        like: Option<String>,
        has_where: bool,
    },
    ShowShards,
    /// What a database lists, on every shard holding part of it: `SHOW [FULL] TABLES`,
    /// `SHOW TABLE STATUS`, `SHOW TRIGGERS`, `SHOW EVENTS` `[FROM|IN db] [LIKE|WHERE ...]`.
    ShowListing {
        db: Option<String>,
    },
    /// `SHOW FUNCTION|PROCEDURE|PACKAGE [BODY] STATUS [LIKE|WHERE ...]`, `db` from `Db = 'x'`.
    ShowRoutines {
        db: Option<String>,
    },
    /// `SHOW CREATE TRIGGER|PROCEDURE|FUNCTION|EVENT|PACKAGE [BODY] [db.]name`: objects the
    /// shard map does not list; `db` is the qualifier.
    ShowCreateObject {
        db: Option<String>,
    },
    /// A query reading only information_schema, at least one of its object lists.
    InfoSchema(InfoQuery),
    /// `LOCK TABLE[S] item, ...`: each item's table and text.
    LockTables(Vec<LockItem>),
    /// Goes to every server, every answer checked: UNLOCK TABLES, FLUSH without tables.
    Broadcast,
    /// Changes session state: goes to every server (SET, SELECT @v:=... without tables).
    Session,
    /// BEGIN, START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT...
    Trx,
    /// `PREPARE name FROM 'sql'` (`sql` is None for `FROM @var`).
    Prepare {
        name: String,
        sql: Option<String>,
    },
    Execute {
        name: String,
    },
    Deallocate {
        name: String,
    },
    /// `EXECUTE IMMEDIATE 'sql'` (None for a variable or an expression).
    ExecuteImmediate {
        sql: Option<String>,
    },
    LoadDataLocal,
    /// Creates, drops or renames a database, table or view: the shard map changes.
    SchemaChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockItem {
    pub table: TableRef,
    /// The item as written (`t1 AS x READ /*!32311 LOCAL */`).
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// One per statement of a multi-statement query.
    pub kinds: Vec<Kind>,
    pub tables: Vec<TableRef>,
    /// Databases named explicitly: qualifiers, CREATE/DROP/ALTER DATABASE, SHOW ... FROM db,
    /// and `table_schema = 'db'` in queries on information_schema.
    pub databases: Vec<String>,
}

impl Analysis {
    pub fn is_multi(&self) -> bool {
        self.kinds.len() > 1
    }
    /// The kind of the query as a whole: a multi-statement is `Session` when every part is,
    /// else `Other`.
    pub fn kind(&self) -> Kind {
        match self.kinds.as_slice() {
            [] => Kind::Other,
            [k] => k.clone(),
            ks if ks.iter().all(|k| *k == Kind::Session) => Kind::Session,
            _ => Kind::Other,
        }
    }
}

/// Words that end a table reference (never an alias or a table name).
const RESERVED: &[&str] = &[
    "select",
    "where",
    "set",
    "values",
    "value",
    "on",
    "using",
    "group",
    "order",
    "limit",
    "having",
    "union",
    "join",
    "left",
    "right",
    "inner",
    "outer",
    "cross",
    "natural",
    "straight_join",
    "as",
    "for",
    "lock",
    "into",
    "from",
    "with",
    "window",
    "partition",
    "dual",
    "lateral",
    "to",
    "read",
    "write",
    "if",
    "not",
    "exists",
    "like",
    "key",
    "index",
    "procedure",
    "returning",
    "use",
    "force",
    "ignore",
    "except",
    "intersect",
    "outfile",
    "dumpfile",
    "and",
    "or",
    "full",
    "low_priority",
    "local",
    "high_priority",
    "delayed",
    "quick",
    "default",
    "character",
    "charset",
    "fields",
    "columns",
    "lines",
    "table",
    "tables",
    "offset",
    "fetch",
    "when",
    "then",
    "else",
    "end",
    "case",
    "in",
    "is",
    "null",
    "between",
    "escape",
    "by",
    "all",
    "distinct",
    "wait",
    "nowait",
    "skip",
    "share",
    "mode",
    "select",
    "engine",
    "concurrent",
    "replace",
    "add",
    "drop",
    "modify",
    "change",
    "alter",
    "rename",
    "convert",
    "comment",
    "auto_increment",
];

fn reserved(w: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(w))
}

/// An identifier that can be a table or database name here.
fn name_at<'a>(t: &'a [Tok<'_>], i: usize) -> Option<&'a str> {
    match t.get(i)? {
        Tok::Quoted(q) => Some(q.as_ref()),
        Tok::Word(w) if !reserved(w) => Some(w.as_ref()),
        _ => None,
    }
}

pub fn analyze(sql: &str) -> Analysis {
    let (toks, starts) = tokenize_spans(sql);
    let mut a = Analysis {
        kinds: Vec::new(),
        tables: Vec::new(),
        databases: Vec::new(),
    };
    let mut from = 0;
    for (i, t) in toks
        .iter()
        .enumerate()
        .chain(std::iter::once((toks.len(), &Tok::Punct(';'))))
    {
        if !t.is_punct(';') {
            continue;
        }
        if i > from {
            let end = starts.get(i).copied().unwrap_or(sql.len());
            let kind = statement(
                &Stmt {
                    t: &toks[from..i],
                    starts: &starts[from..i],
                    sql,
                    end,
                },
                &mut a,
            );
            a.kinds.push(kind);
        }
        from = i + 1;
    }
    a.tables.sort();
    a.tables.dedup();
    let mut seen = std::collections::HashSet::new();
    a.databases.retain(|d| seen.insert(d.to_ascii_lowercase()));
    a
}

fn add_db(a: &mut Analysis, db: &str) {
    if !db.is_empty() {
        a.databases.push(db.to_string());
    }
}

/// One statement's tokens, with their offsets in the whole text and where it ends.
struct Stmt<'a> {
    t: &'a [Tok<'a>],
    starts: &'a [usize],
    sql: &'a str,
    end: usize,
}

/// Analyses one statement: its kind, and its names into `a`.
fn statement(s: &Stmt<'_>, a: &mut Analysis) -> Kind {
    let t = s.t;
    let w = |i: usize, kw: &str| t.get(i).is_some_and(|x| x.is(kw));
    let first = &t[0];
    if first.is("use") {
        return match t.get(1).and_then(|x| x.ident()) {
            Some(db) => {
                add_db(a, db);
                Kind::Use(db.to_string())
            }
            None => Kind::Other,
        };
    }
    if first.is("show") {
        return show(t, a);
    }
    if first.is("begin") && (t.len() == 1 || w(1, "work"))
        || first.is("commit")
        || first.is("rollback")
        || first.is("savepoint")
        || (first.is("start") && w(1, "transaction"))
        || (first.is("release") && w(1, "savepoint"))
    {
        return Kind::Trx;
    }
    if first.is("set") && !w(1, "statement") {
        return Kind::Session;
    }
    if first.is("prepare") {
        if let (Some(name), true) = (t.get(1).and_then(|x| x.ident()), w(2, "from")) {
            let sql = match t.get(3) {
                Some(Tok::Str(s)) => Some(s.to_string()),
                _ => None,
            };
            return Kind::Prepare {
                name: name.to_string(),
                sql,
            };
        }
        return Kind::Other;
    }
    if first.is("execute") {
        if w(1, "immediate") {
            let sql = match (t.get(2), t.get(3)) {
                (Some(Tok::Str(s)), None | Some(Tok::Word(_))) => Some(s.to_string()),
                _ => None,
            };
            return Kind::ExecuteImmediate { sql };
        }
        return match t.get(1).and_then(|x| x.ident()) {
            Some(n) => Kind::Execute {
                name: n.to_string(),
            },
            None => Kind::Other,
        };
    }
    if (first.is("deallocate") || first.is("drop")) && w(1, "prepare") {
        return match t.get(2).and_then(|x| x.ident()) {
            Some(n) => Kind::Deallocate {
                name: n.to_string(),
            },
            None => Kind::Other,
        };
    }
    // CREATE/DROP/ALTER DATABASE|SCHEMA [IF [NOT] EXISTS] name
    if (first.is("create") || first.is("drop") || first.is("alter"))
        && (w(1, "database") || w(1, "schema"))
    {
        let mut i = 2;
        while t
            .get(i)
            .is_some_and(|x| x.is("if") || x.is("not") || x.is("exists"))
        {
            i += 1;
        }
        if let Some(db) = t.get(i).and_then(|x| x.ident()) {
            add_db(a, db);
        }
        return if first.is("alter") {
            Kind::Other
        } else {
            Kind::SchemaChange
        };
    }
    if first.is("unlock") && (w(1, "tables") || w(1, "table")) {
        return Kind::Broadcast;
    }
    let before = a.tables.len();
    tables(t, a);
    if first.is("lock") && (w(1, "tables") || w(1, "table")) {
        return Kind::LockTables(lock_items(s));
    }
    if first.is("flush") && a.tables.len() == before {
        return Kind::Broadcast;
    }
    let mut kind = Kind::Other;
    if first.is("load") && t.iter().take(6).any(|x| x.is("local")) {
        kind = Kind::LoadDataLocal;
    }
    if changes_tables(t) {
        kind = Kind::SchemaChange;
    }
    if first.is("select")
        && a.tables.len() == before
        && t.windows(2)
            .any(|p| matches!(p[0], Tok::Var(_)) && p[1] == Tok::Op(":="))
    {
        kind = Kind::Session;
    }
    // Queries on information_schema that name a schema: `table_schema = 'db'`.
    let new = &a.tables[before..];
    if !new.is_empty()
        && new.iter().all(|r| {
            r.db.as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case("information_schema"))
        })
    {
        let lists = new.iter().any(|r| info::is_list(&r.table));
        let q = info::analyze(t, s.starts, s.sql, s.end);
        for db in q.schemas.iter().flatten() {
            add_db(a, db);
        }
        if kind == Kind::Other && lists {
            kind = Kind::InfoSchema(q);
        }
    }
    kind
}

/// The items of `LOCK TABLE[S] a READ, db.b AS x WRITE, ...`, each with its text.
fn lock_items(s: &Stmt<'_>) -> Vec<LockItem> {
    let t = s.t;
    let mut out = Vec::new();
    let mut i = 2;
    let mut depth = 0usize;
    let mut item_start = i;
    while item_start < t.len() {
        let mut j = item_start;
        while j < t.len() && !(depth == 0 && t[j].is_punct(',')) {
            if t[j].is_punct('(') {
                depth += 1;
            } else if t[j].is_punct(')') {
                depth = depth.saturating_sub(1);
            }
            j += 1;
        }
        let stop = if j < t.len() { s.starts[j] } else { s.end };
        if let Some((table, _)) = table_ref(t, item_start) {
            out.push(LockItem {
                table,
                text: s.sql[s.starts[item_start]..stop].trim().to_string(),
            });
        }
        i = j + 1;
        item_start = i;
    }
    out
}

/// CREATE [OR REPLACE] ... TABLE|VIEW|SEQUENCE (not TEMPORARY: invisible to the map),
/// DROP TABLE|VIEW|SEQUENCE, RENAME TABLE, ALTER TABLE ... RENAME. The object word is looked
/// for among the first words, after options such as ALGORITHM= or DEFINER=.
fn changes_tables(t: &[Tok<'_>]) -> bool {
    let w = |i: usize, kw: &str| t.get(i).is_some_and(|x| x.is(kw));
    let object = |x: &Tok| x.is("table") || x.is("view") || x.is("sequence");
    if w(0, "create") || w(0, "drop") {
        let head = &t[1..t.len().min(12)];
        head.iter().any(object) && !head.iter().take(3).any(|x| x.is("temporary"))
    } else {
        (w(0, "rename") && w(1, "table"))
            || (w(0, "alter") && w(1, "table") && t.iter().any(|x| x.is("rename")))
    }
}

fn show(t: &[Tok<'_>], a: &mut Analysis) -> Kind {
    let mut i = 1;
    let w = |i: usize, kw: &str| t.get(i).is_some_and(|x| x.is(kw));
    if w(i, "full") || w(i, "extended") {
        i += 1;
        if w(i, "full") {
            i += 1;
        }
    }
    let from_db = |i: usize, a: &mut Analysis| -> Option<String> {
        if w(i, "from") || w(i, "in") {
            let db = t.get(i + 1).and_then(|x| x.ident())?.to_string();
            add_db(a, &db);
            Some(db)
        } else {
            None
        }
    };
    if w(i, "databases") || w(i, "schemas") {
        let like = match (t.get(i + 1), t.get(i + 2)) {
            (Some(l), Some(Tok::Str(p))) if l.is("like") => Some(p.to_string()),
            _ => None,
        };
        return Kind::ShowDatabases {
            like,
            has_where: w(i + 1, "where"),
        };
    }
    if w(i, "shards") {
        return Kind::ShowShards;
    }
    if w(i, "tables") {
        return Kind::ShowListing {
            db: from_db(i + 1, a),
        };
    }
    if w(i, "table") && w(i + 1, "status") || w(i, "triggers") || w(i, "events") {
        let j = if w(i, "table") { i + 2 } else { i + 1 };
        return Kind::ShowListing { db: from_db(j, a) };
    }
    if w(i, "open") && w(i + 1, "tables") {
        from_db(i + 2, a);
        return Kind::Other;
    }
    let status_at = if w(i, "package") && w(i + 1, "body") {
        i + 2
    } else {
        i + 1
    };
    if (w(i, "function") || w(i, "procedure") || w(i, "package")) && w(status_at, "status") {
        let db = info::compared_values(t, |c| c.eq_ignore_ascii_case("db"))
            .into_iter()
            .flatten()
            .next();
        return Kind::ShowRoutines { db };
    }
    if w(i, "columns") || w(i, "fields") || w(i, "index") || w(i, "indexes") || w(i, "keys") {
        if w(i + 1, "from") || w(i + 1, "in") {
            if let Some((r, next)) = table_ref(t, i + 2) {
                let db = from_db(next, a);
                push_table(
                    a,
                    TableRef {
                        db: db.or(r.db),
                        table: r.table,
                    },
                    &[],
                );
            }
        }
        return Kind::Other;
    }
    if w(i, "create") {
        if w(i + 1, "database") || w(i + 1, "schema") {
            let mut j = i + 2;
            while t
                .get(j)
                .is_some_and(|x| x.is("if") || x.is("not") || x.is("exists"))
            {
                j += 1;
            }
            if let Some(db) = t.get(j).and_then(|x| x.ident()) {
                add_db(a, db);
            }
        } else if w(i + 1, "table") || w(i + 1, "view") || w(i + 1, "sequence") {
            if let Some((r, _)) = table_ref(t, i + 2) {
                push_table(a, r, &[]);
            }
        } else if ["trigger", "procedure", "function", "event", "package"]
            .iter()
            .any(|k| w(i + 1, k))
        {
            let j = if w(i + 1, "package") && w(i + 2, "body") {
                i + 3
            } else {
                i + 2
            };
            let db = table_ref(t, j).and_then(|(r, _)| r.db);
            if let Some(d) = &db {
                add_db(a, d);
            }
            return Kind::ShowCreateObject { db };
        }
        return Kind::Other;
    }
    Kind::Other
}

/// A table reference at `i`: `name` or `db.name`. Returns it and the index after it.
fn table_ref(t: &[Tok<'_>], i: usize) -> Option<(TableRef, usize)> {
    let first = name_at(t, i)?;
    if t.get(i + 1).is_some_and(|x| x.is_punct('.')) {
        // After a dot any word is a name (`db.order` is valid).
        let second = t.get(i + 2).and_then(|x| x.ident())?;
        return Some((
            TableRef {
                db: Some(first.to_string()),
                table: second.to_string(),
            },
            i + 3,
        ));
    }
    if first.eq_ignore_ascii_case("dual") {
        return None;
    }
    Some((
        TableRef {
            db: None,
            table: first.to_string(),
        },
        i + 1,
    ))
}

/// Skips an optional alias (`AS x`, `x`) and index hints after a table reference.
fn skip_alias(t: &[Tok<'_>], mut i: usize) -> usize {
    if t.get(i).is_some_and(|x| x.is("as")) {
        return i + 2;
    }
    if name_at(t, i).is_some()
        && !t
            .get(i + 1)
            .is_some_and(|x| x.is_punct('.') || x.is_punct('('))
    {
        i += 1;
    }
    i
}

fn push_table(a: &mut Analysis, r: TableRef, ctes: &[String]) {
    if r.db.is_none() && ctes.iter().any(|c| c.eq_ignore_ascii_case(&r.table)) {
        return;
    }
    if let Some(db) = &r.db {
        add_db(a, db);
    }
    a.tables.push(r);
}

/// Names of the common table expressions of a `WITH` clause.
fn cte_names(t: &[Tok<'_>]) -> Vec<String> {
    let mut out = Vec::new();
    if !t.first().is_some_and(|x| x.is("with")) {
        return out;
    }
    let mut i = 1;
    if t.get(i).is_some_and(|x| x.is("recursive")) {
        i += 1;
    }
    while let Some(name) = t.get(i).and_then(|x| x.ident()) {
        out.push(name.to_string());
        i += 1;
        if t.get(i).is_some_and(|x| x.is_punct('(')) {
            i = skip_parens(t, i);
        }
        if !t.get(i).is_some_and(|x| x.is("as")) {
            break;
        }
        i += 1;
        if !t.get(i).is_some_and(|x| x.is_punct('(')) {
            break;
        }
        i = skip_parens(t, i);
        if !t.get(i).is_some_and(|x| x.is_punct(',')) {
            break;
        }
        i += 1;
    }
    out
}

/// The index after the parenthesis group opening at `i`.
fn skip_parens(t: &[Tok<'_>], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < t.len() {
        if t[i].is_punct('(') {
            depth += 1;
        } else if t[i].is_punct(')') {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Paren {
    Func,
    Other,
}

/// Collects the tables of one statement.
fn tables(t: &[Tok<'_>], a: &mut Analysis) {
    let ctes = cte_names(t);
    let mut parens: Vec<Paren> = Vec::new();
    let first_word = |kw: &str| t.first().is_some_and(|x| x.is(kw));
    let is_create = first_word("create");
    let mut i = 0;
    while i < t.len() {
        let tok = &t[i];
        let prev = if i > 0 { t.get(i - 1) } else { None };
        if tok.is_punct('(') {
            let is_func = matches!(prev, Some(Tok::Word(w)) if !reserved(w))
                && !t.get(i + 1).is_some_and(|x| x.is("select") || x.is("with"));
            parens.push(if is_func { Paren::Func } else { Paren::Other });
            i += 1;
            continue;
        }
        if tok.is_punct(')') {
            parens.pop();
            i += 1;
            continue;
        }
        if prev.is_some_and(|p| p.is_punct('.')) {
            // `x.from` is a column named like a keyword.
            i += 1;
            continue;
        }
        let in_func = parens.last() == Some(&Paren::Func);
        let Tok::Word(w) = tok else {
            i += 1;
            continue;
        };
        let mut buf = [0u8; KEYWORD_MAX];
        let Some(w) = keyword_lower(w, &mut buf) else {
            i += 1;
            continue;
        };
        i = match w {
            "from" if !in_func => list(t, i + 1, a, &ctes, &[]),
            "join" | "straight_join" => list(t, i + 1, a, &ctes, &[]).min(t.len()),
            "into"
                if !t
                    .get(i + 1)
                    .is_some_and(|x| x.is("outfile") || x.is("dumpfile")) =>
            {
                let j = if t.get(i + 1).is_some_and(|x| x.is("table")) {
                    i + 2
                } else {
                    i + 1
                };
                single(t, j, a, &ctes)
            }
            "update"
                if i == 0
                    || (first_word("with")
                        && !prev.is_some_and(|p| p.is("key") || p.is("for"))) =>
            {
                let mut j = i + 1;
                while t
                    .get(j)
                    .is_some_and(|x| x.is("low_priority") || x.is("ignore"))
                {
                    j += 1;
                }
                list(t, j, a, &ctes, &[])
            }
            "insert" | "replace" if i == 0 && !t.get(i + 1).is_some_and(|x| x.is_punct('(')) => {
                let mut j = i + 1;
                while t.get(j).is_some_and(|x| {
                    x.is("low_priority")
                        || x.is("delayed")
                        || x.is("high_priority")
                        || x.is("ignore")
                }) {
                    j += 1;
                }
                if t.get(j).is_some_and(|x| x.is("into")) {
                    j
                } else {
                    single(t, j, a, &ctes)
                }
            }
            "delete" if i == 0 => {
                // DELETE [opts] t1[.*], t2 FROM ... (multi-table form) or DELETE FROM t.
                let mut j = i + 1;
                while t
                    .get(j)
                    .is_some_and(|x| x.is("low_priority") || x.is("quick") || x.is("ignore"))
                {
                    j += 1;
                }
                j
            }
            "table" | "tables" if !in_func => {
                let mut j = i + 1;
                while t
                    .get(j)
                    .is_some_and(|x| x.is("if") || x.is("not") || x.is("exists"))
                {
                    j += 1;
                }
                list(
                    t,
                    j,
                    a,
                    &ctes,
                    &["to", "read", "write", "local", "low_priority"],
                )
            }
            "truncate" if i == 0 && !t.get(i + 1).is_some_and(|x| x.is("table")) => {
                single(t, i + 1, a, &ctes)
            }
            "references" => single(t, i + 1, a, &ctes),
            "like" if is_create && matches!(t.get(i + 1), Some(Tok::Word(_) | Tok::Quoted(_))) => {
                single(t, i + 1, a, &ctes)
            }
            "rename" if t.get(i + 1).is_some_and(|x| x.is("to") || x.is("as")) => {
                single(t, i + 2, a, &ctes)
            }
            "describe" | "desc" | "explain" if i == 0 => {
                let j = if t
                    .get(i + 1)
                    .is_some_and(|x| x.is("extended") || x.is("partitions"))
                {
                    i + 2
                } else {
                    i + 1
                };
                match table_ref(t, j) {
                    Some((r, next)) if !t.get(j).is_some_and(|x| x.is("select")) => {
                        push_table(a, r, &ctes);
                        next
                    }
                    _ => j,
                }
            }
            "call" if i == 0 => {
                if let Some((r, next)) = table_ref(t, i + 1) {
                    if let Some(db) = r.db {
                        add_db(a, &db);
                    }
                    next
                } else {
                    i + 1
                }
            }
            _ => i + 1,
        };
    }
}

/// Longer than the longest keyword `tables` looks for (`straight_join`, 13 bytes).
const KEYWORD_MAX: usize = 16;

/// `w` in lowercase, written into `buf` (no allocation for each word of each statement), or
/// `None` when it is too long to be one of `tables`' keywords.
fn keyword_lower<'b>(w: &str, buf: &'b mut [u8; KEYWORD_MAX]) -> Option<&'b str> {
    let b = buf.get_mut(..w.len())?;
    b.copy_from_slice(w.as_bytes());
    b.make_ascii_lowercase();
    // ASCII lowercasing keeps UTF-8 valid.
    std::str::from_utf8(b).ok()
}

/// One table reference (and its alias) at `i`.
fn single(t: &[Tok<'_>], i: usize, a: &mut Analysis, ctes: &[String]) -> usize {
    match table_ref(t, i) {
        Some((r, next)) => {
            push_table(a, r, ctes);
            next
        }
        None => i,
    }
}

/// A comma-separated list of table references (with aliases; `seps` are extra separator
/// words such as TO in RENAME TABLE, or lock types). Stops at anything else.
fn list(t: &[Tok<'_>], mut i: usize, a: &mut Analysis, ctes: &[String], seps: &[&str]) -> usize {
    loop {
        // `FROM (a JOIN b)`: a group of table references, not a subquery.
        while t.get(i).is_some_and(|x| x.is_punct('('))
            && !t.get(i + 1).is_some_and(|x| x.is("select") || x.is("with"))
        {
            i += 1;
        }
        let Some((r, next)) = table_ref(t, i) else {
            return i;
        };
        push_table(a, r, ctes);
        i = next;
        if t.get(i).is_some_and(|x| x.is_punct('.'))
            && t.get(i + 1).is_some_and(|x| x.is_punct('*'))
        {
            i += 2; // DELETE t.* FROM ...
        }
        if !seps.iter().any(|s| t.get(i).is_some_and(|x| x.is(s))) {
            i = skip_alias(t, i);
        }
        while t.get(i).is_some_and(|x| seps.iter().any(|s| x.is(s))) {
            i += 1;
        }
        while t.get(i).is_some_and(|x| x.is_punct(')')) {
            i += 1;
        }
        if t.get(i).is_some_and(|x| x.is_punct(',')) {
            i += 1;
            continue;
        }
        if seps.contains(&"to")
            && t.get(i).is_some_and(|x| x.ident().is_some())
            && table_ref(t, i).is_some()
        {
            continue;
        }
        return i;
    }
}

/// SQL LIKE matching (`%`, `_`, backslash escape), ASCII case-insensitive as MariaDB's
/// default collations compare. The pattern comes from the client: matching goes back only to
/// the last `%` (at most pattern x name steps), never tries every split of the name.
pub fn like_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    // After the last `%` seen: where the pattern resumes, and the name position it took.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let step = match p.get(pi) {
            Some('%') => {
                star = Some((pi + 1, si));
                pi += 1;
                continue;
            }
            Some('_') => Some(1),
            Some('\\') if pi + 1 < p.len() => s[si].eq_ignore_ascii_case(&p[pi + 1]).then_some(2),
            Some(c) => s[si].to_lowercase().eq(c.to_lowercase()).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(n), _) => {
                pi += n;
                si += 1;
            }
            (None, Some((resume, taken))) => {
                // Let the last `%` take one more character and retry from there.
                star = Some((resume, taken + 1));
                pi = resume;
                si = taken + 1;
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '%')
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
