//! One line of the mirror's export, as the mirror writes it (mirror/src/report.rs): `query`,
//! `command`, `session`, `query_id` and `results`, each result with `target`, `checksum`,
//! `rows`, `warnings`, `duration` (ms) and `type`. Parsing is lenient where the mirror may grow
//! (unknown keys are ignored, a `report_diff` is kept as raw JSON wherever it appears) and
//! strict where the verdict depends on it (wrong types make the line invalid).

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

#[derive(Deserialize)]
pub struct Doc<'a> {
    /// Absent in the native router's reports when the SQL was not valid UTF-8.
    #[serde(borrow, default)]
    pub query: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub command: Cow<'a, str>,
    pub session: u64,
    pub query_id: u64,
    #[serde(borrow)]
    pub results: Vec<Entry<'a>>,
    /// A statement-level difference description, if a newer mirror writes one here.
    #[serde(borrow, default)]
    pub report_diff: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct Entry<'a> {
    #[serde(borrow)]
    pub target: Cow<'a, str>,
    #[serde(borrow, default)]
    pub checksum: Option<Cow<'a, str>>,
    #[serde(default)]
    pub rows: Option<u64>,
    #[serde(default)]
    pub warnings: Option<u64>,
    #[serde(default)]
    pub duration: Option<u64>,
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    /// Set by a mirror that dropped this target from the statement (e.g. its backlog was full).
    #[serde(default)]
    pub dropped: Option<bool>,
    /// Where the first difference from main's answer is, if the mirror says (`report_diff=true`).
    #[serde(borrow, default)]
    pub report_diff: Option<&'a RawValue>,
}

/// What a target answered, reduced to what the comparison needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Ok,
    Error,
    Resultset,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Error => "error",
            Kind::Resultset => "resultset",
        }
    }
}

/// A result entry that carries an answer.
pub struct Answer<'e> {
    pub checksum: &'e str,
    pub rows: u64,
    pub warnings: u64,
    pub duration: u64,
    pub kind: Kind,
}

impl Entry<'_> {
    /// The answer, or None for an entry that says the target did not answer (dropped, or no
    /// checksum/type: the shape a mirror uses for a target that was left out).
    pub fn answer(&self) -> Option<Answer<'_>> {
        if self.dropped == Some(true) {
            return None;
        }
        let kind = match self.kind.as_deref()? {
            "ok" => Kind::Ok,
            "error" => Kind::Error,
            "resultset" => Kind::Resultset,
            _ => return None,
        };
        Some(Answer {
            checksum: self.checksum.as_deref()?,
            rows: self.rows.unwrap_or(0),
            warnings: self.warnings.unwrap_or(0),
            duration: self.duration.unwrap_or(0),
            kind,
        })
    }
}

pub enum Parsed<'a> {
    Doc(Doc<'a>),
    Invalid(String),
}

/// Parses one line. A line that is not valid UTF-8 is read with U+FFFD in place of the bad
/// bytes (into `lossy`, which the document then borrows from); `replaced` says so.
pub fn parse<'a>(line: &'a [u8], lossy: &'a mut String, replaced: &mut bool) -> Parsed<'a> {
    *replaced = false;
    let line = trim_line_end(line);
    let text: &'a str = match std::str::from_utf8(line) {
        Ok(s) => s,
        Err(_) => {
            *replaced = true;
            *lossy = String::from_utf8_lossy(line).into_owned();
            lossy.as_str()
        }
    };
    match serde_json::from_str::<Doc>(text) {
        Ok(d) => Parsed::Doc(d),
        // serde would take an array for a struct and say something odd about it.
        Err(_) if !text.trim_start().starts_with('{') => {
            Parsed::Invalid("not a JSON object".into())
        }
        Err(e) => Parsed::Invalid(e.to_string()),
    }
}

