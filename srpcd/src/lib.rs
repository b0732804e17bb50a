//! srpcd: the sRPC daemon. See `docs/architecture.md` for its three roles.
#![forbid(unsafe_code)]

pub mod config;
pub mod ipc;
pub mod worker;
