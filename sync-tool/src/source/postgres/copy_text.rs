//! Decoder for the rows of `COPY ... TO STDOUT` in text format (PostgreSQL docs, "COPY",
//! File Formats / Text Format): one row per line, columns separated by tabs, `\N` for NULL,
//! backslash escapes for backslash, tab, newline, carriage return and the other control
//! characters. Each column is exactly the type's text output, so the dump converts it with the
//! same `pg_text` as the pgoutput stream. Hand-written: no maintained crate decodes this format,
//! and it is a dozen rules.

use anyhow::{anyhow, bail, Result};

/// The rows of a COPY stream whose chunks may end mid-row (PostgreSQL sends one row per
/// message, but nothing here relies on it).
#[derive(Default)]
pub struct Rows {
    buf: Vec<u8>,
    /// Start of the first row not yet returned.
    pos: usize,
}

impl Rows {
    pub fn push(&mut self, chunk: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Decodes the next complete row into `out`; false when there is none yet.
    pub fn next_row(&mut self, out: &mut Vec<Option<String>>) -> Result<bool> {
        let rest = &self.buf[self.pos..];
        let Some(i) = rest.iter().position(|&b| b == b'\n') else {
            return Ok(false);
        };
        fields(&rest[..i], out)?;
        self.pos += i + 1;
        Ok(true)
    }

    /// Error if the stream ended in the middle of a row.
    pub fn finish(&self) -> Result<()> {
        if self.pos != self.buf.len() {
            bail!("COPY output ended in the middle of a row");
        }
        Ok(())
    }
}

/// Decodes one line into its columns (`None` = NULL), reusing `out`.
pub fn fields(line: &[u8], out: &mut Vec<Option<String>>) -> Result<()> {
    out.clear();
    for raw in line.split(|&b| b == b'\t') {
        if raw == b"\\N" {
            out.push(None);
            continue;
        }
        let bytes = if raw.contains(&b'\\') {
            unescape(raw)?
        } else {
            raw.to_vec()
        };
        out.push(Some(
            String::from_utf8(bytes).map_err(|_| anyhow!("COPY output is not valid UTF-8"))?,
        ));
    }
    Ok(())
}

fn unescape(raw: &[u8]) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' {
            v.push(b);
            continue;
        }
        let Some(&e) = raw.get(i) else {
            bail!("COPY output: backslash at the end of a column")
        };
        i += 1;
        match e {
            b'b' => v.push(0x08),
            b'f' => v.push(0x0c),
            b'n' => v.push(b'\n'),
            b'r' => v.push(b'\r'),
            b't' => v.push(b'\t'),
            b'v' => v.push(0x0b),
            b'0'..=b'7' => {
                // up to three octal digits
                let mut n = (e - b'0') as u32;
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            n = n * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                v.push(n as u8);
            }
            b'x' => {
                // one or two hex digits
                let mut n = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match raw.get(i).and_then(|&d| (d as char).to_digit(16)) {
                        Some(d) => {
                            n = n * 16 + d;
                            i += 1;
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    v.push(b'x');
                } else {
                    v.push(n as u8);
                }
            }
            // `\\` and any other escaped character stand for the character itself
            other => v.push(other),
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(line: &str) -> Vec<Option<String>> {
        let mut out = Vec::new();
        fields(line.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn nulls_empty_strings_and_escapes() {
        assert_eq!(
            cols("1\t\\N\t"),
            vec![Some("1".into()), None, Some("".into())]
        );
        assert_eq!(
            cols("a\\tb\\nc\\\\d\\re"),
            vec![Some("a\tb\nc\\d\re".into())]
        );
        // a literal backslash-N inside text is escaped as \\N, not NULL
        assert_eq!(cols("\\\\N"), vec![Some("\\N".into())]);
        assert_eq!(cols("\\b\\f\\v"), vec![Some("\u{8}\u{c}\u{b}".into())]);
        assert_eq!(cols("\\101\\x41\\x4a"), vec![Some("AAJ".into())]);
        assert_eq!(
            cols("caf\u{e9} \u{1F600}"),
            vec![Some("caf\u{e9} \u{1F600}".into())]
        );
        // bytea hex output keeps its leading backslash escaped
        assert_eq!(cols("\\\\x00ff"), vec![Some("\\x00ff".into())]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut out = Vec::new();
        assert!(fields(b"abc\\", &mut out).is_err());
        assert!(fields(b"\xff\xfe", &mut out).is_err());
    }

    #[test]
    fn rows_across_chunks() {
        let mut r = Rows::default();
        let mut got = Vec::new();
        let mut out = Vec::new();
        for chunk in [&b"1\ta\n2\t"[..], b"b", b"\n3\tc\n", b""] {
            r.push(chunk);
            while r.next_row(&mut out).unwrap() {
                got.push(
                    out.iter()
                        .map(|c| c.clone().unwrap())
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
        }
        r.finish().unwrap();
        assert_eq!(got, ["1,a", "2,b", "3,c"]);
        r.push(b"4\td");
        assert!(!r.next_row(&mut out).unwrap());
        assert!(r.finish().is_err());
    }
}
