//! Running the built mirror-report binary from the tests.

#![allow(dead_code)]

pub mod browser;

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mirror-report")
}

/// Runs mirror-report with `args` (and `stdin`, if given); never waits more than 120 s.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mirror-report");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("mirror-report {args:?} did not finish in 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `mirror-report --json ARGS`, which must succeed; its verdict.
pub fn verdict(args: &[&str]) -> Value {
    let mut all = vec!["--json", "--quiet"];
    all.extend_from_slice(args);
    let o = run(&all, None);
    assert_eq!(
        o.status.code(),
        Some(0),
        "mirror-report {all:?}: {}",
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}): {}", stdout(&o)))
}

/// The class of a verdict with this fingerprint.
pub fn class<'v>(v: &'v Value, fingerprint: &str) -> &'v Value {
    v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["fingerprint"] == fingerprint)
        .unwrap_or_else(|| {
            let all: Vec<&Value> = v["classes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| &c["fingerprint"])
                .collect();
            panic!("no class {fingerprint:?} among {all:?}")
        })
}

/// Fingerprints of the classes with upgrade conflicts.
pub fn conflicting(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["conflicts"].as_u64() > Some(0) && c["non_deterministic"] == false)
        .map(|c| c["fingerprint"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// What a class says about one target.
pub fn target<'c>(class: &'c Value, name: &str) -> &'c Value {
    class["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == name)
        .unwrap_or_else(|| panic!("no target {name} in {class}"))
}

/// The conflict kinds of a class on one target.
pub fn kinds(class: &Value, name: &str) -> Vec<String> {
    target(class, name)["kinds"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}
