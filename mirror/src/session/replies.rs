//! Reply packets from the targets: tracked per request, checksummed, compared (report_diff),
//! and main's passed on to the client.

use super::entry::{Outcome, Step};
use super::flow::Failure;
use super::{Expect, MirrorSession};
use crate::diff::Kind;
use bridge::protocol::command::*;
use bridge::protocol::reply::ReplyError;
use bridge::protocol::{status, Packet, Packets, ReplyState};
use bridge::{log_info, log_warning};

/// What a reply packet is, from the tracker's state before and after it.
fn classify(command: u8, before: ReplyState, after: ReplyState, p: &Packet<'_>) -> Kind {
    use ReplyState::*;
    if p.first() == Some(0xFF) {
        return Kind::Err;
    }
    let rows = |after: ReplyState| if after == Rows { Kind::Row } else { Kind::Eof };
    match before {
        Start if command == COM_STMT_FETCH => rows(after),
        Start => match (p.first(), command) {
            (Some(0x00), _) => Kind::Ok,
            (Some(0xFB), COM_QUERY) => Kind::Other,
            (_, COM_FIELD_LIST) => Kind::ColumnDef,
            (_, COM_STATISTICS | COM_CHANGE_USER) => Kind::Other,
            _ => Kind::Header,
        },
        ColumnDefs { .. } => Kind::ColumnDef,
        ColumnEof
        | PrepareDefs {
            eof_pending: true, ..
        } => Kind::Eof,
        PrepareDefs { .. } => Kind::ColumnDef,
        Rows => rows(after),
        FieldList if after == Complete => Kind::Eof,
        FieldList => Kind::ColumnDef,
        LoadData { .. } => Kind::Ok,
        Auth | Idle | Complete => Kind::Other,
    }
}

impl MirrorSession {
    pub(super) fn on_reply(&mut self, i: usize, data: &[u8]) -> Result<(), String> {
        let is_main = i == self.main;
        let b = &self.backends[i];
        if !b.in_use {
            return Ok(());
        }
        if b.expects.is_empty() {
            // Nothing was asked: typically a server killing the connection or shutting down.
            // The connection's failure, if any, comes through handle_error.
            for p in Packets::new(data).flatten() {
                match ReplyError::parse(p.payload) {
                    Some(e) => log_warning!(
                        "session {}: target '{}' sent an unsolicited error: {e}",
                        self.id,
                        b.name
                    ),
                    None => log_info!(
                        "session {}: target '{}' sent an unsolicited packet",
                        self.id,
                        b.name
                    ),
                }
            }
            return Ok(());
        }
        let mut offset = 0;
        let mut seg_start = 0;
        let mut main_answered = None;
        for p in Packets::new(data) {
            let p = match p {
                Ok(p) => p,
                Err(e) => return self.violation(i, &e.to_string()),
            };
            let start = offset;
            offset += 4 + p.payload.len();
            let b = &mut self.backends[i];
            let Some(&front) = b.expects.front() else {
                log_info!(
                    "session {}: target '{}' sent more than it was asked for",
                    self.id,
                    b.name
                );
                break;
            };
            let before = b.tracker.state();
            if let Err(v) = b.tracker.feed(&p) {
                return self.violation(i, &v.to_string());
            }
            let (after, complete) = (b.tracker.state(), b.tracker.is_complete());
            if let Expect::Entry(seq) = front {
                let entered_load =
                    b.tracker.is_load_data() && !matches!(before, ReplyState::LoadData { .. });
                let Some(e) = self.entry_mut(seq) else {
                    continue;
                };
                let command = e.command;
                if let Some(d) = e.diff.as_mut() {
                    d.feed(
                        i,
                        classify(command, before, after, &p),
                        &data[start..offset],
                    );
                }
                if is_main && command == COM_STMT_PREPARE {
                    if before == ReplyState::Start && p.first() == Some(0) && p.payload.len() >= 9 {
                        let stmt = u32::from_le_bytes(p.payload[1..5].try_into().unwrap());
                        let params = u16::from_le_bytes([p.payload[7], p.payload[8]]);
                        self.prepared(seq, stmt, params);
                    } else if let ReplyState::PrepareDefs {
                        params: 0,
                        eof_pending: false,
                        ..
                    } = before
                    {
                        // The statement's columns (its parameters come first).
                        let stmt = self.preparing.and_then(|s| self.statements.get_mut(&s));
                        if let Some(st) = stmt.filter(|st| st.columns.len() < 4096) {
                            st.columns.push(crate::diff::column_type(p.payload));
                        }
                    }
                }
                if entered_load {
                    if is_main {
                        self.receiving = Some(seq);
                    }
                    self.feed_load_data(i, seq)?;
                    if !self.backends[i].in_use {
                        return self.settle(None);
                    }
                }
            }
            if complete {
                let b = &mut self.backends[i];
                b.crc.update(&data[seg_start..offset]);
                seg_start = offset;
                if let Some(seq) = self.complete_front(i) {
                    if is_main {
                        main_answered = Some(seq);
                    }
                }
            }
        }
        let b = &mut self.backends[i];
        if !b.expects.is_empty() && seg_start < offset {
            b.crc.update(&data[seg_start..offset]);
        }
        if !is_main {
            return self.settle(None);
        }
        match main_answered {
            None => {
                if !self
                    .host
                    .reply(Some(self.backends[i].endpoint), data, false)
                {
                    return Err("cannot write to the client".into());
                }
                Ok(())
            }
            Some(seq) => self.main_answered(seq, data),
        }
    }

