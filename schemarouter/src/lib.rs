//! `schemarouter`: a MaxScale router that shards by database and table.
pub mod sql;
