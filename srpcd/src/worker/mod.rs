//! The worker: runs as one user and serves that user's sessions on one link
//! from the front.

pub mod link;
mod names;
pub mod tree;
