//! The host side of the C ABI, for a host written in Rust: the test host loads a module's
//! shared library with dlopen and drives it through exactly the functions MaxScale's shim
//! calls. A test implements [`SimHost`] (real backend connections, a recorded client).

use crate::ffi;
use crate::host::str_arg;
use crate::log::Level;
use crate::params::Params;
use crate::router::SessionInfo;
use std::ffi::{c_char, c_void, CStr};
use std::path::Path;
use std::sync::Mutex;

/// What the module may ask of a session's host.
pub trait SimHost {
    fn connect(&mut self, endpoint: usize) -> bool;
    fn is_open(&self, endpoint: usize) -> bool;
    /// `id` is the id the test gave the client packet (`SimSession::route_query_with_id`).
    fn write(&mut self, endpoint: usize, data: &[u8], id: u32) -> bool;
    fn close(&mut self, endpoint: usize);
    fn client_reply(&mut self, endpoint: Option<usize>, data: &[u8], complete: bool) -> bool;
    fn kill(&mut self, message: &str);
    fn schedule_resume(&mut self);
    /// The module asked that backends get no connect-time database (the test host never sends one).
    fn clear_connect_db(&mut self) {}
    /// The ROUTE_TO_NAMED_SERVER hint of the packet being routed.
    fn route_hint(&self) -> Option<String> {
        None
    }
    /// Whether reopened backends get the session state back (the test host keeps no history).
    fn can_recover_state(&self) -> bool {
        false
    }
}

type Ctx = Box<dyn SimHost>;

/// Every message modules logged through the simulated host, in order.
pub static LOG: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

/// Takes the log messages recorded so far.
pub fn take_log() -> Vec<(Level, String)> {
    std::mem::take(&mut *LOG.lock().unwrap_or_else(|e| e.into_inner()))
}

fn level_of(l: ffi::mxsrs_log_level) -> Level {
    match l {
        ffi::mxsrs_log_level::MXSRS_LOG_ERROR => Level::Error,
        ffi::mxsrs_log_level::MXSRS_LOG_WARNING => Level::Warning,
        ffi::mxsrs_log_level::MXSRS_LOG_NOTICE => Level::Notice,
        ffi::mxsrs_log_level::MXSRS_LOG_INFO => Level::Info,
    }
}

/// # Safety
/// `s` must point to `s.len` readable bytes (or have len 0).
unsafe fn text(s: ffi::mxsrs_str) -> String {
    if s.len == 0 || s.ptr.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(s.ptr.cast::<u8>(), s.len) })
        .into_owned()
}

/// # Safety
/// `ctx` must be a context made by `SimRouter::new_session` whose session is alive, and no
/// other reference to the host may be live (the module calls back only from inside a call the
/// test made, during which the test does not touch the host).
unsafe fn host<'a>(ctx: *mut ffi::mxsrs_session_ctx) -> &'a mut dyn SimHost {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut **(ctx as *mut Ctx) }
}

extern "C" fn sim_log(level: ffi::mxsrs_log_level, msg: ffi::mxsrs_str) {
    // SAFETY: the module passes a valid string.
    let msg = unsafe { text(msg) };
    if std::env::var_os("MXSRS_SIM_QUIET").is_none() {
        eprintln!("[module {:?}] {msg}", level_of(level));
    }
    LOG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((level_of(level), msg));
}
extern "C" fn sim_log_enabled(_: ffi::mxsrs_log_level) -> bool {
    true
}
extern "C" fn sim_connect(ctx: *mut ffi::mxsrs_session_ctx, ep: usize) -> bool {
    // SAFETY: see `host`.
    unsafe { host(ctx) }.connect(ep)
}
extern "C" fn sim_is_open(ctx: *mut ffi::mxsrs_session_ctx, ep: usize) -> bool {
    // SAFETY: see `host`.
    unsafe { host(ctx) }.is_open(ep)
}
extern "C" fn sim_write(
    ctx: *mut ffi::mxsrs_session_ctx,
    ep: usize,
    data: *const u8,
    len: usize,
    id: u32,
) -> bool {
    // SAFETY: see `host`; the module passes `len` readable bytes.
    unsafe { host(ctx).write(ep, std::slice::from_raw_parts(data, len), id) }
}
extern "C" fn sim_close(ctx: *mut ffi::mxsrs_session_ctx, ep: usize) {
    // SAFETY: see `host`.
    unsafe { host(ctx) }.close(ep)
}
extern "C" fn sim_reply(
    ctx: *mut ffi::mxsrs_session_ctx,
    ep: usize,
    data: *const u8,
    len: usize,
    complete: bool,
) -> bool {
    let ep = (ep != usize::MAX).then_some(ep);
    // SAFETY: see `host`; the module passes `len` readable bytes.
    unsafe { host(ctx).client_reply(ep, std::slice::from_raw_parts(data, len), complete) }
}
extern "C" fn sim_kill(ctx: *mut ffi::mxsrs_session_ctx, msg: ffi::mxsrs_str) {
    // SAFETY: see `host`; the module passes a valid string.
    unsafe { host(ctx).kill(&text(msg)) }
}
extern "C" fn sim_schedule_resume(ctx: *mut ffi::mxsrs_session_ctx) {
    // SAFETY: see `host`.
    unsafe { host(ctx) }.schedule_resume()
}

