//! Statements answered by several shards together (see `crate::merge`): which shards, with
//! which statement each, and sending the merged answer.
//!
//! - SHOW [FULL] TABLES, TABLE STATUS, TRIGGERS, EVENTS of a database split over shards, and
//!   SHOW FUNCTION|PROCEDURE|PACKAGE STATUS: the union of the shards' listings.
//! - SHOW CREATE TRIGGER|PROCEDURE|FUNCTION|EVENT: the first shard that has the object.
//! - Queries on information_schema's object lists: every shard holding what their
//!   conditions name (all shards when they name no user database), merged; a LIMIT with an
//!   offset is sent as LIMIT offset+count so that each shard returns every row the merge
//!   may need. With one such shard, the query simply goes there.
//! - LOCK TABLES over tables of several shards: each shard locks its own tables (and drops
//!   the locks it held, as LOCK TABLES does); UNLOCK TABLES and FLUSH go to every shard.
//!   Every shard must succeed; the first error is the answer.

use super::{Queued, Session};
use crate::merge::{merge, ColRef, Dedup, Mode, Part};
use crate::sql::info::{identity, InfoQuery, OrderKey};
use crate::sql::{Kind, LockItem};
use bridge::protocol::command::COM_QUERY;
use bridge::protocol::packet::write_packet;

const SYSTEM: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// Shards (by name) and, for some, a statement of their own.
pub(super) struct Plan {
    targets: Vec<(String, Option<Vec<u8>>)>,
    mode: Mode,
    /// LOCK/UNLOCK TABLES: the shards that hold locks once it succeeded.
    locks: Option<Vec<String>>,
}

fn query_packet(sql: &str) -> Vec<u8> {
    let mut payload = vec![COM_QUERY];
    payload.extend_from_slice(sql.as_bytes());
    let mut p = Vec::new();
    write_packet(&mut p, 0, &payload);
    p
}

/// How the shards' rows of an information_schema query are merged, and the statement they
/// get instead of the client's (if another): a plain SELECT gets its objects' name columns
/// and its ORDER BY expressions added to its select list (the merge takes them out again); a
/// LIMIT with an offset becomes LIMIT offset+count, every row the merge may need.
fn info_union(q: &InfoQuery, sql: &str) -> (Option<String>, Mode) {
    let mut added: Vec<String> = Vec::new();
    let mut dedup = Dedup::WholeRow;
    let mut order = Vec::new();
    let can_add = q.plain && q.from_at.is_some();
    if let (true, Some((list, qual))) = (can_add, &q.list) {
        let cols: Vec<ColRef> = identity(list)
            .iter()
            .map(|c| {
                added.push(format!("`{qual}`.{c}"));
                ColRef::Added(added.len() - 1)
            })
            .collect();
        dedup = Dedup::Owner(cols);
    }
    // The select list cannot name its own aliases: those are found in the result by name,
    // and an expression using one is not added (the merge then keeps the shards' order).
    let uses_alias = |text: &str| {
        let words: Vec<String> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map(str::to_ascii_lowercase)
            .collect();
        q.aliases
            .iter()
            .any(|a| words.contains(&a.to_ascii_lowercase()))
    };
    for o in &q.order {
        let r = match &o.key {
            OrderKey::Position(n) => ColRef::At(n.saturating_sub(1)),
            OrderKey::Name(n) if q.aliases.iter().any(|a| a.eq_ignore_ascii_case(n)) => {
                ColRef::Name(n.clone())
            }
            _ if can_add && !uses_alias(&o.text) => {
                added.push(o.text.clone());
                ColRef::Added(added.len() - 1)
            }
            OrderKey::Name(n) => ColRef::Name(n.clone()),
            OrderKey::Expression => ColRef::Name(String::new()),
        };
        order.push((r, o.desc));
    }
    let mut text = sql.to_string();
    let mut changed = false;
    if let Some(l) = q.limit.as_ref().filter(|l| l.offset > 0) {
        text.replace_range(
            l.span.0..l.span.1,
            &format!("LIMIT {}", l.offset.saturating_add(l.count)),
        );
        changed = true;
    }
    if let (false, Some(at)) = (added.is_empty(), q.from_at) {
        text.insert_str(at, &format!(", {} ", added.join(", ")));
        changed = true;
    }
    let mode = Mode::Union {
        dedup,
        order,
        limit: q.limit.as_ref().map(|l| (l.offset, l.count)),
        added: added.len(),
    };
    (changed.then_some(text), mode)
}

