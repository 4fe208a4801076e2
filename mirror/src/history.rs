//! The session commands of one session, in client order, to give a reconnected target the
//! session's state back (`reconnect=true`).
//!
//! mirror keeps this itself: MaxScale keeps its own session-command history only for
//! routers that declare RCAP_TYPE_SESCMD_HISTORY, and declaring it would change the native
//! behaviour that mirror keeps by default (MaxScale would parse every statement, and close a
//! target whose answer to a session command differs from main's instead of reporting it).
//!
//! Recorded: COM_INIT_DB, COM_SET_OPTION, COM_STMT_PREPARE (until its COM_STMT_CLOSE), and
//! text statements starting with SET (not SET GLOBAL, SET TRANSACTION or SET STATEMENT),
//! USE, PREPARE, DEALLOCATE PREPARE or DROP PREPARE. COM_CHANGE_USER and
//! COM_RESET_CONNECTION start a fresh history. A repeated statement replaces its earlier
//! copy. Past MAX_ENTRIES or MAX_BYTES the state can no longer be restored.

use bridge::protocol::command::*;
use bridge::protocol::session_sql::sets_session_state;

pub const MAX_ENTRIES: usize = 50;
pub const MAX_BYTES: usize = 1 << 20;

#[derive(Default)]
pub struct History {
    /// (client packet, host id, statement id the client got for a COM_STMT_PREPARE)
    entries: Vec<(Vec<u8>, u32, Option<u32>)>,
    bytes: usize,
    overflowed: bool,
}

/// Whether a client request changes the session's state in a way a new connection must
/// repeat.
pub fn is_session_command(packet: &[u8]) -> bool {
    match packet.get(4) {
        Some(&(COM_INIT_DB | COM_SET_OPTION | COM_STMT_PREPARE)) => true,
        Some(&COM_QUERY) => sets_session_state(&packet[5..]),
        _ => false,
    }
}

impl History {
    /// A client request in client order (its first packet).
    pub fn record(&mut self, packet: &[u8], id: u32) {
        match packet.get(4) {
            Some(&(COM_CHANGE_USER | COM_RESET_CONNECTION)) => {
                self.entries.clear();
                self.bytes = 0;
                self.overflowed = false;
            }
            Some(&COM_STMT_CLOSE) => {
                if let Some(stmt) = packet.get(5..9) {
                    let stmt = u32::from_le_bytes(stmt.try_into().unwrap());
                    self.remove_where(|e| e.2 == Some(stmt));
                }
            }
            _ if packet.get(3) == Some(&0) && is_session_command(packet) => {
                if packet.get(4) != Some(&COM_STMT_PREPARE) {
                    self.remove_where(|e| e.0 == packet);
                }
                self.bytes += packet.len();
                self.entries.push((packet.to_vec(), id, None));
                if self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
                    self.overflowed = true;
                }
            }
            _ => {}
        }
    }

    /// Main answered the COM_STMT_PREPARE with host id `id`: the client knows it as `stmt`.
    pub fn prepared(&mut self, id: u32, stmt: u32) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.1 == id && e.0.get(4) == Some(&COM_STMT_PREPARE))
        {
            e.2 = Some(stmt);
        }
    }

    fn remove_where(&mut self, f: impl Fn(&(Vec<u8>, u32, Option<u32>)) -> bool) {
        let bytes = &mut self.bytes;
        self.entries.retain(|e| {
            let drop = f(e);
            if drop {
                *bytes -= e.0.len();
            }
            !drop
        });
    }

    /// Whether a new connection can be given the whole state.
    pub fn recoverable(&self) -> bool {
        !self.overflowed
    }

    /// The requests to replay, in order, with their host ids.
    pub fn replay(&self) -> impl Iterator<Item = (&[u8], u32)> {
        self.entries.iter().map(|e| (e.0.as_slice(), e.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(sql: &str) -> Vec<u8> {
        let mut p = vec![0, 0, 0, 0, COM_QUERY];
        p.extend_from_slice(sql.as_bytes());
        let n = (p.len() - 4) as u32;
        p[..3].copy_from_slice(&n.to_le_bytes()[..3]);
        p
    }

    #[test]
    fn what_is_a_session_command() {
        for s in [
            "SET @a = 1",
            "  set names utf8",
            "/*!40101 SET NAMES utf8 */",
            "USE db",
            "PREPARE p FROM 'SELECT 1'",
            "DEALLOCATE PREPARE p",
            "drop prepare p",
            "-- c\nSET x=1",
            "/* c */ use d",
        ] {
            assert!(is_session_command(&q(s)), "{s}");
        }
        for s in [
            "SELECT 1",
            "SET GLOBAL x = 1",
            "SET TRANSACTION READ ONLY",
            "set statement x=1 for select 1",
            "EXECUTE p",
            "/* SET */ SELECT 2",
            "",
        ] {
            assert!(!is_session_command(&q(s)), "{s}");
        }
        assert!(is_session_command(&[1, 0, 0, 0, COM_INIT_DB]));
        assert!(!is_session_command(&[1, 0, 0, 0, COM_PING]));
    }

    #[test]
    fn replaces_repeats_forgets_closed_statements_and_bounds() {
        let mut h = History::default();
        h.record(&q("SET @a = 1"), 0);
        h.record(&q("USE db"), 0);
        h.record(&q("SET @a = 1"), 0);
        let mut prep = vec![0, 0, 0, 0, COM_STMT_PREPARE];
        prep.extend_from_slice(b"SELECT ?");
        h.record(&prep, 7);
        h.prepared(7, 3);
        h.record(&q("SELECT 1"), 0);
        let got: Vec<_> = h
            .replay()
            .map(|(p, id)| (String::from_utf8_lossy(&p[5..]).into_owned(), id))
            .collect();
        assert_eq!(
            got,
            [
                ("USE db".to_string(), 0),
                ("SET @a = 1".into(), 0),
                ("SELECT ?".into(), 7)
            ]
        );
        h.record(&[5, 0, 0, 0, COM_STMT_CLOSE, 3, 0, 0, 0], 0);
        assert_eq!(h.replay().count(), 2);
        for i in 0..MAX_ENTRIES {
            h.record(&q(&format!("SET @v{i} = 1")), 0);
        }
        assert!(!h.recoverable());
        h.record(&[1, 0, 0, 0, COM_RESET_CONNECTION], 0);
        assert!(h.recoverable());
        assert_eq!(h.replay().count(), 0);
    }
}