extern "C" fn sim_clear_connect_db(ctx: *mut ffi::mxsrs_session_ctx) {
    unsafe { host(ctx) }.clear_connect_db()
}
extern "C" fn sim_can_recover_state(ctx: *mut ffi::mxsrs_session_ctx) -> bool {
    // SAFETY: see `host`.
    unsafe { host(ctx) }.can_recover_state()
}
extern "C" fn sim_route_hint(ctx: *mut ffi::mxsrs_session_ctx) -> ffi::mxsrs_str {
    // The string must outlive this call: keep the latest one per thread.
    thread_local!(static HINT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
    let h = unsafe { host(ctx) }.route_hint().unwrap_or_default();
    HINT.with(|c| {
        *c.borrow_mut() = h;
        let b = c.borrow();
        ffi::mxsrs_str {
            ptr: b.as_ptr().cast(),
            len: b.len(),
        }
    })
}

static SIM_API: ffi::mxsrs_host_api = ffi::mxsrs_host_api {
    log: Some(sim_log),
    log_enabled: Some(sim_log_enabled),
    endpoint_connect: Some(sim_connect),
    endpoint_is_open: Some(sim_is_open),
    endpoint_write: Some(sim_write),
    endpoint_close: Some(sim_close),
    client_reply: Some(sim_reply),
    session_kill: Some(sim_kill),
    session_schedule_resume: Some(sim_schedule_resume),
    session_clear_connect_db: Some(sim_clear_connect_db),
    packet_route_hint: Some(sim_route_hint),
    session_can_recover_state: Some(sim_can_recover_state),
};

/// A module loaded from its shared library (never unloaded).
pub struct Module {
    raw: &'static ffi::mxsrs_module,
}

/// A module string handed to us; freed with the module's `free_string`.
fn take_string(m: &ffi::mxsrs_module, s: *mut c_char) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: the module returns NUL-terminated strings it allocated.
    let out = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    // SAFETY: released exactly once, with the module's own allocator.
    unsafe { (m.free_string.expect("free_string"))(s) };
    Some(out)
}

fn kv(params: &Params) -> Vec<ffi::mxsrs_kv> {
    params
        .iter()
        .map(|(k, v)| ffi::mxsrs_kv {
            key: str_arg(k.as_bytes()),
            value: str_arg(v.as_bytes()),
        })
        .collect()
}

impl Module {
    /// Loads `lib<name>.so` and checks its ABI version.
    pub fn load(path: &Path) -> Result<Module, String> {
        // SAFETY: loading one of this project's modules runs no initialisers with
        // preconditions; the library is leaked so every pointer it hands out stays valid.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY: the symbol has this signature in every module (bridge::export_router!).
        let get: libloading::Symbol<'static, extern "C" fn() -> *const c_void> =
            unsafe { lib.get(b"mxsrs_get_module\0") }
                .map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: the table is a static of the (never unloaded) library.
        let raw = unsafe { &*(get() as *const ffi::mxsrs_module) };
        if raw.abi_version != ffi::MXSRS_ABI_VERSION {
            return Err(format!(
                "ABI version {} != {}",
                raw.abi_version,
                ffi::MXSRS_ABI_VERSION
            ));
        }
        Ok(Module { raw })
    }

    /// A module linked into this process (its table from `export_router!`/`export::table`).
    pub fn in_process(table: &'static crate::export::ModuleTable) -> Module {
        // SAFETY: `as_ptr` points to the table's `mxsrs_module`, a static.
        Module {
            raw: unsafe { &*(table.as_ptr() as *const ffi::mxsrs_module) },
        }
    }

    pub fn name(&self) -> String {
        // SAFETY: a NUL-terminated static string of the module.
        unsafe { CStr::from_ptr(self.raw.name) }
            .to_string_lossy()
            .into_owned()
    }

    /// Declared parameters: name and default (None: mandatory).
    pub fn params(&self) -> Vec<(String, Option<String>)> {
        // SAFETY: `n_params` entries of NUL-terminated static strings.
        unsafe {
            std::slice::from_raw_parts(self.raw.params, self.raw.n_params)
                .iter()
                .map(|p| {
                    let d = (!p.default_value.is_null()).then(|| {
                        CStr::from_ptr(p.default_value)
                            .to_string_lossy()
                            .into_owned()
                    });
                    (CStr::from_ptr(p.name).to_string_lossy().into_owned(), d)
                })
                .collect()
        }
    }

    pub fn validate(&self, params: &Params) -> Result<(), String> {
        let kv = kv(params);
        // SAFETY: `kv` points into `params`, alive for the call.
        let err = unsafe { (self.raw.validate.expect("validate"))(kv.as_ptr(), kv.len()) };
        take_string(self.raw, err).map_or(Ok(()), Err)
    }

