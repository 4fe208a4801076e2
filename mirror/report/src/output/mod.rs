//! The three renderings of a verdict: terminal tables, JSON (the verdict's serde form) and
//! an HTML page.

pub mod charts;
pub mod fmt;
pub mod html;
pub mod terminal;