impl Session {
    /// Server names in the service's order, of those in `names`.
    fn ordered(&self, names: &[String]) -> Vec<String> {
        self.server_order
            .iter()
            .filter(|s| names.contains(s))
            .cloned()
            .collect()
    }

    /// Every server where this session's user sees something.
    fn mapped_servers(&self) -> Vec<String> {
        self.server_order
            .iter()
            .filter(|s| self.map.has_server(s))
            .cloned()
            .collect()
    }

    fn db_or_current(&self, db: &Option<String>) -> String {
        db.clone().unwrap_or_else(|| self.current_db.clone())
    }

    /// How a statement is answered by several shards, if it is.
    pub(super) fn merge_plan(&self, kind: &Kind, sql: &str) -> Option<Plan> {
        let union_of = |names: Vec<String>, mode: Mode| -> Option<Plan> {
            (names.len() > 1).then(|| Plan {
                targets: names.into_iter().map(|n| (n, None)).collect(),
                mode,
                locks: None,
            })
        };
        match kind {
            Kind::ShowListing { db } => {
                let db = self.db_or_current(db);
                if db.is_empty() {
                    return None;
                }
                union_of(self.ordered(&self.map.db_servers(&db)), Mode::listing())
            }
            Kind::ShowRoutines { db } => {
                let names = match db {
                    Some(d) => self.map.db_servers(d),
                    None => self.mapped_servers(),
                };
                union_of(self.ordered(&names), Mode::listing())
            }
            Kind::ShowCreateObject { db } => {
                let db = self.db_or_current(db);
                union_of(self.ordered(&self.map.db_servers(&db)), Mode::FirstSuccess)
            }
            Kind::InfoSchema(q) => self.info_plan(q, sql),
            Kind::LockTables(items) => Some(self.lock_plan(items)),
            Kind::Broadcast => {
                let targets = self
                    .backends
                    .iter()
                    .filter(|b| b.in_use)
                    .map(|b| (b.name.clone(), None))
                    .collect();
                let unlock = sql
                    .trim_start()
                    .get(..6)
                    .is_some_and(|w| w.eq_ignore_ascii_case("unlock"));
                Some(Plan {
                    targets,
                    mode: Mode::AllOk,
                    locks: unlock.then(Vec::new),
                })
            }
            _ => None,
        }
    }

    /// An information_schema query: the shards holding the schemas (and tables) it names.
    fn info_plan(&self, q: &InfoQuery, sql: &str) -> Option<Plan> {
        let schemas: Vec<String> = q
            .schemas
            .iter()
            .filter_map(|s| {
                s.clone()
                    .or_else(|| (!self.current_db.is_empty()).then(|| self.current_db.clone()))
            })
            .filter(|s| !SYSTEM.iter().any(|x| x.eq_ignore_ascii_case(s)))
            .collect();
        let mut names: Vec<String> = Vec::new();
        if !schemas.is_empty() {
            for s in &schemas {
                let found: Vec<String> = q
                    .tables
                    .iter()
                    .flat_map(|t| self.map.locations(s, t).to_vec())
                    .collect();
                names.extend(if found.is_empty() {
                    self.map.db_servers(s)
                } else {
                    found
                });
            }
        } else if !q.schemas.is_empty() {
            // Only system schemas, or DATABASE() without a current database: one server
            // answers what one server holding every shard would.
            return None;
        } else {
            names = self.mapped_servers();
        }
        let names = self.ordered(&names);
        if names.len() == 1 {
            return Some(Plan {
                targets: vec![(names[0].clone(), None)],
                mode: Mode::FirstSuccess,
                locks: None,
            });
        }
        if names.len() < 2 || !q.mergeable {
            return None;
        }
        let (sql, mode) = info_union(q, sql);
        let packet = (sql.is_some()).then(|| query_packet(sql.as_deref().unwrap_or_default()));
        Some(Plan {
            targets: names.into_iter().map(|n| (n, packet.clone())).collect(),
            mode,
            locks: None,
        })
    }

