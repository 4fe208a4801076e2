//! The session's shard map: from the cache or built with the mapping query, then the
//! connect-time database applied; and mapping again after changes of user or schema.

use super::{own_packet, session_key, Expect, Session, State};
use crate::shard::{Lookup, ShardMap, MAPPING_QUERY};
use bridge::protocol::command::{COM_INIT_DB, COM_QUERY};
use bridge::{log_error, log_info, log_warning};
use std::sync::Arc;
use std::time::Instant;

impl Session {
    /// After a successful COM_CHANGE_USER: the shard map is the new user's (built or taken
    /// from the cache at the next request), the current database the one the client named.
    pub(super) fn changed_user(&mut self, user: String, db: String) {
        self.release_claim();
        log_info!(
            "session {}: user changed from '{}' to '{user}': mapping with the new user's view",
            self.id,
            self.user
        );
        self.user = user;
        self.map = Arc::new(ShardMap::default());
        self.current_db = db;
        self.previous = None;
        self.state = State::Fresh;
    }

    /// After DDL through this router: the databases and tables it created or removed must be
    /// routable at once, here and in new sessions (the native router waits for
    /// `refresh_interval`).
    pub(super) fn schema_changed(&mut self) {
        log_info!(
            "session {}: databases or tables changed: the shard maps are invalidated",
            self.id
        );
        self.shared.cache.invalidate();
        self.release_claim();
        self.state = State::Fresh;
    }

    /// Gives up the cache's update slot if this session holds it.
    pub(super) fn release_claim(&mut self) {
        if self.claimed {
            self.shared.cache.release(&self.key);
            self.claimed = false;
        }
    }

    pub(super) fn obtain_map(&mut self) {
        // The servers in use now: one lost before mapping is not part of the map.
        self.key = session_key(&self.user, &self.backends);
        let cfg = self.cfg.clone();
        match self
            .shared
            .cache
            .lookup(&self.key, cfg.refresh_interval, cfg.max_staleness)
        {
            Lookup::Hit(map, t) | Lookup::Stale(map, t) => {
                self.map = map;
                self.map_time = t;
                self.after_map();
            }
            Lookup::Build => self.start_mapping(true),
            Lookup::BuildUnclaimed => self.start_mapping(false),
        }
    }

    pub(super) fn start_mapping(&mut self, claimed: bool) {
        self.claimed = claimed;
        self.state = State::Mapping;
        self.building = ShardMap::default();
        self.mapping_started = Instant::now();
        self.mapping_partial = false;
        let q = own_packet(COM_QUERY, MAPPING_QUERY.as_bytes());
        let mut sent = 0;
        for i in 0..self.backends.len() {
            if self.write(i, &q, 0, Expect::Mapping) {
                sent += 1;
            }
        }
        self.mapping_left = sent;
        if sent == 0 {
            // MXS-5152: with nothing sent, waiting would be forever.
            log_error!(
                "session {}: the mapping query could not be sent to any server",
                self.id
            );
            self.kill("Failed to map any of the databases");
        }
    }

    pub(super) fn mapping_done(&mut self, i: usize, error: Option<String>) {
        if let Some(e) = error {
            log_warning!(
                "session {}: mapping query returned an error on '{}'; ignoring server: {e}",
                self.id,
                self.backends[i].name
            );
        }
        self.mapping_left = self.mapping_left.saturating_sub(1);
        if self.mapping_left > 0 || self.state != State::Mapping {
            return;
        }
        let map = std::mem::take(&mut self.building);
        let dups = map.duplicates(&self.cfg);
        if !dups.is_empty() {
            for d in &dups {
                let servers: Vec<String> = d.servers.iter().map(|s| format!("'{s}'")).collect();
                log_error!(
                    "'{}' found on servers {} for user '{}'@'{}'.",
                    d.name,
                    servers.join(","),
                    self.user,
                    self.client_host
                );
            }
            log_error!("Duplicate tables found, closing session.");
            self.kill("Error: duplicate tables found on two different shards.");
            return;
        }
        if map.is_empty() {
            // MXS-5158: an empty map is never cached, and the session does not loop.
            log_error!("session {}: no server answered the mapping query", self.id);
            self.kill("Failed to map any of the databases");
            return;
        }
        let map = Arc::new(map);
        if self.mapping_partial {
            // A server lost while mapping has its part missing: other sessions must not get it.
            log_warning!(
                "session {}: a server was lost while mapping: the map is used by this session only",
                self.id
            );
            self.release_claim();
        } else {
            self.shared
                .cache
                .publish(&self.key, map.clone(), self.mapping_started, self.claimed);
            self.claimed = false;
        }
        self.map = map;
        self.map_time = self.mapping_started;
        self.after_map();
    }

    fn after_map(&mut self) {
        let Some(db) = self.connect_db.take() else {
            self.state = State::Ready;
            return;
        };
        let holders = self.map.db_servers(&db);
        let pkt = own_packet(COM_INIT_DB, db.as_bytes());
        let mut sent = 0;
        for i in 0..self.backends.len() {
            if holders.contains(&self.backends[i].name) && self.write(i, &pkt, 0, Expect::InitDb) {
                sent += 1;
            }
        }
        if sent == 0 {
            let mut msg = format!("Unknown database '{db}'");
            if self.cfg.debug {
                msg.push_str(&format!(" ([{}]: DB not found on connect)", self.id));
            }
            log_info!(
                "session {}: connecting to a non-existent database '{db}'",
                self.id
            );
            self.kill(&msg);
            return;
        }
        self.current_db = db;
        self.init_db_left = sent;
        self.state = State::InitDb;
    }

    pub(super) fn init_db_done(&mut self) {
        self.init_db_left = self.init_db_left.saturating_sub(1);
        if self.init_db_left == 0 && self.state == State::InitDb {
            self.state = State::Ready;
        }
    }
}
