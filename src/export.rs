//! The module side of the C ABI: a table of `extern "C"` functions that call a [`Router`].
//!
//! Every entry point catches panics: a panic in a session is logged and ends only that session
//! (the session is poisoned and every later call on it fails); a panic elsewhere fails only the
//! call that panicked. Nothing unwinds into the host.

use crate::ffi;
use crate::host::{self, HostApi, SessionHost};
use crate::params::{ParamKind, Params};
use crate::router::{EndpointInfo, Router, RouterSession, SessionInfo};
use crate::{log_error, log_warning};
use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Once, OnceLock};

/// A module's ABI table and the strings it points to.
pub struct ModuleTable {
    raw: ffi::mxsrs_module,
    _strings: Vec<CString>,
    _params: Vec<ffi::mxsrs_param>,
    _enum_values: Vec<Vec<*const c_char>>,
    _commands: Vec<ffi::mxsrs_command>,
}

// SAFETY: the table is immutable once built and its pointers point into the heap buffers it
// owns, which live as long as the table (a static).
unsafe impl Send for ModuleTable {}
unsafe impl Sync for ModuleTable {}

impl ModuleTable {
    /// The `mxsrs_module*` handed to hosts.
    pub fn as_ptr(&'static self) -> *const c_void {
        (&self.raw as *const ffi::mxsrs_module).cast()
    }
}

/// Declares a module: its ABI table, the `mxsrs_get_module` symbol that the Rust test host
/// looks up, and the `mxs_get_module_object` symbol that MaxScale looks up.
#[macro_export]
macro_rules! export_router {
    ($router:ty) => {
        static __MXSRS_TABLE: ::std::sync::OnceLock<$crate::export::ModuleTable> =
            ::std::sync::OnceLock::new();

        /// The module's C ABI table (`mxsrs_module*`).
        #[no_mangle]
        pub extern "C" fn mxsrs_get_module() -> *const ::std::ffi::c_void {
            $crate::export::table::<$router>(&__MXSRS_TABLE).as_ptr()
        }

        /// MaxScale's entry point: the `MXS_MODULE*` built by the C++ shim. Only in builds
        /// with the shim (the module crate's `maxscale` feature): without it MaxScale finds no
        /// entry point and refuses the file cleanly.
        #[cfg(feature = "maxscale")]
        #[no_mangle]
        pub extern "C" fn mxs_get_module_object() -> *mut ::std::ffi::c_void {
            $crate::export::maxscale_module_object($crate::export::table::<$router>(&__MXSRS_TABLE))
        }
    };
}

#[cfg(mxs_shim)]
extern "C" {
    fn mxsrs_shim_module_object(module: *const ffi::mxsrs_module) -> *mut c_void;
}

/// Builds the MaxScale module object through the shim.
pub fn maxscale_module_object(table: &'static ModuleTable) -> *mut c_void {
    #[cfg(mxs_shim)]
    {
        // SAFETY: the shim reads the static table, which lives for the whole process.
        unsafe { mxsrs_shim_module_object(&table.raw) }
    }
    #[cfg(not(mxs_shim))]
    {
        let _ = table;
        eprintln!("this module was built without MAXSCALE_SRC/MAXSCALE_BUILD: it cannot load into MaxScale");
        std::ptr::null_mut()
    }
}

static PANIC_HOOK: Once = Once::new();

/// Builds (once) the ABI table of router `R`.
pub fn table<R: Router>(cell: &'static OnceLock<ModuleTable>) -> &'static ModuleTable {
    PANIC_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| log_error!("Rust panic: {info}")));
    });
    cell.get_or_init(build_table::<R>)
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).expect("NULs replaced")
}

