//! MaxScale's session-command history, as the test host keeps it (a router declaring
//! SESCMD_HISTORY gets this from MaxScale's MariaDB protocol):
//! - the client requests MaxScale records (here: COM_INIT_DB, and SET, USE, PREPARE,
//!   DEALLOCATE/DROP PREPARE as text) are kept with the outcome, OK or error, of the reply the
//!   client got; COM_CHANGE_USER clears them;
//! - a backend that logs in later runs them all before anything else, and one whose outcome
//!   differs is failed ("differs from the expected response");
//! - every backend that runs a recorded request has its outcome compared the same way.
//!
//! Binary prepares (COM_STMT_PREPARE) are not recorded: MaxScale replays them under ids it
//! translates, which this host does not do.

use bridge::protocol::command::{COM_CHANGE_USER, COM_INIT_DB, COM_QUERY};
use bridge::protocol::session_sql::sets_session_state;
use bridge::protocol::{will_respond, Packets};
use std::collections::{HashMap, VecDeque};

#[derive(Default)]
pub struct History {
    /// (client packet id, packet, outcome was OK)
    entries: Vec<(u32, Vec<u8>, bool)>,
    /// Client requests whose reply is awaited, in order, with the packet if it is recorded.
    awaiting: VecDeque<(u32, Option<Vec<u8>>)>,
    /// Where the reply being received starts in the client's bytes.
    reply_start: usize,
    /// Outcomes of recorded requests, by id.
    outcomes: HashMap<u32, bool>,
    /// Backend outcomes that came before the client's: (endpoint, server, id, ok, error).
    early: Vec<(usize, String, u32, bool, String)>,
}

/// Whether MaxScale keeps this client packet in the history.
pub fn recorded(packet: &[u8]) -> bool {
    match packet.get(4) {
        Some(&COM_INIT_DB) => true,
        Some(&COM_QUERY) => sets_session_state(&packet[5..]),
        _ => false,
    }
}

impl History {
    /// The message MaxScale fails a backend with.
    pub fn mismatch(server: &str, error: &str) -> String {
        let mut m = format!(
            "Response from server '{server}' differs from the expected response to COM_QUERY. Closing connection due to inconsistent session state."
        );
        if !error.is_empty() {
            m.push_str(&format!(" Error: {error}"));
        }
        m
    }

    /// The recorded requests: (id, packet, outcome was OK).
    pub fn entries(&self) -> Vec<(u32, Vec<u8>, bool)> {
        self.entries.clone()
    }

    /// A client packet was routed.
    pub fn client_sent(&mut self, id: u32, packet: &[u8]) {
        let (Some(&seq), Some(&cmd)) = (packet.get(3), packet.get(4)) else {
            return;
        };
        if seq != 0 || !will_respond(cmd) {
            return;
        }
        if cmd == COM_CHANGE_USER {
            self.entries.clear();
        }
        self.awaiting
            .push_back((id, recorded(packet).then(|| packet.to_vec())));
    }

    /// The client's reply to the oldest awaited request is complete (`bytes`: all the client
    /// got). Returns the backends whose earlier outcome now turns out to differ.
    pub fn client_reply_done(&mut self, bytes: &[u8]) -> Vec<(usize, String)> {
        let reply = &bytes[self.reply_start.min(bytes.len())..];
        self.reply_start = bytes.len();
        let Some((id, packet)) = self.awaiting.pop_front() else {
            return vec![];
        };
        let Some(packet) = packet else { return vec![] };
        let ok = !matches!(Packets::new(reply).next(), Some(Ok(p)) if p.is_err());
        self.entries.push((id, packet, ok));
        self.outcomes.insert(id, ok);
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early)
            .into_iter()
            .partition(|e| e.2 == id);
        self.early = later;
        now.into_iter()
            .filter(|e| e.3 != ok)
            .map(|(ep, server, _, _, err)| (ep, Self::mismatch(&server, &err)))
            .collect()
    }

    /// A backend's reply to the client request `id` is complete. Err: it differs from the
    /// client's outcome of a recorded request.
    pub fn backend_outcome(
        &mut self,
        ep: usize,
        server: &str,
        id: u32,
        ok: bool,
        error: &str,
    ) -> Result<(), String> {
        match self.outcomes.get(&id) {
            Some(&want) if want != ok => Err(Self::mismatch(server, error)),
            Some(_) => Ok(()),
            None if self.awaiting.iter().any(|(i, p)| *i == id && p.is_some()) => {
                self.early
                    .push((ep, server.to_string(), id, ok, error.to_string()));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::query;

    #[test]
    fn what_is_recorded() {
        for sql in [
            "SET @a = 1",
            "/*!40101 SET NAMES utf8 */",
            "use db",
            "PREPARE p FROM 'SELECT 1'",
            "DEALLOCATE PREPARE p",
            "drop prepare p",
        ] {
            assert!(recorded(&query(sql)[0]), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SET GLOBAL x = 1",
            "SET TRANSACTION READ ONLY",
            "EXECUTE p",
            "/* SET */ SELECT 2",
        ] {
            assert!(!recorded(&query(sql)[0]), "{sql}");
        }
    }
}
