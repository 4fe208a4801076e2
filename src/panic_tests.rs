//! A router that panics must not take its host down: the panic is caught at the boundary,
//! only the session concerned ends, and every later call on it fails cleanly.

use crate::export::{table, ModuleTable};
use crate::host::SessionHost;
use crate::params::Params;
use crate::router::{CommandSpec, ModuleInfo, Router, RouterSession, SessionInfo};
use crate::sim::{Module, SimHost};
use std::sync::OnceLock;

struct Panicky;
struct PanickySession {
    host: SessionHost,
}

impl Router for Panicky {
    type Session = PanickySession;
    const INFO: ModuleInfo = ModuleInfo {
        name: "panicky",
        description: "panics on demand",
        version: "0",
        capabilities: 0,
        params: &[],
        commands: &[CommandSpec {
            name: "boom",
            description: "panics",
        }],
    };
    fn validate(p: &Params) -> Result<(), String> {
        if p.iter().any(|(k, _)| k == "boom") {
            panic!("validate panicked");
        }
        Ok(())
    }
    fn new(service: &str, _: &[String]) -> Result<Self, String> {
        if service == "boom" {
            panic!("router creation panicked");
        }
        Ok(Panicky)
    }
    fn configure(&self, _: &Params) -> Result<(), String> {
        Ok(())
    }
    fn command(&self, _: &str) -> Result<Option<serde_json::Value>, String> {
        panic!("command panicked")
    }
    fn new_session(&self, host: SessionHost, _: SessionInfo) -> Result<PanickySession, String> {
        Ok(PanickySession { host })
    }
}

impl RouterSession for PanickySession {
    fn route_query(&mut self, packet: &[u8]) -> Result<(), String> {
        match packet {
            b"boom" => panic!("route_query panicked"),
            b"err" => Err("refused".into()),
            _ => {
                self.host.reply(None, packet, true);
                Ok(())
            }
        }
    }
    fn client_reply(&mut self, _: usize, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn handle_error(&mut self, _: usize, _: &str) -> bool {
        true
    }
}

#[derive(Default)]
struct NullHost(std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>);

impl SimHost for NullHost {
    fn connect(&mut self, _: usize) -> bool {
        true
    }
    fn is_open(&self, _: usize) -> bool {
        true
    }
    fn write(&mut self, _: usize, _: &[u8], _: u32) -> bool {
        true
    }
    fn close(&mut self, _: usize) {}
    fn client_reply(&mut self, _: Option<usize>, data: &[u8], _: bool) -> bool {
        self.0.borrow_mut().push(data.to_vec());
        true
    }
    fn kill(&mut self, _: &str) {}
    fn schedule_resume(&mut self) {}
}

fn module() -> Module {
    static TABLE: OnceLock<ModuleTable> = OnceLock::new();
    Module::in_process(table::<Panicky>(&TABLE))
}

fn info() -> SessionInfo {
    SessionInfo {
        id: 7,
        user: "u".into(),
        client_host: "h".into(),
        default_db: String::new(),
        client_caps: 0,
        endpoints: vec![],
    }
}

#[test]
fn a_panicking_session_ends_alone() {
    let m = module();
    let r = m.new_router("svc", &[]).unwrap();
    let out = NullHost::default();
    let seen = out.0.clone();
    let mut a = r.new_session(Box::new(out), &info()).unwrap();
    let mut b = r
        .new_session(Box::new(NullHost::default()), &info())
        .unwrap();
    assert!(a.route_query(b"hello"));
    assert_eq!(seen.borrow().len(), 1);
    assert!(!a.route_query(b"boom"), "a panic fails the call");
    assert!(!a.route_query(b"hello"), "and the session stays failed");
    assert_eq!(seen.borrow().len(), 1, "a poisoned session does nothing");
    assert!(!a.client_reply(0, b"x") && !a.handle_error(0, "x") && !a.resume());
    assert!(b.route_query(b"hello"), "other sessions go on");
    assert!(
        !b.route_query(b"err"),
        "an error is a refusal, not a poisoning"
    );
    assert!(b.route_query(b"hello"));
    drop(a);
    drop(b);
}

#[test]
fn panics_outside_sessions_fail_only_that_call() {
    let m = module();
    assert!(m.new_router("boom", &[]).is_err());
    let err = m.validate(&Params::new([("boom", "1")])).unwrap_err();
    assert!(err.contains("internal error"), "{err}");
    let r = m.new_router("svc", &[]).unwrap();
    assert!(r.command("boom").is_err());
    assert!(
        r.configure(&Params::default()).is_ok(),
        "the router still works"
    );
}
