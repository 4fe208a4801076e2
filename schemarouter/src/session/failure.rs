//! Backends that fail: what they owed is settled, and the session goes on unless it needs
//! what cannot come back.
//!
//! - A shard the session does not need at that moment (idle, a copy of a session command, a
//!   late login whose history replay fails) is dropped, with the reason logged.
//! - A shard that owed the client the reply to a session command or USE is replaced by
//!   another shard that ran the same command.
//! - A shard that owed the client the reply to a statement only it could run: the statement
//!   gets an error and the session goes on, if the shard can be opened again later (MaxScale
//!   replays the session's history on the new connection); otherwise the session ends with a
//!   message naming the shard and why.
//! - A shard lost inside a transaction that changed data on it ends the session: that work is
//!   gone, and the client's COMMIT must not succeed without it.
//!
//! A shard is not opened again when its last connection could not replay the history, when
//! it failed again before its first answer, or inside a transaction.

use super::{own_packet, Expect, Session};
use crate::route::NoTarget;
use bridge::protocol::command::{command_name, COM_INIT_DB};
use bridge::protocol::ReplyTracker;
use bridge::{log_error, log_info, log_warning};

/// How MaxScale fails a backend whose outcome of a recorded session command differs from the
/// client's (the replay of the history on a new connection, or a copy of a session command):
/// a new connection would replay the same history and fail the same way.
fn is_history_mismatch(message: &str) -> bool {
    message.contains("differs from the expected response")
}

impl Session {
    /// Backend `i` failed (`message`: the host's reason). False: the session ended.
    pub(super) fn backend_failed(&mut self, i: usize, message: &str) -> bool {
        let name = self.backends[i].name.clone();
        let was_in_use = self.backends[i].in_use;
        match self.lose(i, message) {
            Some(why) => {
                let _ = self.end(format!("'{name}' failed ({message}): {why}"));
                false
            }
            None => {
                if was_in_use {
                    log_warning!(
                        "session {}: '{name}' failed ({message}); the session goes on without it",
                        self.id
                    );
                }
                match self.drain() {
                    Ok(()) => true,
                    Err(e) => {
                        log_error!("session {}: {e}", self.id);
                        false
                    }
                }
            }
        }
    }

    /// A backend is gone: it settles what it owed. Some(message): the session cannot go on.
    pub(super) fn lose(&mut self, i: usize, why: &str) -> Option<String> {
        if !self.backends[i].in_use {
            return None;
        }
        self.set_in_use(i, false);
        let b = &mut self.backends[i];
        self.host.close(b.endpoint);
        let pending: Vec<Expect> = b.pending.drain(..).map(|p| p.kind).collect();
        b.tracker = ReplyTracker::new(self.deprecate_eof);
        b.replica.clear();
        b.replica_full = false;
        if b.unrecoverable.is_none() && (b.reconnected && !b.answered || is_history_mismatch(why)) {
            b.unrecoverable = Some(why.to_string());
        }
        b.lost = Some(why.to_string());
        b.locked = false;
        let trx_work = std::mem::take(&mut b.trx_work);
        let name = b.name.clone();
        if self.spare.as_ref().is_some_and(|s| s.0 == i) {
            self.spare = None;
        }
        let mut fatal = None;
        if self.load_target == Some(i) {
            fatal = Some(format!("'{name}' failed during LOAD DATA LOCAL INFILE"));
            self.load_target = None;
        }
        let mut owed_client = false;
        for k in pending {
            match k {
                Expect::Client => owed_client = true,
                Expect::Ignore | Expect::Replica => {}
                Expect::Mapping => {
                    self.mapping_partial = true;
                    self.mapping_done(i, Some(format!("connection failed: {why}")));
                }
                Expect::InitDb => self.init_db_done(),
                Expect::Gather => {
                    self.backends[i].gathered.lost = true;
                    if let Err(e) = self.gather_done() {
                        fatal = Some(e);
                    }
                }
            }
        }
        if fatal.is_none() && trx_work && self.in_trx {
            fatal = Some(format!(
                "'{name}' was lost inside a transaction that had changed data on it"
            ));
        }
        if fatal.is_none() && owed_client {
            fatal = self.answer_for_lost(i);
        }
        if fatal.is_none() && !self.backends.iter().any(|b| b.in_use) {
            fatal = Some("All connections have failed".into());
        }
        fatal
    }

    /// Whether backend `i` may be opened again now.
    fn can_reopen(&self, i: usize) -> bool {
        !self.in_trx && self.backends[i].unrecoverable.is_none() && self.host.can_recover_state()
    }

    /// Why backend `i` is not usable, for messages.
    pub(super) fn why_unavailable(&self, i: usize) -> String {
        let b = &self.backends[i];
        match (&b.unrecoverable, &b.lost) {
            (Some(u), _) if is_history_mismatch(u) => {
                format!("it could not replay the session's history: {u}")
            }
            (Some(u), _) => format!("it failed again when reconnected: {u}"),
            (None, Some(l)) if self.in_trx => format!("lost inside a transaction: {l}"),
            (None, Some(l)) => format!("lost: {l}"),
            (None, None) => "not connected".into(),
        }
    }