    /// LOCK TABLES: each shard gets the items of its own tables; a shard that holds locks
    /// and gets none of the tables unlocks (LOCK TABLES first releases what the session held).
    fn lock_plan(&self, items: &[LockItem]) -> Plan {
        let mut per: Vec<(String, Vec<&str>)> = Vec::new();
        for it in items {
            let db = self.db_or_current(&it.table.db);
            let mut locs = self.map.locations(&db, &it.table.table).to_vec();
            if locs.is_empty() {
                // Unknown here: the server of its database says what is wrong with it.
                locs = self.map.db_servers(&db).into_iter().take(1).collect();
            }
            if locs.is_empty() {
                locs = self
                    .decide(|v| v.any())
                    .ok()
                    .map(|i| self.backends[i].name.clone())
                    .into_iter()
                    .collect();
            }
            for l in locs {
                match per.iter_mut().find(|(n, _)| *n == l) {
                    Some((_, v)) => v.push(&it.text),
                    None => per.push((l, vec![&it.text])),
                }
            }
        }
        let locks: Vec<String> = per.iter().map(|(n, _)| n.clone()).collect();
        let mut targets: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for name in self.ordered(&locks) {
            let list = &per.iter().find(|(n, _)| *n == name).expect("listed").1;
            targets.push((
                name,
                Some(query_packet(&format!("LOCK TABLES {}", list.join(", ")))),
            ));
        }
        for b in self
            .backends
            .iter()
            .filter(|b| b.locked && b.in_use && !locks.contains(&b.name))
        {
            targets.push((b.name.clone(), Some(query_packet("UNLOCK TABLES"))));
        }
        targets.sort_by_key(|(n, _)| self.server_order.iter().position(|s| s == n));
        Plan {
            targets,
            mode: Mode::AllOk,
            locks: Some(locks),
        }
    }

    /// Sends a planned statement; shards lost earlier are opened again first.
    pub(super) fn run_merged(&mut self, q: Queued, plan: Plan) -> Result<(), String> {
        let mut sends = Vec::new();
        for (name, packet) in plan.targets {
            let Some(i) = self.backends.iter().position(|b| b.name == name) else {
                continue;
            };
            if !self.backends[i].in_use && self.reconnect(std::slice::from_ref(&name)) != Some(i) {
                let why = self.why_unavailable(i);
                return self.reply_error(
                    1927,
                    "70100",
                    &format!(
                        "'{name}' is not available ({why}): the merged result would be incomplete"
                    ),
                );
            }
            sends.push((i, packet));
        }
        if sends.is_empty() {
            return self.reply_error(1927, "70100", "No server is available for this statement");
        }
        if sends.len() == 1 && sends[0].1.is_none() && plan.locks.is_none() {
            return self.single(q, Some(sends[0].0));
        }
        self.gathering.clear();
        self.gather_left = 0;
        for (i, packet) in sends {
            self.backends[i].gathered = Part {
                server: self.backends[i].name.clone(),
                ..Part::default()
            };
            self.gathering.push(i);
            let packet = packet.unwrap_or_else(|| q.packet.clone());
            if self.write(i, &packet, q.id, super::Expect::Gather) {
                self.gather_left += 1;
            } else {
                self.backends[i].gathered.lost = true;
                if let Some(f) = self.lose(i, "write failed") {
                    return self.end(f);
                }
            }
        }
        self.gather_mode = Some(plan.mode);
        self.lock_set = plan.locks.map(|names| {
            self.backends
                .iter()
                .enumerate()
                .filter(|(_, b)| names.contains(&b.name))
                .map(|(i, _)| i)
                .collect()
        });
        self.busy = true;
        if self.gather_left == 0 {
            self.gather_left = 1;
            return self.gather_done();
        }
        Ok(())
    }

