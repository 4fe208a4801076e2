//! Routing decisions, as pure functions of the shard map and the session's state, so that they
//! can be tested without servers.

use crate::shard::ShardMap;
use crate::sql::{Analysis, TableRef};
use std::borrow::Cow;

const SYSTEM: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

fn is_system(db: &str) -> bool {
    SYSTEM.iter().any(|s| s.eq_ignore_ascii_case(db))
}

/// The session's view: its servers in configuration order (name, in use).
pub struct View<'a> {
    pub map: &'a ShardMap,
    pub servers: &'a [(String, bool)],
    pub current_db: &'a str,
    pub preferred: Option<&'a str>,
    /// The previous single target (index into `servers`).
    pub previous: Option<usize>,
}

/// Why no server could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoTarget {
    /// The servers holding what the statement needs are all gone.
    Lost(Vec<String>),
    /// No server is in use at all.
    None,
}

impl<'a> View<'a> {
    fn index(&self, name: &str) -> Option<usize> {
        self.servers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    fn in_use(&self, i: usize) -> bool {
        self.servers.get(i).is_some_and(|s| s.1)
    }

    /// The choice rule among candidate servers: the preferred server if it is one; for a
    /// "universal" set (every server in use) the current database's server; else the first in
    /// configuration order. Only servers in use are chosen; `Err` lists the candidates when
    /// none of them is.
    pub fn choose(&self, candidates: &[String]) -> Result<usize, NoTarget> {
        if let Some(p) = self.preferred {
            if let Some(i) = self
                .index(p)
                .filter(|&i| self.in_use(i) && candidates.iter().any(|c| c.eq_ignore_ascii_case(p)))
            {
                return Ok(i);
            }
        }
        let in_use: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.in_use(i))
            .collect();
        let holds = |i: usize| {
            candidates
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&self.servers[i].0))
        };
        if !self.current_db.is_empty() && !in_use.is_empty() && in_use.iter().all(|&i| holds(i)) {
            if let Some(i) = self.current_db_server() {
                return Ok(i);
            }
        }
        in_use
            .into_iter()
            .find(|&i| holds(i))
            .ok_or_else(|| NoTarget::Lost(candidates.to_vec()))
    }

    /// The first server in use holding the current database.
    pub fn current_db_server(&self) -> Option<usize> {
        let holders = self.map.db_servers(self.current_db);
        (0..self.servers.len())
            .find(|&i| self.in_use(i) && holders.iter().any(|h| h == &self.servers[i].0))
    }

    /// Any-backend selection: the previous target if still in use, else the first server in
    /// use where the user sees something, else the first in use.
    pub fn any(&self) -> Result<usize, NoTarget> {
        if let Some(p) = self.previous.filter(|&p| self.in_use(p)) {
            return Ok(p);
        }
        let in_use = || (0..self.servers.len()).filter(|&i| self.in_use(i));
        in_use()
            .find(|&i| self.map.has_server(&self.servers[i].0))
            .or_else(|| in_use().next())
            .ok_or(NoTarget::None)
    }

    fn intersect(sets: impl Iterator<Item = Vec<String>>) -> Vec<String> {
        let mut acc: Option<Vec<String>> = None;
        for s in sets {
            acc = Some(match acc {
                None => s,
                Some(a) => a.into_iter().filter(|x| s.contains(x)).collect(),
            });
        }
        acc.unwrap_or_default()
    }

    fn table_locations(&self, r: &TableRef) -> &[String] {
        let db = r.db.as_deref().unwrap_or(self.current_db);
        if db.is_empty() {
            return &[];
        }
        self.map.locations(db, &r.table)
    }

    /// The server for a statement: a named-server hint, else the servers holding all its
    /// tables, else those holding all the databases it names, else the current database's
    /// server, else any server (only when there is no current database).
    pub fn query_target(&self, a: &Analysis, hint: Option<&str>) -> Result<usize, NoTarget> {
        if let Some(i) = hint.and_then(|h| self.index(h)).filter(|&i| self.in_use(i)) {
            return Ok(i);
        }
        // Queries on system schemas that name a user database (information_schema with
        // `table_schema = 'db'`) go where that database is.
        let only_system = !a.tables.is_empty()
            && a.tables
                .iter()
                .all(|t| t.db.as_deref().is_some_and(is_system));
        let user_dbs: Vec<&String> = a.databases.iter().filter(|d| !is_system(d)).collect();
        if !a.tables.is_empty() && (!only_system || user_dbs.is_empty()) {
            // One table (most statements): its servers as the map holds them, not copied.
            let set = match a.tables.as_slice() {
                [one] => Cow::Borrowed(self.table_locations(one)),
                many => Cow::Owned(Self::intersect(
                    many.iter().map(|t| self.table_locations(t).to_vec()),
                )),
            };
            if !set.is_empty() {
                return self.choose(&set);
            }
        }
        if !a.databases.is_empty() {
            let dbs: Vec<&String> = if only_system && !user_dbs.is_empty() {
                user_dbs
            } else {
                a.databases.iter().collect()
            };
            let set = Self::intersect(dbs.iter().map(|d| self.map.db_servers(d)));
            if !set.is_empty() {
                return self.choose(&set);
            }
        }
        self.fallback()
    }

    /// With nothing to go by: the current database's server, or any server when there is no
    /// current database (or it is not mapped).
    pub fn fallback(&self) -> Result<usize, NoTarget> {
        if !self.current_db.is_empty() {
            let holders = self.map.db_servers(self.current_db);
            if !holders.is_empty() {
                return self.current_db_server().ok_or(NoTarget::Lost(holders));
            }
        }
        self.any()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::analyze;

    fn setup() -> (ShardMap, Vec<(String, bool)>) {
        let order: Vec<String> = ["s1", "s2", "s3"].iter().map(|s| s.to_string()).collect();
        let mut m = ShardMap::default();
        for s in &order {
            m.add("information_schema", "tables", s, &order);
            m.add("information_schema", "", s, &order);
        }
        m.add("db1", "", "s1", &order);
        m.add("db1", "t1", "s1", &order);
        m.add("db2", "", "s2", &order);
        m.add("db2", "t2", "s2", &order);
        m.add("db3", "", "s3", &order);
        m.add("db3", "t3", "s3", &order);
        // Table-family sharding: `shared` is on s2 and s3, split by table.
        m.add("shared", "", "s2", &order);
        m.add("shared", "", "s3", &order);
        m.add("shared", "a", "s2", &order);
        m.add("shared", "b", "s3", &order);
        (m, order.into_iter().map(|s| (s, true)).collect())
    }

    fn target(v: &View, sql: &str) -> Result<String, NoTarget> {
        v.query_target(&analyze(sql), None)
            .map(|i| v.servers[i].0.clone())
    }

    #[test]
    fn decisions() {
        let (m, servers) = setup();
        let v = View {
            map: &m,
            servers: &servers,
            current_db: "",
            preferred: None,
            previous: None,
        };
        assert_eq!(target(&v, "SELECT * FROM db2.t2").unwrap(), "s2");
        assert_eq!(
            target(&v, "SELECT * FROM DB3.T3").unwrap(),
            "s3",
            "case-insensitive"
        );
        assert_eq!(
            target(&v, "SELECT * FROM shared.b").unwrap(),
            "s3",
            "table family"
        );
        assert_eq!(
            target(&v, "SELECT * FROM shared.a JOIN shared.`a` x").unwrap(),
            "s2"
        );
        assert_eq!(
            target(&v, "CREATE TABLE db3.newt (id INT)").unwrap(),
            "s3",
            "unknown table: database rule"
        );
        assert_eq!(
            target(&v, "SELECT 1").unwrap(),
            "s1",
            "no database: first server with data"
        );
        assert_eq!(
            target(
                &v,
                "SELECT * FROM information_schema.tables WHERE table_schema = 'db3'"
            )
            .unwrap(),
            "s3"
        );
        assert_eq!(
            target(&v, "SELECT * FROM db1.t1 JOIN db2.t2").unwrap(),
            "s1",
            "cross-shard join: first named database"
        );
        assert_eq!(target(&v, "SHOW TABLES FROM db2").unwrap(), "s2");

        let v = View {
            map: &m,
            servers: &servers,
            current_db: "shared",
            preferred: None,
            previous: Some(0),
        };
        assert_eq!(
            target(&v, "SELECT * FROM b").unwrap(),
            "s3",
            "unqualified table inherits the current database"
        );
        assert_eq!(
            target(&v, "SELECT * FROM information_schema.tables").unwrap(),
            "s2",
            "universal table: current database's server"
        );
        assert_eq!(
            target(&v, "SELECT 1").unwrap(),
            "s2",
            "no tables: current database"
        );

        let hinted = v
            .query_target(&analyze("SELECT * FROM b"), Some("S1"))
            .unwrap();
        assert_eq!(hinted, 0, "named-server hint wins");

        let v = View {
            map: &m,
            servers: &servers,
            current_db: "",
            preferred: Some("s3"),
            previous: None,
        };
        assert_eq!(
            target(&v, "SELECT * FROM shared.a, information_schema.tables").unwrap(),
            "s2"
        );
        assert_eq!(
            v.choose(&["s2".into(), "s3".into()]).unwrap(),
            2,
            "preferred_server decides between holders"
        );

        // A dead shard: what needs it cannot go elsewhere; what does not still routes.
        let down: Vec<(String, bool)> = servers
            .iter()
            .map(|(n, _)| (n.clone(), n != "s2"))
            .collect();
        let v = View {
            map: &m,
            servers: &down,
            current_db: "",
            preferred: None,
            previous: Some(1),
        };
        assert_eq!(
            target(&v, "SELECT * FROM db2.t2"),
            Err(NoTarget::Lost(vec!["s2".into()]))
        );
        assert_eq!(target(&v, "SELECT * FROM db3.t3").unwrap(), "s3");
        assert_eq!(
            target(&v, "SELECT 1").unwrap(),
            "s1",
            "previous target gone: first live server"
        );
        let v = View {
            map: &m,
            servers: &down,
            current_db: "db2",
            preferred: None,
            previous: None,
        };
        assert!(matches!(target(&v, "SELECT 1"), Err(NoTarget::Lost(_))));
        assert_eq!(target(&v, "SELECT * FROM db1.t1").unwrap(), "s1");
    }
}