    pub fn new_router(&self, service: &str, targets: &[&str]) -> Result<SimRouter, String> {
        let t: Vec<ffi::mxsrs_str> = targets.iter().map(|s| str_arg(s.as_bytes())).collect();
        // SAFETY: the API table is a static; the strings live for the call.
        let ptr = unsafe {
            (self.raw.router_new.expect("router_new"))(
                &SIM_API,
                str_arg(service.as_bytes()),
                t.as_ptr(),
                t.len(),
            )
        };
        if ptr.is_null() {
            return Err("router creation failed".into());
        }
        Ok(SimRouter { m: self.raw, ptr })
    }
}

/// A router instance of a loaded module.
pub struct SimRouter {
    m: &'static ffi::mxsrs_module,
    ptr: *mut ffi::mxsrs_router,
}

impl SimRouter {
    pub fn configure(&self, params: &Params) -> Result<(), String> {
        let kv = kv(params);
        // SAFETY: live router; `kv` alive for the call.
        let err = unsafe {
            (self.m.router_configure.expect("router_configure"))(self.ptr, kv.as_ptr(), kv.len())
        };
        take_string(self.m, err).map_or(Ok(()), Err)
    }

    pub fn diagnostics(&self) -> Option<serde_json::Value> {
        // SAFETY: live router.
        let s = unsafe { (self.m.router_diagnostics.expect("router_diagnostics"))(self.ptr) };
        take_string(self.m, s).map(|s| serde_json::from_str(&s).expect("diagnostics are JSON"))
    }

    pub fn command(&self, name: &str) -> Result<Option<String>, String> {
        let mut ok = false;
        // SAFETY: live router; valid string and out pointer.
        let s = unsafe {
            (self.m.router_command.expect("router_command"))(
                self.ptr,
                str_arg(name.as_bytes()),
                &mut ok,
            )
        };
        let s = take_string(self.m, s);
        if ok {
            Ok(s)
        } else {
            Err(s.unwrap_or_default())
        }
    }

    /// A session whose host is `host`. None if the module refused it.
    pub fn new_session(&self, host: Box<dyn SimHost>, info: &SessionInfo) -> Option<SimSession> {
        let ctx: *mut Ctx = Box::into_raw(Box::new(host));
        let eps: Vec<ffi::mxsrs_endpoint_info> = info
            .endpoints
            .iter()
            .map(|e| ffi::mxsrs_endpoint_info {
                name: str_arg(e.name.as_bytes()),
                can_connect: e.can_connect,
            })
            .collect();
        let raw = ffi::mxsrs_session_info {
            id: info.id,
            user: str_arg(info.user.as_bytes()),
            client_host: str_arg(info.client_host.as_bytes()),
            default_db: str_arg(info.default_db.as_bytes()),
            client_caps: info.client_caps,
            endpoints: eps.as_ptr(),
            n_endpoints: eps.len(),
        };
        // SAFETY: live router; `raw` and its strings live for the call; `ctx` lives until the
        // session is freed.
        let ptr = unsafe { (self.m.session_new.expect("session_new"))(self.ptr, ctx.cast(), &raw) };
        if ptr.is_null() {
            // SAFETY: made above, not shared with a session.
            drop(unsafe { Box::from_raw(ctx) });
            return None;
        }
        Some(SimSession {
            m: self.m,
            ptr,
            ctx,
        })
    }
}

impl Drop for SimRouter {
    fn drop(&mut self) {
        // SAFETY: freed once; sessions borrow nothing from the router box on our side.
        unsafe { (self.m.router_free.expect("router_free"))(self.ptr) }
    }
}

/// A session of a router instance. Calls must come from one thread.
pub struct SimSession {
    m: &'static ffi::mxsrs_module,
    ptr: *mut ffi::mxsrs_session,
    ctx: *mut Ctx,
}

impl SimSession {
    pub fn route_query(&mut self, packet: &[u8]) -> bool {
        self.route_query_with_id(packet, 0)
    }
    pub fn route_query_with_id(&mut self, packet: &[u8], id: u32) -> bool {
        // SAFETY: live session; `packet` alive for the call.
        unsafe {
            (self.m.session_route_query.expect("route_query"))(
                self.ptr,
                packet.as_ptr(),
                packet.len(),
                id,
            )
        }
    }
    pub fn client_reply(&mut self, endpoint: usize, data: &[u8]) -> bool {
        // SAFETY: as above.
        unsafe {
            (self.m.session_client_reply.expect("client_reply"))(
                self.ptr,
                endpoint,
                data.as_ptr(),
                data.len(),
            )
        }
    }
    pub fn handle_error(&mut self, endpoint: usize, message: &str) -> bool {
        // SAFETY: as above.
        unsafe {
            (self.m.session_handle_error.expect("handle_error"))(
                self.ptr,
                endpoint,
                str_arg(message.as_bytes()),
            )
        }
    }
    pub fn resume(&mut self) -> bool {
        // SAFETY: live session.
        unsafe { (self.m.session_resume.expect("resume"))(self.ptr) }
    }
}

impl Drop for SimSession {
    fn drop(&mut self) {
        // SAFETY: the session is freed once, then its context, which it no longer uses.
        unsafe {
            (self.m.session_free.expect("session_free"))(self.ptr);
            drop(Box::from_raw(self.ctx));
        }
    }
}
