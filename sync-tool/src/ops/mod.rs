//! Commands for operating a running sync: `verify` (is etcd equal to the source?) and
//! `status` (what is the active instance doing?).

pub mod status;
pub mod verify;
