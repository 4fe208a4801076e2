//! Raw bindings of include/mxsrs.h (bindgen).
#![allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all)]
include!(concat!(env!("OUT_DIR"), "/mxsrs.rs"));