    /// One shard's part is in (or lost): once all are, the merged answer goes out.
    pub(super) fn gather_done(&mut self) -> Result<(), String> {
        if self.gather_mode.is_none() {
            return Ok(());
        }
        self.gather_left = self.gather_left.saturating_sub(1);
        if self.gather_left > 0 {
            return Ok(());
        }
        let mode = self.gather_mode.take().expect("checked");
        let parts: Vec<Part> = std::mem::take(&mut self.gathering)
            .into_iter()
            .map(|i| std::mem::take(&mut self.backends[i].gathered))
            .collect();
        let out = merge(&parts, &mode, self.deprecate_eof);
        let ok = out.get(4) != Some(&0xFF);
        if let Some(set) = self.lock_set.take() {
            if ok {
                for (i, b) in self.backends.iter_mut().enumerate() {
                    b.locked = set.contains(&i);
                }
            }
        }
        self.reply_client(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::info_union;
    use crate::merge::{ColRef, Dedup, Mode};
    use crate::sql::info::analyze;
    use crate::sql::lexer::tokenize_spans;

    fn plan(sql: &str) -> (Option<String>, Mode) {
        let (t, s) = tokenize_spans(sql);
        info_union(&analyze(&t, &s, sql, sql.len()), sql)
    }

    #[test]
    fn what_the_shards_are_sent() {
        let (sql, mode) =
            plan("SELECT column_name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'd' ORDER BY TABLE_NAME, 2 DESC LIMIT 5, 10");
        assert_eq!(sql.as_deref(), Some("SELECT column_name , `COLUMNS`.TABLE_SCHEMA, `COLUMNS`.TABLE_NAME, TABLE_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'd' ORDER BY TABLE_NAME, 2 DESC LIMIT 15"));
        let want = Mode::Union {
            dedup: Dedup::Owner(vec![ColRef::Added(0), ColRef::Added(1)]),
            order: vec![(ColRef::Added(2), false), (ColRef::At(1), true)],
            limit: Some((5, 10)),
            added: 3,
        };
        assert_eq!(mode, want);
        // An alias is found in the result; DISTINCT is merged as whole rows, unchanged.
        let (sql, mode) =
            plan("SELECT table_name AS n FROM information_schema.tables t ORDER BY n");
        assert_eq!(
            sql.as_deref(),
            Some("SELECT table_name AS n , `t`.TABLE_SCHEMA, `t`.TABLE_NAME FROM information_schema.tables t ORDER BY n")
        );
        assert!(
            matches!(mode, Mode::Union { ref order, .. } if order == &vec![(ColRef::Name("n".into()), false)])
        );
        let (sql, mode) =
            plan("SELECT DISTINCT table_schema FROM information_schema.tables LIMIT 3");
        assert_eq!(sql, None);
        assert!(matches!(
            mode,
            Mode::Union {
                dedup: Dedup::WholeRow,
                added: 0,
                limit: Some((0, 3)),
                ..
            }
        ));
    }

    #[test]
    fn any_prefix_of_a_statement_plans_without_panicking() {
        let long = "SELECT a AS x, `b` FROM information_schema.TABLES t WHERE table_schema IN ('a','é') AND table_name = DATABASE() ORDER BY x DESC, LOWER(b), 2 LIMIT 3, 4";
        for (n, _) in long.char_indices() {
            let _ = plan(&long[..n]);
        }
    }
}
