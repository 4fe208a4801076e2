//! A tolerant MariaDB lexer: it never fails, whatever the input.
//!
//! Why hand-written: the router needs only a few facts about a statement (its kind, the
//! tables and databases it names) and must not give up on MariaDB-specific syntax, partial
//! statements, executable comments or statements sqlparser-rs does not know (it rejects much of
//! MariaDB's dialect: `SHOW SHARDS`, `EXECUTE IMMEDIATE`, `LOCK TABLES`, `/*! */` comments,
//! index hints, `RENAME TABLE a TO b, c TO d`...). A lexer plus keyword-driven extraction
//! degrades gracefully: unknown syntax yields fewer names, never an error.

use std::borrow::Cow;

/// A token's text borrows the statement's unless unescaping changed it: analysing a statement
/// then allocates only its token lists, not every word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok<'a> {
    /// A bare word: keyword or identifier, as written.
    Word(Cow<'a, str>),
    /// A `backquoted` identifier, unescaped.
    Quoted(Cow<'a, str>),
    /// A 'string' or "string" literal, unescaped.
    Str(Cow<'a, str>),
    Num(Cow<'a, str>),
    /// `@name`, `@@name`, `@'quoted'` (the text after the @ signs).
    Var(Cow<'a, str>),
    /// `:=`, `<=`, `>=`, `<>`, `!=`, `||`, `&&`, `<=>`, `->`, `->>`.
    Op(&'static str),
    /// Any other single character.
    Punct(char),
}

impl Tok<'_> {
    /// Whether this is the bare word `kw` (case-insensitive).
    pub fn is(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
    pub fn is_punct(&self, c: char) -> bool {
        matches!(self, Tok::Punct(p) if *p == c)
    }
    /// An identifier: a bare word or a backquoted name.
    pub fn ident(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::Quoted(w) => Some(w.as_ref()),
            _ => None,
        }
    }
}

const OPS: [&str; 10] = ["<=>", "->>", ":=", "<=", ">=", "<>", "!=", "||", "&&", "->"];

/// Splits SQL text into tokens. Comments are dropped; the contents of executable comments
/// (`/*! ... */`, `/*!50100 ... */`, `/*M! ... */`) are kept, as the server runs them.
pub fn tokenize(sql: &str) -> Vec<Tok<'_>> {
    tokenize_spans(sql).0
}

/// `tokenize`, with the byte offset in `sql` where each token starts (for rewriting part of
/// a statement: an item's text runs from its first token to the next separator's start).
pub fn tokenize_spans(sql: &str) -> (Vec<Tok<'_>>, Vec<usize>) {
    let b = sql.as_bytes();
    // About one token per five bytes of SQL: fewer regrowths.
    let mut out = Vec::with_capacity(b.len() / 5 + 4);
    let mut starts = Vec::with_capacity(b.len() / 5 + 4);
    let mut i = 0;
    let mut exec_comment = 0usize;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let before = out.len();
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C => i += 1,
            b'#' => i = skip_line(b, i),
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = skip_line(b, i)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let exec = b.get(i + 2) == Some(&b'!')
                    || (b.get(i + 2) == Some(&b'M') && b.get(i + 3) == Some(&b'!'));
                if exec {
                    i += if b[i + 2] == b'M' { 4 } else { 3 };
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    exec_comment += 1;
                } else {
                    i = match find(b, i + 2, b"*/") {
                        Some(end) => end + 2,
                        None => b.len(),
                    };
                }
            }
            b'*' if exec_comment > 0 && b.get(i + 1) == Some(&b'/') => {
                exec_comment -= 1;
                i += 2;
            }
            b'\'' | b'"' => {
                let (s, next) = quoted(sql, i, c, true);
                out.push(Tok::Str(s));
                i = next;
            }
            b'`' => {
                let (s, next) = quoted(sql, i, b'`', false);
                out.push(Tok::Quoted(s));
                i = next;
            }
            b'@' => {
                let mut j = i + 1;
                if b.get(j) == Some(&b'@') {
                    j += 1;
                }
                if let Some(&q @ (b'\'' | b'"' | b'`')) = b.get(j) {
                    let (s, next) = quoted(sql, j, q, q != b'`');
                    out.push(Tok::Var(s));
                    i = next;
                } else {
                    let end = word_end(b, j, true);
                    out.push(Tok::Var(text_of(sql, j, end)));
                    i = end;
                }
            }
            b'0'..=b'9' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.' || b[j] == b'_')
                {
                    j += 1;
                }
                // `1abc` is an identifier in MariaDB when it is not all digits/hex.
                let text = text_of(sql, i, j);
                if text.bytes().all(|c| c.is_ascii_digit())
                    || text.contains('.')
                    || text.starts_with("0x")
                {
                    out.push(Tok::Num(text));
                } else {
                    out.push(Tok::Word(text));
                }
                i = j;
            }
            _ if is_word_byte(c) => {
                // x'..', b'..', N'..', _utf8'..': literals with a prefix.
                let end = word_end(b, i, false);
                if b.get(end) == Some(&b'\'') && (end - i == 1 || b[i] == b'_') {
                    let (s, next) = quoted(sql, end, b'\'', true);
                    out.push(Tok::Str(s));
                    i = next;
                } else {
                    out.push(Tok::Word(text_of(sql, i, end)));
                    i = end;
                }
            }
            _ => {
                if let Some(op) = OPS.iter().find(|op| b[i..].starts_with(op.as_bytes())) {
                    out.push(Tok::Op(op));
                    i += op.len();
                } else {
                    // A whole UTF-8 character (never split inside one).
                    let ch = sql[i..].chars().next().unwrap_or('?');
                    out.push(Tok::Punct(ch));
                    i += ch.len_utf8().max(1);
                }
            }
        }
        if out.len() > before {
            starts.push(start);
        }
    }
    (out, starts)
}

