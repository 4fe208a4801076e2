//! Router parameters: how a module declares them (the host validates each value against its
//! type) and typed access to the values it is configured with.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Enum(&'static [&'static str]),
    /// A server or service name.
    Target,
    Bool,
    /// A duration with a unit, second granularity.
    Seconds,
    /// A PCRE2 pattern, optionally written `/pattern/`.
    Regex,
    /// Comma-separated, each element trimmed.
    StringList,
}

#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: ParamKind,
    /// `None`: the parameter is mandatory.
    pub default: Option<&'static str>,
}

/// A complete parameter set, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new<K: Into<String>, V: Into<String>>(kv: impl IntoIterator<Item = (K, V)>) -> Self {
        Params(kv.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// The value of `name`, falling back to the declared default.
    pub fn raw<'a>(&'a self, specs: &'a [ParamSpec], name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| {
                specs
                    .iter()
                    .find(|s| s.name == name)
                    .and_then(|s| s.default)
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Typed reads of a parameter set against its declarations; errors name the parameter.
pub struct Reader<'a> {
    pub specs: &'a [ParamSpec],
    pub params: &'a Params,
}

impl<'a> Reader<'a> {
    pub fn new(specs: &'a [ParamSpec], params: &'a Params) -> Self {
        Reader { specs, params }
    }

    fn get(&self, name: &str) -> Result<&'a str, String> {
        self.params
            .raw(self.specs, name)
            .ok_or_else(|| format!("'{name}' is mandatory"))
    }

    pub fn string(&self, name: &str) -> Result<String, String> {
        Ok(unquote(self.get(name)?).to_string())
    }

    pub fn enumeration(&self, name: &str) -> Result<&'static str, String> {
        let v = self.get(name)?.trim();
        let spec = self.specs.iter().find(|s| s.name == name);
        match spec.map(|s| s.kind) {
            Some(ParamKind::Enum(values)) => {
                values.iter().find(|x| **x == v).copied().ok_or_else(|| {
                    format!(
                        "invalid value '{v}' for '{name}': expected one of {}",
                        values.join(", ")
                    )
                })
            }
            _ => Err(format!("'{name}' is not an enumeration")),
        }
    }

    pub fn boolean(&self, name: &str) -> Result<bool, String> {
        parse_bool(self.get(name)?).ok_or_else(|| format!("invalid boolean for '{name}'"))
    }

    pub fn duration(&self, name: &str) -> Result<Duration, String> {
        parse_duration(self.get(name)?).map_err(|e| format!("'{name}': {e}"))
    }

    pub fn list(&self, name: &str) -> Result<Vec<String>, String> {
        Ok(parse_list(self.get(name)?))
    }

    /// The pattern of a regex parameter, without the optional slashes; empty means none.
    pub fn regex(&self, name: &str) -> Result<String, String> {
        Ok(strip_slashes(self.get(name)?.trim()).to_string())
    }
}

fn unquote(s: &str) -> &str {
    let t = s.trim();
    if t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')))
    {
        &t[1..t.len() - 1]
    } else {
        s
    }
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// `300s`, `5m`, `5min`, `1h`, `1500ms` (MaxScale's units, case-insensitive).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration '{s}'"))?;
    let ms = match unit {
        "h" => n * 3_600_000,
        "m" | "min" => n * 60_000,
        "s" => n * 1000,
        "ms" => n,
        "" => return Err(format!("duration '{s}' needs a unit (h, m, s or ms)")),
        _ => return Err(format!("invalid duration unit in '{s}'")),
    };
    Ok(Duration::from_millis(ms))
}

pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

pub fn strip_slashes(s: &str) -> &str {
    if s.len() >= 2 && s.starts_with('/') && s.ends_with('/') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ParamSpec] = &[
        ParamSpec {
            name: "mode",
            description: "",
            kind: ParamKind::Enum(&["a", "b"]),
            default: Some("a"),
        },
        ParamSpec {
            name: "t",
            description: "",
            kind: ParamKind::Seconds,
            default: Some("300s"),
        },
        ParamSpec {
            name: "need",
            description: "",
            kind: ParamKind::String,
            default: None,
        },
    ];

    #[test]
    fn defaults_and_overrides() {
        let p = Params::new([("mode", "b")]);
        let r = Reader::new(SPECS, &p);
        assert_eq!(r.enumeration("mode").unwrap(), "b");
        assert_eq!(r.duration("t").unwrap(), Duration::from_secs(300));
        assert!(r.string("need").unwrap_err().contains("mandatory"));
        let bad = Params::new([("mode", "c")]);
        assert!(Reader::new(SPECS, &bad)
            .enumeration("mode")
            .unwrap_err()
            .contains("expected one of a, b"));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("300000ms").unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(parse_duration("5MIN").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("300").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn lists_and_regexes() {
        assert_eq!(parse_list(" a , b,,c "), vec!["a", "b", "c"]);
        assert_eq!(strip_slashes("/^db1/"), "^db1");
        assert_eq!(strip_slashes("^db1"), "^db1");
    }
}
