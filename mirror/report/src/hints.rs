//! Why a class may give different answers on two servers of the same version: what its SQL
//! (the fingerprint) calls, and what its conflicts look like. Used when there is no
//! `--baseline` to measure it; only a hint, it does not change what counts as a conflict.

/// Functions whose value depends on the moment, the server or the connection.
const CALLS: &[(&str, &str)] = &[
    ("now(", "now()"),
    ("sysdate(", "sysdate()"),
    ("current_timestamp", "current_timestamp"),
    ("localtime", "localtime"),
    ("curdate(", "curdate()"),
    ("current_date", "current_date"),
    ("curtime(", "curtime()"),
    ("current_time", "current_time"),
    ("unix_timestamp(", "unix_timestamp()"),
    ("utc_timestamp", "utc_timestamp()"),
    ("utc_date", "utc_date()"),
    ("utc_time", "utc_time()"),
    ("rand(", "rand()"),
    ("uuid(", "uuid()"),
    ("uuid_short(", "uuid_short()"),
    ("sys_guid(", "sys_guid()"),
    ("connection_id(", "connection_id()"),
    ("last_insert_id(", "last_insert_id()"),
    ("found_rows(", "found_rows()"),
    ("row_count(", "row_count()"),
    ("benchmark(", "benchmark()"),
    ("@@hostname", "@@hostname"),
    ("@@server_id", "@@server_id"),
    ("@@server_uuid", "@@server_uuid"),
    ("@@port", "@@port"),
    ("@@version", "@@version"),
    ("@@timestamp", "@@timestamp"),
    ("@@pseudo_thread_id", "@@pseudo_thread_id"),
    ("@@gtid_", "@@gtid_*"),
    ("information_schema.processlist", "processlist"),
    ("show processlist", "processlist"),
    ("show status", "show status"),
    ("show global status", "show status"),
    ("show engine", "show engine"),
];

/// Hints from the SQL alone (a fingerprint, already lowercased).
pub fn from_sql(fingerprint: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for (needle, name) in CALLS {
        if contains_word(fingerprint, needle) && !out.contains(name) {
            out.push(name);
        }
    }
    out
}

/// Hints from what the conflicts look like, given the SQL: a multi-row SELECT without
/// ORDER BY whose rows differ only in content (order), or an INSERT whose OK packets differ
/// only in content (the AUTO_INCREMENT id it reports).
pub fn from_conflicts(
    fingerprint: &str,
    max_rows: u64,
    data_only_conflicts: u64,
    ok_data_only_conflicts: u64,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    let first = fingerprint
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find(|w| !w.is_empty())
        .unwrap_or("");
    if first == "select"
        && max_rows > 1
        && data_only_conflicts > 0
        && !fingerprint.contains("order by")
    {
        out.push("no ORDER BY");
    }
    if matches!(first, "insert" | "replace") && ok_data_only_conflicts > 0 {
        out.push("insert id");
    }
    out
}

/// `needle` in `hay` as a word: not preceded by an identifier character (so `rand(` does not
/// match `brand(`), and not followed by one when the needle ends in a letter (so
/// `current_time` does not match `current_timestamp`).
fn contains_word(hay: &str, needle: &str) -> bool {
    let b = hay.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let open_end = needle
        .as_bytes()
        .last()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    hay.match_indices(needle).any(|(at, _)| {
        let before_ok =
            at == 0 || !(ident(b[at - 1]) || (b[at - 1] == b'@' && !needle.starts_with('@')));
        let end = at + needle.len();
        let after_ok = !open_end || end == b.len() || !ident(b[end]);
        before_ok && after_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls() {
        assert_eq!(from_sql("select now(), rand() from t"), ["now()", "rand()"]);
        assert_eq!(from_sql("insert into t values(uuid(), ?)"), ["uuid()"]);
        assert_eq!(from_sql("select connection_id()"), ["connection_id()"]);
        assert_eq!(
            from_sql("select @@hostname, @@port"),
            ["@@hostname", "@@port"]
        );
        assert_eq!(from_sql("select current_timestamp"), ["current_timestamp"]);
        assert_eq!(
            from_sql("select utc_timestamp(), @@gtid_binlog_pos"),
            ["utc_timestamp()", "@@gtid_*"]
        );
        assert!(from_sql("select brand(x), known() from t").is_empty());
        assert!(from_sql("select * from t where id = ?").is_empty());
        assert!(from_sql("select @now(").is_empty());
    }

    #[test]
    fn conflicts() {
        assert_eq!(from_conflicts("select a from t", 5, 1, 0), ["no ORDER BY"]);
        assert!(from_conflicts("select a from t order by a", 5, 1, 0).is_empty());
        assert!(
            from_conflicts("select a from t", 1, 1, 0).is_empty(),
            "one row has no order"
        );
        assert_eq!(
            from_conflicts("insert into t values(?+)", 0, 1, 1),
            ["insert id"]
        );
        assert!(from_conflicts("insert into t values(?+)", 0, 1, 0).is_empty());
    }
}
