//! Which text statements change a session's state so that a new backend connection must run
//! them again: what MaxScale records in its session-command history and what the mirror
//! replays on a reconnected target (SET, USE and text prepared statements).

/// The first `n` words of some SQL, lowercased, comments skipped (an executable comment's
/// contents count).
pub fn first_words(sql: &[u8], n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < n && i < sql.len() {
        let rest = &sql[i..];
        if rest[0].is_ascii_whitespace() || rest[0] == b'(' {
            i += 1;
        } else if rest.starts_with(b"/*!") || rest.starts_with(b"/*M!") {
            i += if rest[2] == b'M' { 4 } else { 3 };
            while i < sql.len() && sql[i].is_ascii_digit() {
                i += 1;
            }
        } else if rest.starts_with(b"*/") {
            i += 2;
        } else if rest.starts_with(b"/*") {
            i += rest
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(rest.len(), |p| p + 2);
        } else if rest.starts_with(b"--") || rest[0] == b'#' {
            i += rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(rest.len(), |p| p + 1);
        } else {
            let len = rest
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                .unwrap_or(rest.len());
            if len == 0 {
                break;
            }
            out.push(String::from_utf8_lossy(&rest[..len]).to_ascii_lowercase());
            i += len;
        }
    }
    out
}

/// Whether a text statement (a COM_QUERY's SQL) sets session state: SET (not SET GLOBAL,
/// SET TRANSACTION or SET STATEMENT), USE, PREPARE, DEALLOCATE PREPARE or DROP PREPARE.
pub fn sets_session_state(sql: &[u8]) -> bool {
    let w = first_words(sql, 2);
    match (w.first().map(String::as_str), w.get(1).map(String::as_str)) {
        (Some("set"), Some("global" | "transaction" | "statement")) => false,
        (Some("set" | "use" | "prepare" | "deallocate"), _) => true,
        (Some("drop"), Some("prepare")) => true,
        _ => false,
    }
}