/// `sql[from..to]` (the lexer cuts only at character boundaries; a cut elsewhere is read
/// lossily rather than panicking).
fn text_of(sql: &str, from: usize, to: usize) -> Cow<'_, str> {
    match sql.get(from..to) {
        Some(t) => Cow::Borrowed(t),
        None => String::from_utf8_lossy(&sql.as_bytes()[from..to]),
    }
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn word_end(b: &[u8], mut i: usize, var: bool) -> usize {
    while i < b.len() && (is_word_byte(b[i]) || (var && b[i] == b'.')) {
        i += 1;
    }
    i
}

fn skip_line(b: &[u8], i: usize) -> usize {
    match b[i..].iter().position(|&c| c == b'\n') {
        Some(p) => i + p + 1,
        None => b.len(),
    }
}

fn find(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| p + from)
}

/// Reads a quoted text starting at the quote `sql[i]`; a doubled quote is one quote and, for
/// strings, backslash escapes apply. An unterminated text runs to the end.
fn quoted(sql: &str, i: usize, q: u8, escapes: bool) -> (Cow<'_, str>, usize) {
    let b = sql.as_bytes();
    // Most texts hold neither escapes nor doubled quotes: they are borrowed as they stand.
    let special = b[i + 1..]
        .iter()
        .position(|&c| c == q || (escapes && c == b'\\'))
        .map(|p| i + 1 + p);
    match special {
        Some(j) if b[j] == q && b.get(j + 1) != Some(&q) => {
            return (text_of(sql, i + 1, j), j + 1);
        }
        None => return (text_of(sql, i + 1, b.len()), b.len()),
        _ => {}
    }
    let mut out = Vec::new();
    let mut j = i + 1;
    while j < b.len() {
        let c = b[j];
        if escapes && c == b'\\' && j + 1 < b.len() {
            let e = b[j + 1];
            if e == b'%' || e == b'_' {
                // `\%` and `\_` keep their backslash (they are LIKE escapes).
                out.push(b'\\');
            }
            out.push(match e {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'0' => 0,
                b'Z' => 0x1A,
                o => o,
            });
            j += 2;
        } else if c == q {
            if b.get(j + 1) == Some(&q) {
                out.push(q);
                j += 2;
            } else {
                return (
                    Cow::Owned(String::from_utf8_lossy(&out).into_owned()),
                    j + 1,
                );
            }
        } else {
            out.push(c);
            j += 1;
        }
    }
    (
        Cow::Owned(String::from_utf8_lossy(&out).into_owned()),
        b.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = tokenize("SELECT `a``b`.c, 'it''s', \"x\\\"y\" -- note\n/* c */ FROM t#x\n/*!40101 WHERE 1 */ @@v @u:=1");
        assert_eq!(t[1], Tok::Quoted("a`b".into()));
        assert_eq!(t[2], Tok::Punct('.'));
        assert_eq!(t[5], Tok::Str("it's".into()));
        assert_eq!(t[7], Tok::Str("x\"y".into()));
        assert!(t[8].is("from"));
        assert!(t[10].is("WHERE"));
        assert_eq!(t[12], Tok::Var("v".into()));
        assert_eq!(t[13], Tok::Var("u".into()));
        assert_eq!(t[14], Tok::Op(":="));
    }

    #[test]
    fn texts_borrow_unless_unescaped() {
        let t = tokenize("SELECT `t`, 'a', 'it''s', 'a\\nb', `x``y`, \"q\", 'open");
        assert!(matches!(&t[1], Tok::Quoted(Cow::Borrowed("t"))));
        assert!(matches!(&t[3], Tok::Str(Cow::Borrowed("a"))));
        assert!(matches!(&t[5], Tok::Str(Cow::Owned(s)) if s == "it's"));
        assert!(matches!(&t[7], Tok::Str(Cow::Owned(s)) if s == "a\nb"));
        assert!(matches!(&t[9], Tok::Quoted(Cow::Owned(s)) if s == "x`y"));
        assert!(matches!(&t[11], Tok::Str(Cow::Borrowed("q"))));
        assert!(
            matches!(&t[13], Tok::Str(Cow::Borrowed("open"))),
            "unterminated"
        );
        assert!(matches!(&t[0], Tok::Word(Cow::Borrowed("SELECT"))));
    }

    #[test]
    fn spans() {
        let sql = "LOCK TABLES `t1` READ /*!32311 LOCAL */,x.t2 WRITE";
        let (t, s) = tokenize_spans(sql);
        assert_eq!(t.len(), s.len());
        let comma = t.iter().position(|x| x.is_punct(',')).unwrap();
        assert_eq!(&sql[s[2]..s[comma]], "`t1` READ /*!32311 LOCAL */");
        assert_eq!(&sql[s[comma + 1]..], "x.t2 WRITE");
    }

    #[test]
    fn never_fails() {
        for s in [
            "'unterminated",
            "`x",
            "/* open",
            "@",
            "é€😀",
            "\\",
            "x'",
            "--",
            "/*!",
            "*/",
        ] {
            let _ = tokenize(s);
        }
    }
}
