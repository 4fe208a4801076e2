//! MySQL/MariaDB driver.

use anyhow::Result;

use crate::config::Config;
use crate::retry::fatal;
use crate::sink::Sink;

pub async fn run(_cfg: &Config, _sink: &mut Sink, _started: &mut bool) -> Result<()> {
    Err(fatal("database.type mysql is not implemented yet"))
}

pub async fn dump_only(_cfg: &Config, _sink: &mut Sink) -> Result<()> {
    Err(fatal("database.type mysql is not implemented yet"))
}
