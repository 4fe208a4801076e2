//! The Rust test host. It plays MaxScale's part for the router modules: it loads a module's
//! shared library, opens real connections to MariaDB servers, passes client packets to the
//! module and backend replies back, all through the same C ABI MaxScale's shim uses
//! (`bridge::sim`). `maxscale` runs the same modules inside a real MaxScale when one is given.

pub mod backend;
pub mod env;
pub mod fuzz;
pub mod harness;
pub mod history;
pub mod kafka;
pub mod listener;
pub mod maxscale;
pub mod mirror_setup;
pub mod packets;
pub mod private_server;
pub mod ps_ids;
pub mod reliability;
pub mod sysbench;