    fn violation(&mut self, i: usize, what: &str) -> Result<(), String> {
        self.fail(
            i,
            &format!("protocol error in reply: {what}"),
            Failure::Error,
        )?;
        self.settle(None)
    }

    /// The reply target `i` was receiving is complete; returns the request it answered.
    fn complete_front(&mut self, i: usize) -> Option<u64> {
        let b = &mut self.backends[i];
        let front = b.expects.pop_front()?;
        let crc = std::mem::replace(&mut b.crc, crc32fast::Hasher::new()).finalize();
        let answered = match front {
            Expect::Replay(_) => {
                if let Some(err) = b.tracker.error() {
                    log_warning!(
                        "session {}: restoring the session state on target '{}': a session command failed: {err}",
                        self.id,
                        b.name
                    );
                }
                None
            }
            Expect::Entry(seq) => {
                let t = &b.tracker;
                let outcome = Outcome {
                    checksum: crc,
                    rows: t.rows(),
                    warnings: t.warnings(),
                    duration_ms: 0,
                    kind: t.kind(),
                };
                if i == self.main {
                    self.main_in_trx = t.server_status() & status::IN_TRANS != 0;
                }
                if let Some(e) = self.entry_mut(seq) {
                    let part = &mut e.parts[i];
                    part.step = Step::Done;
                    part.outcome = Some(Outcome {
                        duration_ms: part.written.elapsed().as_millis() as u64,
                        ..outcome
                    });
                }
                if i != self.main {
                    self.uncharge(i, seq);
                }
                Some(seq)
            }
        };
        let next = self.backends[i].expects.front().copied();
        let command = match next {
            Some(Expect::Replay(c)) => Some(c),
            Some(Expect::Entry(s)) => self.entry(s).map(|e| e.command),
            None => None,
        };
        if let Some(c) = command {
            self.backends[i].tracker.start(c);
        }
        answered
    }

    /// Main's reply to request `seq` is complete; `chunk` is its last part.
    fn main_answered(&mut self, seq: u64, chunk: &[u8]) -> Result<(), String> {
        let ep = self.backends[self.main].endpoint;
        let sync = self.entry(seq).is_none_or(|e| e.sync);
        if !sync {
            if !self.host.reply(Some(ep), chunk, true) {
                return Err("cannot write to the client".into());
            }
            self.main_done(seq)?;
            return self.settle(None);
        }
        self.main_done(seq)?;
        let others_done = self.entry(seq).is_some_and(|e| {
            e.parts
                .iter()
                .all(|p| matches!(p.step, Step::Done | Step::Skipped))
        });
        if others_done && self.log.front().map(|f| f.seq) == Some(seq) {
            return self.settle_with(None, Some(chunk));
        }
        self.held = Some(chunk.to_vec());
        self.settle(None)
    }
}
