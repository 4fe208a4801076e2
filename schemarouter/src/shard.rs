//! The shard map (database → table → servers) and its per-service cache.

use crate::config::Config;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The exact mapping query of the native router (with its trailing space).
pub const MAPPING_QUERY: &str = "SELECT LOWER(t.table_schema), LOWER(t.table_name) FROM information_schema.tables t UNION ALL SELECT LOWER(s.schema_name), '' FROM information_schema.schemata s ";

/// `s` in ASCII lowercase, copied only if it has uppercase letters (names usually do not).
fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Lowercase database → lowercase table (`""` for the database itself) → server names
/// (in the service's configuration order, no repeats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMap {
    pub dbs: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// An entry found on more than one server without an ignore rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// `db.table`, or `db.` for the database.
    pub name: String,
    pub servers: Vec<String>,
}

impl ShardMap {
    /// Records that `server` holds `db.table` (`table` empty for the database).
    /// `order` is the service's target order, which location lists follow.
    pub fn add(&mut self, db: &str, table: &str, server: &str, order: &[String]) {
        if db.is_empty() {
            return;
        }
        let locs = self
            .dbs
            .entry(db.to_ascii_lowercase())
            .or_default()
            .entry(table.to_ascii_lowercase())
            .or_default();
        if !locs.iter().any(|s| s == server) {
            locs.push(server.to_string());
            let pos = |s: &String| order.iter().position(|o| o == s).unwrap_or(usize::MAX);
            locs.sort_by_key(pos);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// Servers holding `db.table` (`table` "" for the database), case-insensitive.
    pub fn locations(&self, db: &str, table: &str) -> &[String] {
        self.dbs
            .get(lower(db).as_ref())
            .and_then(|t| t.get(lower(table).as_ref()))
            .map_or(&[], |v| v.as_slice())
    }

    /// Every server holding anything of `db`.
    pub fn db_servers(&self, db: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(tables) = self.dbs.get(lower(db).as_ref()) {
            for locs in tables.values() {
                for s in locs {
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
            }
        }
        out
    }

    pub fn has_server(&self, server: &str) -> bool {
        self.dbs
            .values()
            .any(|t| t.values().any(|l| l.iter().any(|s| s == server)))
    }

    /// Entries on several servers that no ignore rule exempts. With `preferred_server`
    /// (2.3), an entry that the preferred server holds is not a conflict: it goes there.
    pub fn duplicates(&self, cfg: &Config) -> Vec<Duplicate> {
        let mut out = Vec::new();
        for (db, tables) in &self.dbs {
            for (table, locs) in tables {
                if locs.len() < 2 {
                    continue;
                }
                let full = format!("{db}.{table}");
                if cfg.ignores(db, &full)
                    || cfg
                        .preferred_server
                        .as_ref()
                        .is_some_and(|p| locs.iter().any(|s| s.eq_ignore_ascii_case(p)))
                {
                    continue;
                }
                out.push(Duplicate {
                    name: full,
                    servers: locs.clone(),
                });
            }
        }
        out
    }

    /// `SHOW SHARDS` rows: (`db.table`, server), sorted.
    pub fn shard_rows(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (db, tables) in &self.dbs {
            for (table, locs) in tables {
                for s in locs {
                    out.push((format!("{db}.{table}"), s.clone()));
                }
            }
        }
        out
    }
}

#[derive(Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub updates: AtomicU64,
    pub stale: AtomicU64,
}

struct Entry {
    map: Arc<ShardMap>,
    /// When the session that built it started mapping.
    created: Instant,
    /// `invalidate` was run: the next lookup counts it stale and remaps.
    invalidated: bool,
}

/// What a lookup found.
pub enum Lookup {
    /// A fresh map.
    Hit(Arc<ShardMap>, Instant),
    /// No usable fresh map: this session claimed the update and must build one.
    Build,
    /// Another session is building; this stale map may be used meanwhile.
    Stale(Arc<ShardMap>, Instant),
    /// Another session is building and nothing usable is cached: build one too rather than
    /// wait (the bridge has no timers to poll with, and waiting would block the client).
    BuildUnclaimed,
}

/// The per-service cache. Keys are the user name and the servers the session connected to.
/// The client's host is left out on purpose: backends evaluate grants against MaxScale's
/// address, not the client's, so the map cannot depend on it.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, Entry>>,
    updating: Mutex<HashSet<String>>,
    pub stats: Stats,
}

pub fn cache_key(user: &str, servers: &[String]) -> String {
    // Separated, so that `bob`+`s1s2` and `bobs1`+`s2` differ (the native key is ambiguous).
    let mut k = String::from(user);
    for s in servers {
        k.push('\u{0}');
        k.push_str(s);
    }
    k
}

impl Cache {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lookup(&self, key: &str, refresh: Duration, max_staleness: Duration) -> Lookup {
        let now = Instant::now();
        let found = {
            let entries = Self::lock(&self.entries);
            entries.get(key).map(|e| {
                (
                    e.map.clone(),
                    e.created,
                    e.invalidated || now.duration_since(e.created).as_secs() > refresh.as_secs(),
                )
            })
        };
        match &found {
            None => {
                self.stats.misses.fetch_add(1, Relaxed);
            }
            Some((map, created, false)) => {
                self.stats.hits.fetch_add(1, Relaxed);
                return Lookup::Hit(map.clone(), *created);
            }
            Some(_) => {
                self.stats.stale.fetch_add(1, Relaxed);
            }
        }
        if Self::lock(&self.updating).insert(key.to_string()) {
            return Lookup::Build;
        }
        if let Some((map, created, _)) = found {
            if now.duration_since(created).as_secs() <= (refresh + max_staleness).as_secs() {
                return Lookup::Stale(map, created);
            }
            Self::lock(&self.entries).remove(key);
        }
        Lookup::BuildUnclaimed
    }