fn build_table<R: Router>() -> ModuleTable {
    let info = &R::INFO;
    let mut strings = Vec::new();
    let mut keep = |s: &str| -> *const c_char {
        let c = cstring(s);
        let p = c.as_ptr();
        strings.push(c);
        p
    };
    let mut enum_values = Vec::new();
    let mut params = Vec::new();
    for p in info.params {
        let (kind, values): (ffi::mxsrs_param_type, Vec<*const c_char>) = match p.kind {
            ParamKind::String => (ffi::mxsrs_param_type::MXSRS_PARAM_STRING, vec![]),
            ParamKind::Enum(v) => (
                ffi::mxsrs_param_type::MXSRS_PARAM_ENUM,
                v.iter().map(|s| keep(s)).collect(),
            ),
            ParamKind::Target => (ffi::mxsrs_param_type::MXSRS_PARAM_TARGET, vec![]),
            ParamKind::Bool => (ffi::mxsrs_param_type::MXSRS_PARAM_BOOL, vec![]),
            ParamKind::Seconds => (ffi::mxsrs_param_type::MXSRS_PARAM_SECONDS, vec![]),
            ParamKind::Regex => (ffi::mxsrs_param_type::MXSRS_PARAM_REGEX, vec![]),
            ParamKind::StringList => (ffi::mxsrs_param_type::MXSRS_PARAM_STRING_LIST, vec![]),
        };
        params.push(ffi::mxsrs_param {
            name: keep(p.name),
            description: keep(p.description),
            type_: kind,
            default_value: p.default.map_or(std::ptr::null(), &mut keep),
            enum_values: values.as_ptr(),
            n_enum_values: values.len(),
        });
        enum_values.push(values); // moving the Vec keeps its heap buffer where it is
    }
    let commands: Vec<ffi::mxsrs_command> = info
        .commands
        .iter()
        .map(|c| ffi::mxsrs_command {
            name: keep(c.name),
            description: keep(c.description),
        })
        .collect();
    let raw = ffi::mxsrs_module {
        abi_version: ffi::MXSRS_ABI_VERSION,
        name: keep(info.name),
        description: keep(info.description),
        version: keep(info.version),
        capabilities: info.capabilities,
        params: params.as_ptr(),
        n_params: params.len(),
        commands: commands.as_ptr(),
        n_commands: commands.len(),
        validate: Some(validate::<R>),
        router_new: Some(router_new::<R>),
        router_configure: Some(router_configure::<R>),
        router_diagnostics: Some(router_diagnostics::<R>),
        router_command: Some(router_command::<R>),
        router_free: Some(router_free::<R>),
        session_new: Some(session_new::<R>),
        session_route_query: Some(session_route_query::<R>),
        session_client_reply: Some(session_client_reply::<R>),
        session_handle_error: Some(session_handle_error::<R>),
        session_resume: Some(session_resume::<R>),
        session_free: Some(session_free::<R>),
        free_string: Some(free_string),
    };
    ModuleTable {
        raw,
        _strings: strings,
        _params: params,
        _enum_values: enum_values,
        _commands: commands,
    }
}

fn to_c(s: &str) -> *mut c_char {
    cstring(s).into_raw()
}

/// Runs `f`, turning a panic into `None` (the panic hook has logged it).
fn guard<T>(what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            log_error!("{what} failed: a panic was caught at the module boundary");
            None
        }
    }
}

/// # Safety
/// `s` must point to `s.len` readable bytes (or have len 0).
unsafe fn read_str(s: ffi::mxsrs_str) -> String {
    if s.len == 0 || s.ptr.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::slice::from_raw_parts(s.ptr.cast::<u8>(), s.len) };
    String::from_utf8_lossy(bytes).into_owned()
}

/// # Safety
/// `p` must point to `n` valid `mxsrs_kv` (or `n` is 0).
unsafe fn read_params(p: *const ffi::mxsrs_kv, n: usize) -> Params {
    if n == 0 || p.is_null() {
        return Params::default();
    }
    // SAFETY: guaranteed by the caller; each string by the host's contract.
    let kv = unsafe { std::slice::from_raw_parts(p, n) };
    Params::new(
        kv.iter()
            .map(|kv| unsafe { (read_str(kv.key), read_str(kv.value)) }),
    )
}

/// # Safety
/// `data` must point to `len` readable bytes (or `len` is 0).
unsafe fn bytes<'a>(data: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || data.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(data, len) }
    }
}

struct RouterBox<R> {
    router: R,
    api: HostApi,
}

struct SessionBox<S> {
    session: S,
    id: u64,
    poisoned: bool,
    /// Shared with the session's `SessionHost`: the id of the client packet being routed.
    packet_id: Rc<Cell<u32>>,
    /// For closing the endpoints the session leaves open when it is freed.
    host: SessionHost,
    n_endpoints: usize,
}

/// # Safety
/// `r` must be a pointer returned by `router_new::<R>` and not yet freed.
unsafe fn router_ref<'a, R>(r: *const ffi::mxsrs_router) -> &'a RouterBox<R> {
    // SAFETY: guaranteed by the caller; routers are shared (`Sync`).
    unsafe { &*(r as *const RouterBox<R>) }
}

/// # Safety
/// `s` must be a pointer returned by `session_new::<R>` and not yet freed, used only from the
/// session's thread, and no other reference to it may be live (the host never re-enters a
/// session call from inside another call on the same session).
unsafe fn session_mut<'a, R: Router>(s: *mut ffi::mxsrs_session) -> &'a mut SessionBox<R::Session> {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(s as *mut SessionBox<R::Session>) }
}

