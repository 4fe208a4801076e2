//! The per-statement report, serialised exactly as the native router does (jansson's compact
//! output): keys in a fixed order, `,`/`:` without spaces, control characters escaped as
//! `\n \t \r \b \f` or `\u00XX` with uppercase hex, `/` and non-ASCII UTF-8 left as they are.
//! Hand-written because serde_json escapes differently (lowercase hex) and the point of the
//! format is byte-compatibility with existing consumers.

use bridge::protocol::command_name;
use std::fmt::Write;

pub struct TargetResult<'a> {
    pub target: &'a str,
    pub checksum: u32,
    pub rows: u64,
    pub warnings: u16,
    pub duration_ms: u64,
    pub kind: &'a str,
    /// With report_diff, for a result that differs from main's: where (a JSON object),
    /// written after the native keys.
    pub diff: Option<String>,
}

pub struct Report<'a> {
    /// The SQL of COM_QUERY and COM_STMT_PREPARE, else empty. Invalid UTF-8 is replaced by
    /// U+FFFD instead of dropping the key as the native router does.
    pub query: &'a [u8],
    pub command: u8,
    pub session: u64,
    pub query_id: u64,
    pub results: Vec<TargetResult<'a>>,
}

/// The checksum as exported: the CRC's in-memory bytes on a little-endian host, in hex.
#[cfg(test)]
pub fn checksum_hex(crc: u32) -> String {
    let b = crc.to_le_bytes();
    format!("{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Report<'_> {
    /// The document and a newline, as the file exporter writes it, into `o` (cleared).
    pub fn write_line(&self, o: &mut String) {
        o.clear();
        self.write(o);
        o.push('\n');
    }

    #[cfg(test)]
    pub fn to_json(&self) -> String {
        let mut o = String::new();
        self.write(&mut o);
        o
    }

    /// Written without `core::fmt` (the report is made for every request).
    fn write(&self, o: &mut String) {
        let diffs: usize = self
            .results
            .iter()
            .map(|r| r.diff.as_ref().map_or(0, |d| d.len() + 8))
            .sum();
        o.reserve(161 + self.query.len() + 120 * self.results.len() + diffs);
        o.push_str("{\"query\":");
        json_string(o, &String::from_utf8_lossy(self.query));
        o.push_str(",\"command\":");
        json_string(o, &command_name(self.command));
        o.push_str(",\"session\":");
        push_u64(o, self.session);
        o.push_str(",\"query_id\":");
        push_u64(o, self.query_id);
        o.push_str(",\"results\":[");
        for (i, r) in self.results.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"target\":");
            json_string(o, r.target);
            o.push_str(",\"checksum\":\"");
            push_checksum(o, r.checksum);
            o.push_str("\",\"rows\":");
            push_u64(o, r.rows);
            o.push_str(",\"warnings\":");
            push_u64(o, r.warnings as u64);
            o.push_str(",\"duration\":");
            push_u64(o, r.duration_ms);
            o.push_str(",\"type\":");
            json_string(o, r.kind);
            if let Some(d) = &r.diff {
                o.push_str(",\"diff\":");
                o.push_str(d);
            }
            o.push('}');
        }
        o.push_str("]}");
    }
}

fn push_u64(o: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    o.push_str(std::str::from_utf8(&buf[i..]).expect("digits"));
}

fn push_checksum(o: &mut String, crc: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 8];
    for (i, b) in crc.to_le_bytes().iter().enumerate() {
        buf[2 * i] = HEX[(b >> 4) as usize];
        buf[2 * i + 1] = HEX[(b & 15) as usize];
    }
    o.push_str(std::str::from_utf8(&buf).expect("hex"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_test_vector() {
        // A plain OK packet with autocommit status, header included.
        let ok = [
            0x07, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
        ];
        let crc = crc32fast::hash(&ok);
        assert_eq!(crc, 0x241F6C7A);
        assert_eq!(checksum_hex(crc), "7a6c1f24");
        assert_eq!(checksum_hex(0), "00000000");
    }

    #[test]
    fn document_layout() {
        let r = Report {
            query: b"SELECT 1",
            command: 3,
            session: 12,
            query_id: 1,
            results: vec![
                TargetResult {
                    target: "server1",
                    checksum: 0x241F6C7A,
                    rows: 1,
                    warnings: 0,
                    duration_ms: 0,
                    kind: "resultset",
                    diff: None,
                },
                TargetResult {
                    target: "server2",
                    checksum: 1,
                    rows: 1,
                    warnings: 2,
                    duration_ms: 15,
                    kind: "ok",
                    diff: None,
                },
            ],
        };
        assert_eq!(
            r.to_json(),
            r#"{"query":"SELECT 1","command":"COM_QUERY","session":12,"query_id":1,"results":[{"target":"server1","checksum":"7a6c1f24","rows":1,"warnings":0,"duration":0,"type":"resultset"},{"target":"server2","checksum":"01000000","rows":1,"warnings":2,"duration":15,"type":"ok"}]}"#
        );
    }

    #[test]
    fn diff_follows_the_native_keys() {
        let r = Report {
            query: b"SELECT v FROM t",
            command: 3,
            session: 1,
            query_id: 1,
            results: vec![TargetResult {
                target: "s2",
                checksum: 1,
                rows: 1,
                warnings: 0,
                duration_ms: 0,
                kind: "resultset",
                diff: Some(r#"{"at":"row","row":0}"#.into()),
            }],
        };
        let mut line = String::new();
        r.write_line(&mut line);
        assert!(line.ends_with(
            r#""type":"resultset","diff":{"at":"row","row":0}}]}
"#
        ));
    }

    #[test]
    fn numbers_and_checksums_without_fmt() {
        for v in [0u64, 7, 10, 12345, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, v);
            assert_eq!(s, v.to_string());
        }
        let mut s = String::new();
        push_checksum(&mut s, 0x241F6C7A);
        assert_eq!(s, checksum_hex(0x241F6C7A));
    }

    #[test]
    fn escaping_like_jansson() {
        let r = Report {
            query: "a\"b\\c\n\t\r\u{8}\u{c}\u{1}\u{1f}/é€\u{7f}".as_bytes(),
            command: 0x1e,
            session: 1,
            query_id: 2,
            results: vec![],
        };
        let j = r.to_json();
        assert_eq!(
            j,
            "{\"query\":\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\\u001F/é€\u{7f}\",\"command\":\"COM_UNKNOWN(1e)\",\"session\":1,\"query_id\":2,\"results\":[]}"
        );
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["query"], "a\"b\\c\n\t\r\u{8}\u{c}\u{1}\u{1f}/é€\u{7f}");
    }

    #[test]
    fn invalid_utf8_keeps_the_query_key() {
        let r = Report {
            query: b"SELECT '\xff'",
            command: 3,
            session: 1,
            query_id: 1,
            results: vec![],
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["query"], "SELECT '\u{fffd}'");
    }
}
