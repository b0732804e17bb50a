//! sRPC for applications: the client side ([`client`]) that dials an srpcd over
//! TLS, authenticates users and calls endpoints, and the handler side
//! ([`handler`]) that endpoint implementers use to serve calls.
#![forbid(unsafe_code)]

pub mod client;
pub mod frames;
pub mod handler;

pub use srpc_proto as proto;