    /// The client waited for backend `i`'s reply, which will not come.
    fn answer_for_lost(&mut self, i: usize) -> Option<String> {
        let name = self.backends[i].name.clone();
        if self.answering.is_none() {
            return Some(format!("'{name}' failed in the middle of its reply"));
        }
        if self.promote() {
            log_info!("session {}: '{name}' failed before answering; another shard that ran the same command answers", self.id);
            return None;
        }
        if self.in_trx {
            return Some(format!("'{name}' failed inside a transaction"));
        }
        if !self.can_reopen(i) {
            return Some(format!(
                "'{name}' cannot be used again: {}",
                self.why_unavailable(i)
            ));
        }
        // The statement's outcome is unknown; what it would have confirmed does not happen.
        self.pending_use = None;
        self.pending_user = None;
        if std::mem::take(&mut self.pending_schema_change) {
            self.schema_changed();
        }
        log_warning!("session {}: '{name}' failed before answering; the statement gets an error, the session goes on", self.id);
        let msg = format!(
            "Lost connection to '{name}' while it ran the statement ({}); '{name}' is reconnected when it is needed",
            self.backends[i].lost.clone().unwrap_or_default()
        );
        self.reply_error(1927, "70100", &msg).err()
    }

    /// Another shard that ran the session command in flight answers in place of the one that
    /// failed: its complete reply, or its reply as it comes.
    fn promote(&mut self) -> bool {
        if let Some((j, bytes, ok, status)) = self.spare.take() {
            if let Err(e) = self.complete_client(j, &bytes, ok, status) {
                log_error!("session {}: {e}", self.id);
            }
            return true;
        }
        let req = self.req;
        for j in 0..self.backends.len() {
            let b = &mut self.backends[j];
            if !b.in_use {
                continue;
            }
            let Some(pos) = b
                .pending
                .iter()
                .position(|p| p.req == req && p.kind == Expect::Replica)
            else {
                continue;
            };
            if pos == 0 && b.replica_full {
                continue;
            }
            b.pending[pos].kind = Expect::Client;
            if pos == 0 && !b.replica.is_empty() {
                let bytes = std::mem::take(&mut b.replica);
                let ep = b.endpoint;
                self.answering = None;
                self.host.reply(Some(ep), &bytes, false);
            }
            return true;
        }
        false
    }

    /// Turns a routing failure into a target, the end of the session (with a clear message,
    /// then `None`), or an error.
    pub(super) fn target_or_fail(
        &mut self,
        t: Result<usize, NoTarget>,
        cmd: u8,
    ) -> Result<Option<usize>, String> {
        match t {
            Ok(i) => Ok(Some(i)),
            Err(NoTarget::Lost(servers)) => {
                if let Some(i) = self.reconnect(&servers) {
                    return Ok(Some(i));
                }
                let why: Vec<String> = servers
                    .iter()
                    .filter_map(|s| self.backends.iter().position(|b| &b.name == s))
                    .map(|i| {
                        format!(
                            "'{}' is not available ({})",
                            self.backends[i].name,
                            self.why_unavailable(i)
                        )
                    })
                    .collect();
                let msg = format!(
                    "Could not find valid server for {}: {}",
                    command_name(cmd),
                    why.join(", ")
                );
                let _ = self.end(msg);
                Ok(None)
            }
            Err(NoTarget::None) => Err(format!(
                "Could not find valid server for {}, closing connection.",
                command_name(cmd)
            )),
        }
    }

    /// Opens again the first of `servers` whose connection was lost, when the host can give
    /// the new connection the session's state (it replays the session-command history, within
    /// the service's max_sescmd_history and unless disable_sescmd_history). The current
    /// database, which this router applies itself, follows the history.
    pub(super) fn reconnect(&mut self, servers: &[String]) -> Option<usize> {
        for name in servers {
            let Some(i) = self
                .backends
                .iter()
                .position(|b| &b.name == name && !b.in_use)
            else {
                continue;
            };
            if !self.can_reopen(i) || !self.host.connect(self.backends[i].endpoint) {
                continue;
            }
            log_info!(
                "session {}: reconnected to '{name}', the session's history is replayed on it",
                self.id
            );
            self.set_in_use(i, true);
            let b = &mut self.backends[i];
            b.reconnected = true;
            b.answered = false;
            b.pending.clear();
            b.tracker = ReplyTracker::new(self.deprecate_eof);
            if !self.current_db.is_empty() && self.map.db_servers(&self.current_db).contains(name) {
                let pkt = own_packet(COM_INIT_DB, self.current_db.as_bytes());
                if !self.write(i, &pkt, 0, Expect::Ignore) {
                    continue;
                }
            }
            return Some(i);
        }
        None
    }

    /// Backend `i` if it is in use or could be opened again (a statement prepared there is
    /// prepared again by the history replay).
    pub(super) fn reopened(&mut self, i: usize) -> Option<usize> {
        if self.backends[i].in_use {
            return Some(i);
        }
        let name = self.backends[i].name.clone();
        self.reconnect(std::slice::from_ref(&name))
    }

    pub(super) fn fail_request(&mut self, cmd: u8, why: &str) -> Result<(), String> {
        let _ = self.end(format!(
            "Could not find valid server for {}: {why}",
            command_name(cmd)
        ));
        Ok(())
    }
}
