//! srpcd: the sRPC daemon. See `docs/architecture.md` for its three roles.
#![forbid(unsafe_code)]
// Protocol refusals travel as the `Rerror` message they become; boxing them
// would buy nothing on these cold paths.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod certificate;
pub mod config;
pub mod front;
pub mod ipc;
pub mod link;
pub mod lockout;
pub mod logging;
pub mod monitor;
pub mod pam;
pub mod source;
pub mod users;
pub mod worker;
