//! etcd key layout: a template with `{path}`, `{schema}`, `{table}` and `{pk}`; `{pk}` must be
//! the last segment (`.../{pk}`), so every table owns the prefix ending in `/` before it, which
//! TRUNCATE and stale-key removal delete as a range. Schema, table and each primary-key
//! component are percent-encoded (everything but `A-Z a-z 0-9 - . _ ~`); the components of a
//! composite key are joined with `,` in primary-key order.

use anyhow::{bail, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Schema,
    Table,
}

#[derive(Debug, Clone)]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

impl KeyTemplate {
    pub fn parse(tpl: &str, path: &str) -> Result<KeyTemplate> {
        let Some(head) = tpl.strip_suffix("/{pk}") else {
            bail!("template {tpl:?} must end with \"/{{pk}}\"");
        };
        if !head.starts_with('/') {
            bail!("template {tpl:?} must start with '/'");
        }
        let mut parts = Vec::new();
        let mut rest = head;
        let mut has_table = false;
        while let Some(i) = rest.find('{') {
            if i > 0 {
                parts.push(Part::Lit(rest[..i].to_string()));
            }
            let Some(j) = rest[i..].find('}') else {
                bail!("template {tpl:?}: unclosed '{{'");
            };
            match &rest[i + 1..i + j] {
                "path" => parts.push(Part::Lit(path.trim_matches('/').to_string())),
                "schema" => parts.push(Part::Schema),
                "table" => {
                    has_table = true;
                    parts.push(Part::Table)
                }
                "pk" => bail!("template {tpl:?}: {{pk}} may only appear once, at the end"),
                other => bail!(
                    "template {tpl:?}: unknown placeholder {{{other}}} (use {{path}}, {{schema}}, {{table}}, {{pk}})"
                ),
            }
            rest = &rest[i + j + 1..];
        }
        if rest.contains('}') {
            bail!("template {tpl:?}: unmatched '}}'");
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        if !has_table {
            bail!("template {tpl:?} must contain {{table}}");
        }
        Ok(KeyTemplate { parts })
    }

    /// The literal beginning of every key (before the first per-table placeholder).
    pub fn static_prefix(&self) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                _ => break,
            }
        }
        s
    }

    /// `/<path>/<table>/` — the prefix owning all keys of the table (ends in `/`).
    pub fn table_prefix(&self, schema: &str, table: &str) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Schema => s.push_str(&encode(schema)),
                Part::Table => s.push_str(&encode(table)),
            }
        }
        s.push('/');
        s
    }
}

/// The `{pk}` segment from the JSON-mapped values of the primary-key columns.
#[cfg(test)]
pub fn pk_segment<'a>(values: impl IntoIterator<Item = &'a Value>) -> Result<String> {
    let mut out = String::new();
    push_pk_segment(&mut out, values)?;
    Ok(out)
}

/// Appends the encoding of `s` (fast path when nothing needs escaping).
fn push_encoded(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        out.push_str(s);
    } else {
        out.extend(utf8_percent_encode(s, SEGMENT));
    }
}

/// Appends the `{pk}` segment to `out` (a key being built, no intermediate strings).
pub fn push_pk_segment<'a>(
    out: &mut String,
    values: impl IntoIterator<Item = &'a Value>,
) -> Result<()> {
    let start = out.len();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            Value::Null => bail!("primary-key column is NULL"),
            Value::String(s) => push_encoded(out, s),
            Value::Number(n) => push_encoded(out, &n.to_string()),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            other => push_encoded(out, &other.to_string()),
        }
    }
    if out.len() == start {
        bail!("empty primary key");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_template() {
        let t = KeyTemplate::parse("/{path}/{table}/{pk}", "contrail").unwrap();
        assert_eq!(
            t.table_prefix("public", "virtual_network"),
            "/contrail/virtual_network/"
        );
        assert_eq!(t.static_prefix(), "/contrail/");
        let t = KeyTemplate::parse("/{path}/{schema}.{table}/{pk}", "/a/b/").unwrap();
        assert_eq!(t.table_prefix("s 1", "t/x"), "/a/b/s%201.t%2Fx/");
    }

    #[test]
    fn bad_templates() {
        for t in [
            "/{path}/{table}",
            "{table}/{pk}",
            "/{path}/{pk}",
            "/{x}/{table}/{pk}",
            "/{table}/{pk}/{pk}",
            "/{table/{pk}",
        ] {
            assert!(KeyTemplate::parse(t, "p").is_err(), "{t}");
        }
    }

    #[test]
    fn pk_encoding() {
        assert_eq!(
            pk_segment([&json!(1), &json!("a/b,c")]).unwrap(),
            "1,a%2Fb%2Cc"
        );
        assert_eq!(pk_segment([&json!("5720afd0-x")]).unwrap(), "5720afd0-x");
        assert!(pk_segment([&json!(null)]).is_err());
    }
}
