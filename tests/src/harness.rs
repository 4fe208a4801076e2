//! One client session of a module, hosted by the test: the module's writes go to real
//! MariaDB connections, their replies come back to the module, and what the module sends to
//! the client is recorded.

use crate::backend::{Backend, Event};
use crate::env;
use bridge::router::{EndpointInfo, SessionInfo};
use bridge::sim::{SimHost, SimRouter, SimSession};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// Capabilities of the simulated client: protocol 4.1, multi-statements and -results,
/// LOCAL INFILE, transactions, plugin auth; DEPRECATE_EOF optional.
pub const BASE_CAPS: u64 = 0x0000_0001 | 0x4 | 0x80 | 0x200 | 0x2000 | 0x8000 | 0x1_0000 | 0x2_0000 | 0x4_0000 | 0x8_0000;
pub const DEPRECATE_EOF: u64 = 1 << 24;

#[derive(Clone)]
pub struct Targets {
    /// (name, port)
    pub servers: Vec<(String, u16)>,
    /// Endpoints MaxScale would consider down.
    pub down: Vec<String>,
    pub caps: u64,
    pub user: String,
    pub password: String,
    pub default_db: String,
}

impl Targets {
    pub fn new(servers: &[(&str, u16)]) -> Self {
        Targets {
            servers: servers.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
            down: vec![],
            caps: BASE_CAPS,
            user: env::USER.into(),
            password: env::PASSWORD.into(),
            default_db: String::new(),
        }
    }
}

/// What the module sent to the client.
#[derive(Default, Debug)]
pub struct Client {
    pub bytes: Vec<u8>,
    /// Replies ended with `complete`.
    pub completed: usize,
    /// Chunks: (from endpoint, bytes, complete).
    pub chunks: Vec<(Option<usize>, Vec<u8>, bool)>,
    pub killed: Option<String>,
    /// Packets the module wrote: (endpoint, the host id they carried).
    pub writes: Vec<(usize, u32)>,
}

struct State {
    targets: Targets,
    backends: Vec<Option<Backend>>,
    /// Closed by the module: its end is not reported back.
    closed_by_module: Vec<bool>,
    client: Client,
    resume: bool,
    events: Sender<Event>,
}

struct Host(Rc<RefCell<State>>);

impl SimHost for Host {
    fn connect(&mut self, ep: usize) -> bool {
        let mut st = self.0.borrow_mut();
        let Some((_, port)) = st.targets.servers.get(ep).cloned() else { return false };
        let t = st.targets.clone();
        match Backend::connect(port, &t.user, &t.password, "", t.caps, ep, st.events.clone()) {
            Ok(b) => {
                st.backends[ep] = Some(b);
                true
            }
            Err(e) => {
                eprintln!("test host: cannot connect endpoint {ep} (port {port}): {e}");
                false
            }
        }
    }
    fn is_open(&self, ep: usize) -> bool {
        self.0.borrow().backends.get(ep).is_some_and(|b| b.is_some())
    }
    fn write(&mut self, ep: usize, data: &[u8], id: u32) -> bool {
        let mut st = self.0.borrow_mut();
        st.client.writes.push((ep, id));
        st.backends.get_mut(ep).and_then(|b| b.as_mut()).is_some_and(|b| b.write(data))
    }
    fn close(&mut self, ep: usize) {
        let mut st = self.0.borrow_mut();
        if let Some(mut b) = st.backends.get_mut(ep).and_then(|b| b.take()) {
            b.close();
        }
        if let Some(c) = st.closed_by_module.get_mut(ep) {
            *c = true;
        }
    }
    fn client_reply(&mut self, ep: Option<usize>, data: &[u8], complete: bool) -> bool {
        let mut st = self.0.borrow_mut();
        st.client.bytes.extend_from_slice(data);
        st.client.chunks.push((ep, data.to_vec(), complete));
        if complete {
            st.client.completed += 1;
        }
        true
    }
    fn kill(&mut self, message: &str) {
        self.0.borrow_mut().client.killed = Some(message.to_string());
    }
    fn schedule_resume(&mut self) {
        self.0.borrow_mut().resume = true;
    }
}

pub struct Harness {
    session: Option<SimSession>,
    state: Rc<RefCell<State>>,
    events: Receiver<Event>,
    /// False once the module ended the session.
    pub alive: bool,
    pub id: u64,
    /// Ids given to client packets, as MaxScale numbers them (from 1).
    next_packet_id: u32,
}

