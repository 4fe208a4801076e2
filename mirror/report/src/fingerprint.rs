//! The query class of a statement: its SQL with the parts that vary between executions of
//! the same code path taken out. The rules (README "Query classes"):
//! - comments (`-- `, `#`, `/* */`) are dropped; the body of an executable comment
//!   (`/*! */`, `/*!50100 */`, `/*M! */`) is kept as SQL;
//! - string literals (`'..'`, `".."`, with `_charset`/`N`/`X`/`B` prefixes), numbers
//!   (integers, decimals, exponents, hex, binary, a sign in front of a number) and `?`
//!   placeholders become `?`;
//! - `IN (?, ?, ...)` becomes `in(?+)`, and `VALUES (...), (...)` of literals `values(?+)`;
//! - ASCII letters are lowercased, backticks removed, whitespace normalized: one space
//!   between words, none inside parentheses or before `,` `)` `;` `.`;
//! - trailing `;` are dropped.
//!
//! Written by hand: it runs on every line of inputs of millions of lines, and a SQL parser
//! would both cost more and refuse the statements (MariaDB syntax, errors) the report must
//! still group.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tok {
    Word,
    Keyword,
    Lit,
    Op,
    Open,
    Close,
    Comma,
    Dot,
    Semi,
}

/// What a parenthesis may collapse to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum List {
    /// Not a list of literals.
    No,
    /// After `in`, or a tuple inside such a list: collapses to `?+`.
    In,
    /// The first group after `values`.
    Values,
    /// A further group of a `values` list: collapses into the first, from this position on.
    MoreValues(usize),
}

/// An open parenthesis: where its content starts in the output and whether it may collapse.
struct Paren {
    content_start: usize,
    list: List,
    /// Only literals, commas and collapsed tuples so far.
    only_literals: bool,
}

/// Words after which a `-`/`+` is a sign, not an operator.
const SIGN_CONTEXT: &[&str] = &[
    "select", "where", "and", "or", "not", "values", "value", "by", "limit", "offset", "then",
    "else", "when", "set", "in", "between", "like", "is", "on", "having", "return", "case", "xor",
    "div", "mod", "interval",
];

struct Writer<'o> {
    out: &'o mut String,
    /// The last two tokens written: kind and where each starts (its leading space included).
    last: Option<(Tok, usize)>,
    before_last: Option<(Tok, usize)>,
    parens: Vec<Paren>,
    /// Set right after a collapsed `values(?+)`: the end of that group in the output.
    values_end: Option<usize>,
}

impl Writer<'_> {
    fn space_before(&self, cur: Tok) -> bool {
        let Some((prev, _)) = self.last else {
            return false;
        };
        !matches!(
            (prev, cur),
            (Tok::Open | Tok::Dot, _)
                | (_, Tok::Close | Tok::Comma | Tok::Semi | Tok::Dot)
                | (Tok::Word | Tok::Keyword | Tok::Lit | Tok::Close, Tok::Open)
        )
    }

    fn emit(&mut self, kind: Tok, text: &str) {
        if kind != Tok::Lit && kind != Tok::Comma {
            if let Some(p) = self.parens.last_mut() {
                p.only_literals = false;
            }
        }
        if !(kind == Tok::Comma || (kind == Tok::Open && self.values_end.is_some())) {
            self.values_end = None;
        }
        let start = self.out.len();
        if self.space_before(kind) {
            self.out.push(' ');
        }
        self.out.push_str(text);
        self.before_last = self.last;
        self.last = Some((kind, start));
    }

    fn word(&mut self, w: &str) {
        let kind = if is_keyword(w) {
            Tok::Keyword
        } else {
            Tok::Word
        };
        self.emit(kind, w);
    }

    fn literal(&mut self, is_number: bool) {
        // A sign in front of a number belongs to the literal when what precedes the sign
        // cannot end an operand (`= -1`, `(-1`, `select -1`), not in `a - 1`.
        if is_number {
            if let (Some((Tok::Op, sign_at)), prev) = (self.last, self.before_last) {
                let sign = &self.out[sign_at..];
                let operand_before = matches!(prev, Some((Tok::Word | Tok::Lit | Tok::Close, _)));
                if (sign.trim_start() == "-" || sign.trim_start() == "+") && !operand_before {
                    self.out.truncate(sign_at);
                    self.last = self.before_last;
                    self.before_last = None;
                }
            }
        }
        self.emit(Tok::Lit, "?");
    }

    fn open(&mut self) {
        let keyword = match self.last {
            Some((Tok::Keyword, at)) => self.out[at..].trim_start(),
            _ => "",
        };
        let in_list = self
            .parens
            .last()
            .is_some_and(|p| p.list == List::In && p.only_literals);
        let list = match (keyword, self.last, self.values_end) {
            ("in", _, _) => List::In,
            ("values" | "value", _, _) => List::Values,
            (_, Some((Tok::Comma, _)), Some(end)) => List::MoreValues(end),
            (_, Some((Tok::Open | Tok::Comma, _)), _) if in_list => List::In,
            _ => List::No,
        };
        let parent_literals = self.parens.last().map(|p| p.only_literals);
        self.emit(Tok::Open, "(");
        if list == List::In {
            // A tuple in an IN list keeps the list collapsible until it turns out not to be.
            if let (Some(p), Some(v)) = (self.parens.last_mut(), parent_literals) {
                p.only_literals = v;
            }
        }
        self.parens.push(Paren {
            content_start: self.out.len(),
            list,
            only_literals: true,
        });
    }

    fn close(&mut self) {
        let Some(p) = self.parens.pop() else {
            self.emit(Tok::Close, ")");
            return;
        };
        let has_content = self.out.len() > p.content_start;
        if p.list == List::No || !p.only_literals || !has_content {
            if let Some(parent) = self.parens.last_mut() {
                parent.only_literals = false;
            }
            self.emit(Tok::Close, ")");
            return;
        }
        if let List::MoreValues(at) = p.list {
            // `, (?, ?)` adds nothing to `values(?+)`.
            self.out.truncate(at);
            self.last = Some((Tok::Close, at - 1));
            self.values_end = Some(at);
            return;
        }
        self.out.truncate(p.content_start);
        self.out.push_str("?+");
        let start = self.out.len();
        self.out.push(')');
        self.before_last = self.last;
        self.last = Some((Tok::Close, start));
        self.values_end = (p.list == List::Values).then_some(self.out.len());
    }
}

