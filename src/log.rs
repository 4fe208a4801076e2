//! Logging through the host (MaxScale's log, at its levels). Before a host is known, and in
//! unit tests, messages go to stderr.

use crate::host;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Notice,
    Info,
}

pub fn write(level: Level, message: &str) {
    if !host::log(level, message) {
        eprintln!("[{level:?}] {message}");
    }
}

/// Whether a message at `level` would be written (info needs `log_info`).
pub fn enabled(level: Level) -> bool {
    host::log_enabled(level).unwrap_or(level != Level::Info)
}

#[macro_export]
macro_rules! log_error { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Error, &format!($($a)*)) } }
#[macro_export]
macro_rules! log_warning { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Warning, &format!($($a)*)) } }
#[macro_export]
macro_rules! log_notice { ($($a:tt)*) => { $crate::log::write($crate::log::Level::Notice, &format!($($a)*)) } }
#[macro_export]
macro_rules! log_info {
    ($($a:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Info) {
            $crate::log::write($crate::log::Level::Info, &format!($($a)*))
        }
    }
}
