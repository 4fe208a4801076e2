//! Reply packets from a backend, each handled as what its FIFO says it is for.

use super::{Expect, Session, REPLICA_MAX};
use bridge::log_error;
use bridge::log_info;
use bridge::log_warning;
use bridge::protocol::command::COM_STMT_PREPARE;
use bridge::protocol::reply::{ReplyError, ReplyState};
use bridge::protocol::rows::{is_row, text_row};
use bridge::protocol::status::IN_TRANS;
use bridge::protocol::Packets;

/// The offset of packet `p` (borrowed from `data`) within `data`.
fn packets_offset(data: &[u8], p: &bridge::protocol::Packet<'_>) -> usize {
    (p.payload.as_ptr() as usize - data.as_ptr() as usize) - 4
}

impl Session {
    /// Err: the session cannot go on (the caller ends it with the message).
    pub(super) fn on_reply(&mut self, i: usize, data: &[u8]) -> Result<(), String> {
        // The client's part of `data` (its packets are contiguous there): sent as it is.
        let mut out: Option<(usize, usize)> = None;
        for p in Packets::new(data) {
            let p = match p {
                Ok(p) => p,
                Err(e) => {
                    return self
                        .lose(i, &format!("malformed reply: {e}"))
                        .map_or(Ok(()), Err)
                }
            };
            let b = &mut self.backends[i];
            b.answered = true;
            let Some(&front) = b.pending.front() else {
                match ReplyError::parse(p.payload) {
                    Some(e) => log_warning!(
                        "session {}: '{}' sent an unsolicited error: {e}",
                        self.id,
                        b.name
                    ),
                    None => log_info!(
                        "session {}: '{}' sent an unsolicited packet",
                        self.id,
                        b.name
                    ),
                }
                continue;
            };
            let before = b.tracker.state();
            if let Err(v) = b.tracker.feed(&p) {
                log_error!(
                    "session {}: protocol error in the reply of '{}': {v}",
                    self.id,
                    b.name
                );
                // What this chunk held for the client is not sent: the connection is lost
                // as a whole, and another shard may answer instead.
                return self
                    .lose(i, &format!("protocol error: {v}"))
                    .map_or(Ok(()), Err);
            }
            let at = packets_offset(data, &p);
            let raw = &data[at..at + 4 + p.payload.len()];
            match front.kind {
                Expect::Client => {
                    out = Some((out.map_or(at, |o| o.0), at + raw.len()));
                    if front.cmd == COM_STMT_PREPARE
                        && before == ReplyState::Start
                        && p.first() == Some(0x00)
                        && p.payload.len() >= 5
                    {
                        let id = u32::from_le_bytes([
                            p.payload[1],
                            p.payload[2],
                            p.payload[3],
                            p.payload[4],
                        ]);
                        self.ps_bin.insert(id, i);
                        self.last_prepare = Some(i);
                    }
                }
                Expect::Replica => {
                    if b.replica.len() + raw.len() <= REPLICA_MAX {
                        b.replica.extend_from_slice(raw);
                    } else {
                        b.replica_full = true;
                    }
                }
                Expect::Ignore | Expect::InitDb => {}
                Expect::Mapping => {
                    if is_row(before, &p, self.deprecate_eof) {
                        if let Some(v) = text_row(p.payload) {
                            if let (Some(Some(db)), Some(t)) = (v.first(), v.get(1)) {
                                let db = String::from_utf8_lossy(db).into_owned();
                                let t = t
                                    .map(|t| String::from_utf8_lossy(t).into_owned())
                                    .unwrap_or_default();
                                let name = b.name.clone();
                                self.building.add(&db, &t, &name, &self.server_order);
                            }
                        }
                    }
                }
                Expect::Gather => {
                    let g = &mut b.gathered;
                    let fresh = g.count.is_empty() && g.ok.is_none() && g.error.is_none();
                    if is_row(before, &p, self.deprecate_eof) {
                        g.rows.push(p.payload.to_vec());
                    } else if p.is_err() {
                        g.error.get_or_insert_with(|| p.payload.to_vec());
                    } else if before == ReplyState::Start && fresh {
                        if p.first() == Some(0x00) {
                            g.ok = Some(p.payload.to_vec());
                        } else {
                            g.count = p.payload.to_vec();
                        }
                    } else if matches!(before, ReplyState::ColumnDefs { .. }) && g.error.is_none() {
                        g.defs.push(p.payload.to_vec());
                    }
                }
            }
            let b = &mut self.backends[i];
            if b.tracker.is_load_data() && front.kind == Expect::Client {
                self.load_target = Some(i);
            }
            if !b.tracker.is_complete() {
                continue;
            }
            let ok = b.tracker.error().is_none();
            let error = b.tracker.error().map(|e| e.to_string());
            let status = b.tracker.server_status();
            b.gathered.status = status;
            b.pending.pop_front();
            if let Some(next) = b.pending.front() {
                b.tracker.start(next.cmd);
            }
            // Work done inside the client's transaction (not its BEGIN or a SET on every shard).
            b.trx_work = status & IN_TRANS != 0
                && (b.trx_work || front.kind == Expect::Client && !self.broadcast);
            match front.kind {
                Expect::Client => {
                    let part = out.take().map_or(&[][..], |(a, b)| &data[a..b]);
                    self.complete_client(i, part, ok, status)?;
                }
                Expect::Replica => {
                    let bytes = std::mem::take(&mut b.replica);
                    let full = std::mem::take(&mut b.replica_full);
                    if front.req == self.req && self.busy && self.spare.is_none() && !full {
                        self.spare = Some((i, bytes, ok, status));
                    }
                }
                Expect::Ignore => {}
                Expect::Mapping => self.mapping_done(i, error),
                Expect::InitDb => {
                    if let Some(e) = error {
                        log_warning!(
                            "session {}: '{}' refused the connect-time database: {e}",
                            self.id,
                            self.backends[i].name
                        );
                    }
                    self.init_db_done()
                }
                Expect::Gather => self.gather_done()?,
            }
        }
        if let Some((a, b)) = out {
            self.answering = None;
            if !self
                .host
                .reply(Some(self.backends[i].endpoint), &data[a..b], false)
            {
                return Err("cannot write to the client".into());
            }
        }
        Ok(())
    }
}