impl Harness {
    /// Opens a session; None if the module refused it.
    pub fn open(router: &SimRouter, targets: Targets) -> Option<Harness> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = channel();
        let n = targets.servers.len();
        let info = SessionInfo {
            id,
            user: targets.user.clone(),
            client_host: "127.0.0.1".into(),
            default_db: targets.default_db.clone(),
            client_caps: targets.caps,
            endpoints: targets
                .servers
                .iter()
                .map(|(name, _)| EndpointInfo { name: name.clone(), can_connect: !targets.down.contains(name) })
                .collect(),
        };
        let state = Rc::new(RefCell::new(State {
            targets,
            backends: (0..n).map(|_| None).collect(),
            closed_by_module: vec![false; n],
            client: Client::default(),
            resume: false,
            events: tx,
        }));
        let session = router.new_session(Box::new(Host(state.clone())), &info)?;
        Some(Harness { session: Some(session), state, events: rx, alive: true, id, next_packet_id: 0 })
    }

    fn session(&mut self) -> &mut SimSession {
        self.session.as_mut().expect("session open")
    }

    /// Sends client packets; false if the module closed the session.
    pub fn send(&mut self, packets: Vec<Vec<u8>>) -> bool {
        for p in packets {
            if !self.alive {
                return false;
            }
            self.next_packet_id += 1;
            let id = self.next_packet_id;
            if !self.session().route_query_with_id(&p, id) {
                self.alive = false;
            }
            self.resume_if_asked();
        }
        self.alive
    }

    fn resume_if_asked(&mut self) {
        while self.alive && std::mem::take(&mut self.state.borrow_mut().resume) {
            if !self.session().resume() {
                self.alive = false;
            }
        }
    }

    /// Delivers backend events to the module until `done` holds or `timeout` passes.
    pub fn pump_until(&mut self, timeout: Duration, mut done: impl FnMut(&Client) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if done(&self.state.borrow().client) {
                return true;
            }
            if !self.alive {
                return false;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Data(ep, data)) => {
                    if self.state.borrow().closed_by_module[ep] {
                        continue;
                    }
                    if !self.session().client_reply(ep, &data) {
                        self.alive = false;
                    }
                }
                Ok(Event::Closed(ep, msg)) => {
                    let known = {
                        let mut st = self.state.borrow_mut();
                        let k = st.closed_by_module[ep];
                        st.closed_by_module[ep] = true;
                        st.backends[ep] = None;
                        k
                    };
                    if !known && !self.session().handle_error(ep, &msg) {
                        self.alive = false;
                    }
                }
                Err(RecvTimeoutError::Timeout) => return done(&self.state.borrow().client),
                Err(RecvTimeoutError::Disconnected) => return false,
            }
            self.resume_if_asked();
        }
    }

    /// Waits for the `n`-th complete reply to the client.
    pub fn wait_replies(&mut self, n: usize, timeout: Duration) -> bool {
        self.pump_until(timeout, |c| c.completed >= n)
    }

    /// Sends a query and waits for its complete reply; returns the reply's bytes.
    pub fn query(&mut self, sql: &str) -> Vec<u8> {
        let before = self.state.borrow().client.bytes.len();
        let n = self.state.borrow().client.completed + 1;
        assert!(self.send(crate::packets::query(sql)), "session closed while sending {sql:?}");
        assert!(self.wait_replies(n, Duration::from_secs(30)), "no complete reply to {sql:?}");
        self.state.borrow().client.bytes[before..].to_vec()
    }

    /// Hands the module bytes as if `ep`'s server had sent them.
    pub fn inject(&mut self, ep: usize, data: &[u8]) -> bool {
        if !self.session().client_reply(ep, data) {
            self.alive = false;
        }
        self.alive
    }

    /// Delivers whatever arrives within `d` (for replies that are not expected to complete).
    pub fn settle(&mut self, d: Duration) {
        self.pump_until(d, |_| false);
    }

    pub fn client<R>(&self, f: impl FnOnce(&Client) -> R) -> R {
        f(&self.state.borrow().client)
    }

    /// The server-side connection id of an endpoint's connection (for KILL).
    pub fn connection_id(&self, ep: usize) -> Option<u32> {
        self.state.borrow().backends[ep].as_ref().map(|b| b.connection_id)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.session.take());
        for b in self.state.borrow_mut().backends.iter_mut().flatten() {
            b.close();
        }
    }
}