fn is_keyword(w: &str) -> bool {
    SIGN_CONTEXT.contains(&w)
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Index just past a quoted run starting at `i` (the opening quote), honouring backslash
/// escapes and doubled quotes; the end of input if it is not closed.
fn skip_quoted(s: &[u8], i: usize) -> usize {
    let q = s[i];
    let mut j = i + 1;
    while j < s.len() {
        let b = s[j];
        if b == b'\\' && q != b'`' {
            j += 2;
            continue;
        }
        if b == q {
            if s.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    s.len()
}

/// Length of a number at `i`, or 0 if the run there is an identifier (`1abc`, `2nd_table`).
fn number_len(s: &[u8], i: usize) -> usize {
    let mut j = i;
    if s[j] == b'0' && matches!(s.get(j + 1), Some(b'x' | b'X' | b'b' | b'B')) {
        let hex = matches!(s[j + 1], b'x' | b'X');
        let mut k = j + 2;
        while k < s.len()
            && (if hex {
                s[k].is_ascii_hexdigit()
            } else {
                matches!(s[k], b'0' | b'1')
            })
        {
            k += 1;
        }
        if k > j + 2 && !s.get(k).is_some_and(|&b| is_ident_byte(b)) {
            return k - i;
        }
    }
    while j < s.len() && s[j].is_ascii_digit() {
        j += 1;
    }
    if s.get(j) == Some(&b'.') {
        j += 1;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
    }
    if matches!(s.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(s.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if s.get(k).is_some_and(|b| b.is_ascii_digit()) {
            j = k;
            while j < s.len() && s[j].is_ascii_digit() {
                j += 1;
            }
        }
    }
    if s.get(j).is_some_and(|&b| is_ident_byte(b)) {
        return 0;
    }
    j - i
}

const OPERATORS: &[&str] = &[
    "<=>", "->>", "<=", ">=", "<>", "!=", ":=", "||", "&&", "<<", ">>", "->",
];

/// Writes the fingerprint of `sql` into `out` (cleared first).
pub fn fingerprint(sql: &str, out: &mut String) {
    out.clear();
    let s = sql.as_bytes();
    let mut w = Writer {
        out,
        last: None,
        before_last: None,
        parens: Vec::new(),
        values_end: None,
    };
    let mut in_exec_comment = false;
    let mut word = String::new();
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            b'#' => i = line_end(s, i),
            b'-' if s.get(i + 1) == Some(&b'-')
                && s.get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                i = line_end(s, i)
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                let exec = s.get(i + 2) == Some(&b'!')
                    || (s.get(i + 2) == Some(&b'M') && s.get(i + 3) == Some(&b'!'));
                if exec {
                    i += if s[i + 2] == b'M' { 4 } else { 3 };
                    while i < s.len() && s[i].is_ascii_digit() {
                        i += 1;
                    }
                    in_exec_comment = true;
                } else {
                    i = find(s, i + 2, b"*/").map_or(s.len(), |e| e + 2);
                }
            }
            b'*' if in_exec_comment && s.get(i + 1) == Some(&b'/') => {
                in_exec_comment = false;
                i += 2;
            }
            b'\'' | b'"' => {
                i = skip_quoted(s, i);
                w.literal(false);
            }
            b'`' => {
                let end = skip_quoted(s, i);
                let closed = end > i + 1 && s[end - 1] == b'`';
                let inner = &sql[i + 1..if closed { end - 1 } else { end }];
                word.clear();
                word.push_str(&inner.replace("``", "`"));
                word.make_ascii_lowercase();
                w.emit(Tok::Word, &word);
                i = end;
            }
            b'?' => {
                i += 1;
                w.literal(false);
            }
            b'0'..=b'9' => {
                let n = number_len(s, i);
                if n > 0 {
                    i += n;
                    w.literal(true);
                } else {
                    i = ident(s, sql, i, &mut word, &mut w);
                }
            }
            b'.' if s.get(i + 1).is_some_and(|c| c.is_ascii_digit())
                && !matches!(w.last, Some((Tok::Word | Tok::Close, _))) =>
            {
                i += number_len(s, i).max(1);
                w.literal(true);
            }
            b'(' => {
                i += 1;
                w.open();
            }
            b')' => {
                i += 1;
                w.close();
            }
            b',' => {
                i += 1;
                w.emit(Tok::Comma, ",");
            }
            b'.' => {
                i += 1;
                w.emit(Tok::Dot, ".");
            }
            b';' => {
                i += 1;
                w.emit(Tok::Semi, ";");
            }
            b'@' => {
                let mut j = i + 1;
                if s.get(j) == Some(&b'@') {
                    j += 1;
                }
                if matches!(s.get(j), Some(b'\'' | b'"' | b'`')) {
                    j = skip_quoted(s, j);
                } else {
                    while j < s.len() && is_ident_byte(s[j]) {
                        j += 1;
                    }
                }
                word.clear();
                word.push_str(&sql[i..j]);
                word.make_ascii_lowercase();
                w.emit(Tok::Word, &word);
                i = j;
            }
            _ if is_ident_byte(b) => {
                // X'..', B'..', N'..' and _charset'..' are literals with a prefix.
                let mut j = i;
                while j < s.len() && is_ident_byte(s[j]) {
                    j += 1;
                }
                let prefix = &s[i..j];
                let prefixed = matches!(s.get(j), Some(b'\''))
                    && (matches!(prefix, b"x" | b"X" | b"b" | b"B" | b"n" | b"N")
                        || prefix[0] == b'_');
                if prefixed {
                    i = skip_quoted(s, j);
                    w.literal(false);
                } else {
                    i = ident(s, sql, i, &mut word, &mut w);
                }
            }
            _ => {
                let rest = &sql[i..];
                let op = OPERATORS.iter().find(|o| rest.starts_with(**o)).copied();
                let len =
                    op.map_or_else(|| rest.chars().next().map_or(1, char::len_utf8), str::len);
                w.emit(Tok::Op, &rest[..len]);
                i += len;
            }
        }
    }
    while w.out.ends_with(';') {
        w.out.pop();
        let t = w.out.trim_end().len();
        w.out.truncate(t);
    }
}

fn ident(s: &[u8], sql: &str, i: usize, word: &mut String, w: &mut Writer<'_>) -> usize {
    let mut j = i;
    while j < s.len() && is_ident_byte(s[j]) {
        j += 1;
    }
    word.clear();
    word.push_str(&sql[i..j]);
    word.make_ascii_lowercase();
    w.word(word);
    j
}

fn line_end(s: &[u8], i: usize) -> usize {
    s[i..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(s.len(), |p| i + p + 1)
}

fn find(s: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    s.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    fn fp(sql: &str) -> String {
        let mut o = String::new();
        fingerprint(sql, &mut o);
        o
    }

    /// The corpus: (statement, its fingerprint). Each line pins one rule.
    const CORPUS: &[(&str, &str)] = &[
        ("SELECT 1", "select ?"),
        (
            "select   *\n\tFROM  t WHERE id=42",
            "select * from t where id = ?",
        ),
        (
            "SELECT * FROM t WHERE id = 42",
            "select * from t where id = ?",
        ),
        (
            "SELECT name FROM `Users` WHERE `id` = 7",
            "select name from users where id = ?",
        ),
        (
            "SELECT 'it''s', \"dq\\\"x\", 'back\\\\' FROM t",
            "select ?, ?, ? from t",
        ),
        (
            "SELECT * FROM t WHERE a IN (1, 2, 3)",
            "select * from t where a in(?+)",
        ),
        (
            "SELECT * FROM t WHERE a IN ('x')",
            "select * from t where a in(?+)",
        ),
        (
            "SELECT * FROM t WHERE a in(1,2,3,4,5,6,7,8,9,10)",
            "select * from t where a in(?+)",
        ),
        (
            "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = 1)",
            "select * from t where a in(select b from u where c = ?)",
        ),
        (
            "SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4))",
            "select * from t where(a, b) in(?+)",
        ),
        (
            "SELECT * FROM t WHERE a IN ((1, b))",
            "select * from t where a in((?, b))",
        ),
        (
            "INSERT INTO t (a, b) VALUES (1, 'x')",
            "insert into t(a, b) values(?+)",
        ),
        (
            "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'),(3,'z')",
            "insert into t(a, b) values(?+)",
        ),
        (
            "INSERT INTO t VALUES (1, NOW())",
            "insert into t values(?, now())",
        ),
        (
            "INSERT INTO t VALUES (1, 2) ON DUPLICATE KEY UPDATE b = 3",
            "insert into t values(?+) on duplicate key update b = ?",
        ),
        ("SELECT /* a comment */ 1 -- trailing\n", "select ?"),
        ("SELECT 1 # hash comment\nFROM dual", "select ? from dual"),
        ("/* leading */ SELECT 2", "select ?"),
        (
            "SELECT /*!40001 SQL_NO_CACHE */ * FROM t",
            "select sql_no_cache * from t",
        ),
        ("SELECT /*M!100100 1 */ x", "select ? x"),
        ("SELECT a--1 FROM t", "select a - ? from t"),
        (
            "SELECT -1, +2, a - 3, (-4), x = -5.5e3",
            "select ?, ?, a - ?, (?), x = ?",
        ),
        (
            "SELECT 0x1F, 0b101, X'0A', b'01', N'nat', _utf8mb4'cs', 1.5, .5, 1e10, 2E-3",
            "select ?, ?, ?, ?, ?, ?, ?, ?, ?, ?",
        ),
        (
            "SELECT * FROM t1 JOIN db2.t2 ON t1.id=t2.id",
            "select * from t1 join db2.t2 on t1.id = t2.id",
        ),
        ("SELECT 1abc, 2nd FROM t", "select 1abc, 2nd from t"),
        (
            "SELECT COUNT(*), MAX( a ) FROM t GROUP BY b",
            "select count(*), max(a) from t group by b",
        ),
        (
            "SELECT * FROM t LIMIT 10 OFFSET 20",
            "select * from t limit ? offset ?",
        ),
        ("SELECT * FROM t LIMIT 5, 10;", "select * from t limit ?, ?"),
        (
            "SELECT * FROM t WHERE a = ? AND b IN (?, ?)",
            "select * from t where a = ? and b in(?+)",
        ),
        (
            "SELECT a<=>b, a<>b, a!=b, a>=b, @x:=1, a||b FROM t",
            "select a <=> b, a <> b, a != b, a >= b, @x := ?, a || b from t",
        ),
        (
            "SELECT @@GLOBAL.sql_mode, @@session.autocommit, @UserVar",
            "select @@global.sql_mode, @@session.autocommit, @uservar",
        ),
        ("SET NAMES utf8mb4", "set names utf8mb4"),
        ("SELECT 1; SELECT 2;", "select ?; select ?"),
        (
            "UPDATE t SET a = 'x', b = b + 1 WHERE id = 3",
            "update t set a = ?, b = b + ? where id = ?",
        ),
        (
            "DELETE FROM t WHERE created < '2024-01-01 00:00:00'",
            "delete from t where created < ?",
        ),
        ("SELECT 'unterminated", "select ?"),
        ("SELECT ü FROM Tä", "select ü from tä"),
        ("", ""),
        ("   ", ""),
        ("/* only a comment */", ""),
    ];

    #[test]
    fn corpus() {
        let mut bad = Vec::new();
        for (sql, want) in CORPUS {
            let got = fp(sql);
            if got != *want {
                bad.push(format!("{sql:?}\n   got  {got:?}\n   want {want:?}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn variants_of_one_statement_share_a_class() {
        let variants = [
            "SELECT v FROM t WHERE id = 1",
            "select v from t where id=2",
            "SELECT  v\nFROM t\nWHERE id = 300 -- c",
            "/* x */ SELECT `v` FROM `t` WHERE `id` = '4'",
            "SELECT v FROM t WHERE id = -5",
        ];
        let fps: Vec<String> = variants.iter().map(|s| fp(s)).collect();
        assert!(fps.iter().all(|f| f == &fps[0]), "{fps:?}");
        assert_ne!(
            fp("SELECT v FROM t WHERE id = 1"),
            fp("SELECT v FROM u WHERE id = 1")
        );
        assert_ne!(
            fp("SELECT v FROM t WHERE id = 1"),
            fp("SELECT w FROM t WHERE id = 1")
        );
    }
}