extern "C" fn validate<R: Router>(p: *const ffi::mxsrs_kv, n: usize) -> *mut c_char {
    guard("parameter validation", || {
        // SAFETY: the host passes `n` valid pairs.
        let params = unsafe { read_params(p, n) };
        match R::validate(&params) {
            Ok(()) => std::ptr::null_mut(),
            Err(e) => to_c(&e),
        }
    })
    .unwrap_or_else(|| to_c("internal error while validating parameters"))
}

extern "C" fn router_new<R: Router>(
    api: *const ffi::mxsrs_host_api,
    service: ffi::mxsrs_str,
    targets: *const ffi::mxsrs_str,
    n_targets: usize,
) -> *mut ffi::mxsrs_router {
    if api.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the host passes a table that outlives every router.
    let api = host::install(HostApi(unsafe { *api }));
    guard("router creation", || {
        // SAFETY: the host passes valid strings.
        let service = unsafe { read_str(service) };
        let targets: Vec<String> = if n_targets == 0 || targets.is_null() {
            vec![]
        } else {
            // SAFETY: the host passes `n_targets` valid strings.
            unsafe { std::slice::from_raw_parts(targets, n_targets) }
                .iter()
                .map(|s| unsafe { read_str(*s) })
                .collect()
        };
        match R::new(&service, &targets) {
            Ok(router) => {
                Box::into_raw(Box::new(RouterBox { router, api })) as *mut ffi::mxsrs_router
            }
            Err(e) => {
                log_error!(
                    "{}: cannot create the router of service '{service}': {e}",
                    R::INFO.name
                );
                std::ptr::null_mut()
            }
        }
    })
    .unwrap_or(std::ptr::null_mut())
}

extern "C" fn router_configure<R: Router>(
    r: *mut ffi::mxsrs_router,
    p: *const ffi::mxsrs_kv,
    n: usize,
) -> *mut c_char {
    guard("router configuration", || {
        // SAFETY: the host passes its live router and `n` valid pairs.
        let (router, params) = unsafe { (router_ref::<R>(r), read_params(p, n)) };
        match router.router.configure(&params) {
            Ok(()) => std::ptr::null_mut(),
            Err(e) => to_c(&e),
        }
    })
    .unwrap_or_else(|| to_c("internal error while configuring the router"))
}

extern "C" fn router_diagnostics<R: Router>(r: *const ffi::mxsrs_router) -> *mut c_char {
    guard("router diagnostics", || {
        // SAFETY: the host passes its live router.
        let router = unsafe { router_ref::<R>(r) };
        router
            .router
            .diagnostics()
            .map_or(std::ptr::null_mut(), |v| to_c(&v.to_string()))
    })
    .unwrap_or(std::ptr::null_mut())
}

extern "C" fn router_command<R: Router>(
    r: *mut ffi::mxsrs_router,
    name: ffi::mxsrs_str,
    ok: *mut bool,
) -> *mut c_char {
    let (success, text) = guard("module command", || {
        // SAFETY: the host passes its live router and a valid string.
        let (router, name) = unsafe { (router_ref::<R>(r), read_str(name)) };
        match router.router.command(&name) {
            Ok(v) => (true, v.map(|v| v.to_string())),
            Err(e) => (false, Some(e)),
        }
    })
    .unwrap_or((false, Some("internal error in module command".into())));
    if !ok.is_null() {
        // SAFETY: the host passes a valid out pointer.
        unsafe { *ok = success };
    }
    text.map_or(std::ptr::null_mut(), |t| to_c(&t))
}

extern "C" fn router_free<R: Router>(r: *mut ffi::mxsrs_router) {
    if r.is_null() {
        return;
    }
    guard("router shutdown", || {
        // SAFETY: the host frees each router once, after its last session.
        let boxed = unsafe { Box::from_raw(r as *mut RouterBox<R>) };
        boxed.router.shutdown();
        drop(boxed);
    });
}