    /// Stores a map built by a session that started mapping at `started`; `claimed` says
    /// whether that session holds the update slot (which is released).
    pub fn publish(&self, key: &str, map: Arc<ShardMap>, started: Instant, claimed: bool) {
        {
            let mut entries = Self::lock(&self.entries);
            let newer = entries
                .get(key)
                .is_none_or(|e| e.invalidated || e.created < started);
            if newer {
                entries.insert(
                    key.to_string(),
                    Entry {
                        map,
                        created: started,
                        invalidated: false,
                    },
                );
                self.stats.updates.fetch_add(1, Relaxed);
            }
        }
        if claimed {
            self.release(key);
        }
    }

    /// Gives up the update slot (mapping failed, or the session ended while mapping).
    pub fn release(&self, key: &str) {
        Self::lock(&self.updating).remove(key);
    }

    pub fn clear(&self) {
        Self::lock(&self.entries).clear();
    }

    pub fn invalidate(&self) {
        for e in Self::lock(&self.entries).values_mut() {
            e.invalidated = true;
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "shard_map_hits": self.stats.hits.load(Relaxed),
            "shard_map_misses": self.stats.misses.load(Relaxed),
            "shard_map_updates": self.stats.updates.load(Relaxed),
            "shard_map_stale": self.stats.stale.load(Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Vec<String> {
        vec!["s1".into(), "s2".into(), "s3".into()]
    }

    #[test]
    fn map_and_duplicates() {
        let o = order();
        let mut m = ShardMap::default();
        m.add("DB1", "", "s2", &o);
        m.add("db1", "T1", "s2", &o);
        m.add("shared", "", "s3", &o);
        m.add("shared", "", "s1", &o);
        m.add("shared", "a", "s1", &o);
        m.add("shared", "b", "s3", &o);
        m.add("information_schema", "tables", "s1", &o);
        m.add("information_schema", "tables", "s2", &o);
        m.add("", "x", "s1", &o);
        assert_eq!(m.locations("Db1", "t1"), ["s2"]);
        assert_eq!(
            m.locations("shared", ""),
            ["s1", "s3"],
            "configuration order"
        );
        assert_eq!(m.db_servers("SHARED"), vec!["s1", "s3"]);
        let d = m.duplicates(&Config::default());
        assert_eq!(
            d,
            vec![Duplicate {
                name: "shared.".into(),
                servers: vec!["s1".into(), "s3".into()]
            }]
        );
        let cfg = Config::from_params(&bridge::params::Params::new([("ignore_tables", "shared.")]))
            .unwrap();
        assert!(m.duplicates(&cfg).is_empty());
        let cfg = Config::from_params(&bridge::params::Params::new([("preferred_server", "s3")]))
            .unwrap();
        assert!(m.duplicates(&cfg).is_empty());
        assert!(m.shard_rows().contains(&("db1.t1".into(), "s2".into())));
        assert!(m.has_server("s3") && !m.has_server("s9"));
    }

    #[test]
    fn cache_counts_and_staleness() {
        let c = Cache::default();
        let (r, s) = (Duration::from_secs(300), Duration::from_secs(150));
        let k = cache_key("bob", &order());
        assert_ne!(
            cache_key("bob", &["s1s2".into()]),
            cache_key("bobs1", &["s2".into()])
        );
        assert!(matches!(c.lookup(&k, r, s), Lookup::Build));
        // A second session while the first maps: nothing cached, builds without the slot.
        assert!(matches!(c.lookup(&k, r, s), Lookup::BuildUnclaimed));
        c.publish(&k, Arc::new(ShardMap::default()), Instant::now(), true);
        assert!(matches!(c.lookup(&k, r, s), Lookup::Hit(..)));
        c.invalidate();
        assert!(matches!(c.lookup(&k, r, s), Lookup::Build));
        // Someone is rebuilding: the invalidated entry serves meanwhile.
        assert!(matches!(c.lookup(&k, r, s), Lookup::Stale(..)));
        c.release(&k);
        c.clear();
        assert!(matches!(c.lookup(&k, r, s), Lookup::Build));
        let j = c.to_json();
        assert_eq!(
            (
                j["shard_map_hits"].as_u64(),
                j["shard_map_misses"].as_u64(),
                j["shard_map_stale"].as_u64(),
                j["shard_map_updates"].as_u64()
            ),
            (Some(1), Some(3), Some(2), Some(1))
        );
        // An old entry is stale past refresh_interval.
        c.publish(
            &k,
            Arc::new(ShardMap::default()),
            Instant::now() - Duration::from_secs(10),
            true,
        );
        assert!(matches!(
            c.lookup(&k, Duration::from_secs(5), s),
            Lookup::Build
        ));
    }
}