fn trim_line_end(mut l: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query, and each result's target with its answer in one string.
    type Summary = (Option<String>, Vec<(String, Option<String>)>);

    fn doc(line: &str) -> Result<Summary, String> {
        let mut lossy = String::new();
        let mut rep = false;
        match parse(line.as_bytes(), &mut lossy, &mut rep) {
            Parsed::Doc(d) => Ok((
                d.query.map(|q| q.into_owned()),
                d.results
                    .iter()
                    .map(|e| {
                        (
                            e.target.to_string(),
                            e.answer().map(|a| {
                                format!(
                                    "{}/{}/{}/{}/{}",
                                    a.checksum,
                                    a.rows,
                                    a.warnings,
                                    a.duration,
                                    a.kind.name()
                                )
                            }),
                        )
                    })
                    .collect(),
            )),
            Parsed::Invalid(e) => Err(e),
        }
    }

    /// The exact line the mirror writes (mirror/src/report.rs `document_layout`).
    #[test]
    fn native_document() {
        let l = r#"{"query":"SELECT 1","command":"COM_QUERY","session":12,"query_id":1,"results":[{"target":"server1","checksum":"7a6c1f24","rows":1,"warnings":0,"duration":0,"type":"resultset"},{"target":"server2","checksum":"01000000","rows":1,"warnings":2,"duration":15,"type":"ok"}]}"#;
        let (q, r) = doc(l).unwrap();
        assert_eq!(q.as_deref(), Some("SELECT 1"));
        assert_eq!(
            r[0],
            ("server1".into(), Some("7a6c1f24/1/0/0/resultset".into()))
        );
        assert_eq!(r[1], ("server2".into(), Some("01000000/1/2/15/ok".into())));
    }

    #[test]
    fn escapes_as_the_mirror_writes_them() {
        let l = "{\"query\":\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\\u001F/é€\",\"command\":\"COM_UNKNOWN(1e)\",\"session\":1,\"query_id\":2,\"results\":[]}";
        let (q, r) = doc(l).unwrap();
        assert_eq!(q.unwrap(), "a\"b\\c\n\t\r\u{8}\u{c}\u{1}\u{1f}/é€");
        assert!(r.is_empty());
    }

    #[test]
    fn native_report_without_query_key() {
        let (q, _) =
            doc(r#"{"command":"COM_QUERY","session":1,"query_id":1,"results":[]}"#).unwrap();
        assert_eq!(q, None);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut line = br#"{"query":"SELECT 'x'","command":"COM_QUERY","session":1,"query_id":1,"results":[]}"#.to_vec();
        let at = line.iter().position(|&b| b == b'x').unwrap();
        line[at] = 0xFF;
        let mut lossy = String::new();
        let mut rep = false;
        let Parsed::Doc(d) = parse(&line, &mut lossy, &mut rep) else {
            panic!("not parsed")
        };
        assert_eq!(d.query.as_deref(), Some("SELECT '\u{fffd}'"));
        drop(d);
        assert!(rep);
    }

    #[test]
    fn report_diff_and_unknown_keys() {
        let l = r#"{"query":"SELECT v FROM t","command":"COM_QUERY","session":3,"query_id":9,"results":[{"target":"a","checksum":"00000001","rows":2,"warnings":0,"duration":1,"type":"resultset"},{"target":"b","checksum":"00000002","rows":2,"warnings":0,"duration":1,"type":"resultset","report_diff":{"row":1,"main":["x"],"other":["y"]},"new_key":[1,2]}],"future":{"a":1}}"#;
        let mut lossy = String::new();
        let mut rep = false;
        let Parsed::Doc(d) = parse(l.as_bytes(), &mut lossy, &mut rep) else {
            panic!()
        };
        assert!(d.results[0].report_diff.is_none());
        assert_eq!(
            d.results[1].report_diff.unwrap().get(),
            r#"{"row":1,"main":["x"],"other":["y"]}"#
        );
        // Any JSON is accepted there, not only objects.
        let l2 =
            r#"{"command":"COM_QUERY","session":3,"query_id":9,"results":[],"report_diff":"text"}"#;
        let Parsed::Doc(d2) = parse(l2.as_bytes(), &mut lossy, &mut rep) else {
            panic!()
        };
        assert_eq!(d2.report_diff.unwrap().get(), r#""text""#);
    }

    #[test]
    fn dropped_targets_have_no_answer() {
        let l = r#"{"query":"SELECT 1","command":"COM_QUERY","session":1,"query_id":1,"results":[{"target":"a","checksum":"00000001","rows":1,"warnings":0,"duration":1,"type":"resultset"},{"target":"b","dropped":true,"reason":"backlog"},{"target":"c","type":"dropped"},{"target":"d","checksum":"00000001","rows":1,"warnings":0,"duration":1,"type":"resultset","dropped":true}]}"#;
        let (_, r) = doc(l).unwrap();
        assert!(r[0].1.is_some());
        assert!(r[1..].iter().all(|(_, a)| a.is_none()), "{r:?}");
    }

    #[test]
    fn not_the_shape() {
        for l in [
            "",
            "not json",
            "[1,2]",
            r#"{"query":"x"}"#,
            r#"{"command":"COM_QUERY","session":"1","query_id":1,"results":[]}"#,
            r#"{"command":"COM_QUERY","session":1,"query_id":1,"results":[{"checksum":"0"}]}"#,
            r#"{"command":"COM_QUERY","session":1,"query_id":1,"results":[{"target":"a","rows":"many"}]}"#,
            r#"{"command":"COM_QUERY","session":1,"query_id":1,"results":[]"#,
        ] {
            assert!(doc(l).is_err(), "accepted: {l}");
        }
    }

    #[test]
    fn line_endings_are_trimmed() {
        assert!(
            doc("{\"command\":\"COM_PING\",\"session\":1,\"query_id\":1,\"results\":[]}\r\n")
                .is_ok()
        );
    }
}