extern "C" fn session_new<R: Router>(
    r: *mut ffi::mxsrs_router,
    ctx: *mut ffi::mxsrs_session_ctx,
    info: *const ffi::mxsrs_session_info,
) -> *mut ffi::mxsrs_session {
    if r.is_null() || info.is_null() {
        return std::ptr::null_mut();
    }
    guard("session creation", || {
        // SAFETY: the host passes its live router and a session description valid for the call.
        let (router, info) = unsafe { (router_ref::<R>(r), &*info) };
        let endpoints = if info.n_endpoints == 0 || info.endpoints.is_null() {
            vec![]
        } else {
            // SAFETY: `n_endpoints` valid entries, by the host's contract.
            unsafe { std::slice::from_raw_parts(info.endpoints, info.n_endpoints) }
                .iter()
                .map(|e| EndpointInfo {
                    name: unsafe { read_str(e.name) },
                    can_connect: e.can_connect,
                })
                .collect()
        };
        // SAFETY: valid strings, by the host's contract.
        let info = unsafe {
            SessionInfo {
                id: info.id,
                user: read_str(info.user),
                client_host: read_str(info.client_host),
                default_db: read_str(info.default_db),
                client_caps: info.client_caps,
                endpoints,
            }
        };
        let id = info.id;
        let n_endpoints = info.endpoints.len();
        let packet_id = Rc::new(Cell::new(0));
        match router
            .router
            .new_session(SessionHost::new(router.api, ctx, packet_id.clone()), info)
        {
            Ok(session) => {
                let host = SessionHost::new(router.api, ctx, packet_id.clone());
                Box::into_raw(Box::new(SessionBox {
                    session,
                    id,
                    poisoned: false,
                    packet_id,
                    host,
                    n_endpoints,
                })) as *mut ffi::mxsrs_session
            }
            Err(e) => {
                log_error!("session {id}: {e}");
                std::ptr::null_mut()
            }
        }
    })
    .unwrap_or(std::ptr::null_mut())
}

/// Runs a session call: a poisoned session refuses, a panic poisons it, an error is logged.
fn session_call<R: Router>(
    s: *mut ffi::mxsrs_session,
    what: &str,
    packet_id: u32,
    f: impl FnOnce(&mut R::Session) -> Result<(), String>,
) -> bool {
    if s.is_null() {
        return false;
    }
    // SAFETY: the host passes its live session, from the session's thread, without re-entry.
    let sb = unsafe { session_mut::<R>(s) };
    if sb.poisoned {
        return false;
    }
    sb.packet_id.set(packet_id);
    let result = guard(what, || f(&mut sb.session));
    sb.packet_id.set(0);
    match result {
        Some(Ok(())) => true,
        Some(Err(e)) => {
            log_error!("session {}: {e}", sb.id);
            false
        }
        None => {
            sb.poisoned = true;
            log_error!("session {}: closed after an internal error", sb.id);
            false
        }
    }
}

extern "C" fn session_route_query<R: Router>(
    s: *mut ffi::mxsrs_session,
    data: *const u8,
    len: usize,
    id: u32,
) -> bool {
    // SAFETY: the host passes `len` readable bytes.
    let packet = unsafe { bytes(data, len) };
    session_call::<R>(s, "routing a query", id, |sess| sess.route_query(packet))
}

extern "C" fn session_client_reply<R: Router>(
    s: *mut ffi::mxsrs_session,
    ep: usize,
    data: *const u8,
    len: usize,
) -> bool {
    // SAFETY: the host passes `len` readable bytes.
    let buf = unsafe { bytes(data, len) };
    session_call::<R>(s, "handling a reply", 0, |sess| sess.client_reply(ep, buf))
}

extern "C" fn session_handle_error<R: Router>(
    s: *mut ffi::mxsrs_session,
    ep: usize,
    msg: ffi::mxsrs_str,
) -> bool {
    // SAFETY: the host passes a valid string.
    let msg = unsafe { read_str(msg) };
    session_call::<R>(s, "handling a backend error", 0, |sess| {
        if sess.handle_error(ep, &msg) {
            Ok(())
        } else {
            Err(format!("backend failure ends the session: {msg}"))
        }
    })
}

extern "C" fn session_resume<R: Router>(s: *mut ffi::mxsrs_session) -> bool {
    session_call::<R>(s, "resuming", 0, |sess| sess.resume())
}

extern "C" fn session_free<R: Router>(s: *mut ffi::mxsrs_session) {
    if s.is_null() {
        return;
    }
    // SAFETY: the host frees each session once, after its last call.
    let SessionBox {
        session,
        host,
        n_endpoints,
        ..
    } = *unsafe { Box::from_raw(s as *mut SessionBox<R::Session>) };
    if guard("session cleanup", || drop(session)).is_none() {
        log_warning!("a panic while freeing a session was contained");
    }
    // A router session closes its backend connections when it ends: MaxScale 24.08 no longer
    // does it for the router, and an endpoint left open delivers its next event (a server
    // closing the connection, a server going down) to the freed session.
    guard("closing a session's endpoints", || {
        for i in (0..n_endpoints).filter(|&i| host.is_open(i)) {
            host.close(i);
        }
    });
}

extern "C" fn free_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: every string handed out was made by `CString::into_raw` above.
        drop(unsafe { CString::from_raw(s) });
    }
}
