//! What the mirror suites share: a router of the built module configured to export to a
//! file of the test's own, and reading the reports back.

use crate::env;
use crate::harness::Targets;
use bridge::params::Params;
use bridge::sim::{Module, SimRouter};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// s1 (main) and s2: the shared MariaDB servers 3301 and 3302.
pub fn servers() -> Targets {
    let p = env::mariadb_ports();
    maxscale_like(Targets::new(&[("s1", p[0]), ("s2", p[1])]))
}

/// Prepared-statement ids translated per server, as MaxScale does for mirror.
pub fn maxscale_like(mut t: Targets) -> Targets {
    t.ps_ids = true;
    t
}

pub fn module() -> Module {
    Module::load(&env::module_path("mirror")).expect("load libmirror.so")
}

pub struct Setup {
    pub router: SimRouter,
    pub file: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn base_params(file: &Path) -> Vec<(String, String)> {
    vec![
        ("main".into(), "s1".into()),
        ("exporter".into(), "file".into()),
        ("file".into(), file.display().to_string()),
    ]
}

/// A router for targets s1 (main) and s2 with `extra` parameters.
pub fn setup(extra: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mirror.jsonl");
    let router = module().new_router("Mirror", &["s1", "s2"]).unwrap();
    let mut p = base_params(&file);
    p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    router.configure(&Params::new(p)).unwrap();
    Setup {
        router,
        file,
        _dir: dir,
    }
}

pub fn reports(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn hex_le(crc: u32) -> String {
    crc.to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn targets_of(r: &Value) -> Vec<&str> {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["target"].as_str().unwrap())
        .collect()
}

/// The result of `target` in a report.
pub fn result_of<'a>(r: &'a Value, target: &str) -> Option<&'a Value> {
    r["results"]
        .as_array()?
        .iter()
        .find(|x| x["target"] == target)
}
