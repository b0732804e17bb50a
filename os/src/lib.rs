//! The operating-system layer: every `unsafe` block and raw libc call of sRPC
//! lives here, each with a `// SAFETY:` comment. Everything else in the
//! workspace is `#![forbid(unsafe_code)]` and calls the safe functions below.
//!
//! - [`listen_fds`]: take the sockets a process was started with (systemd style);
//!   [`ListenFdCommand`]: start a program that way, through the launcher
//!   ([`launcher_main`], the `srpc-launch` program).
//! - [`send_fd`] / [`recv_fd`]: pass a connection and a few bytes over a Unix socket.
//! - [`dup_fd`]: a copy of an fd the process was given by number.
//! - [`peer_credentials`], [`peer_security_context`]: who is at the other end of a
//!   Unix socket, as the kernel says; [`user_name`]: the name of a uid.
//! - [`selinux`]: the kernel's SELinux interface (mode, contexts, labels).

mod error;
mod fd;
mod launch_spec;
mod launcher;
mod listen;
mod rlimit;
mod scm;
pub mod selinux;
mod socket;
mod spawn;
mod users;

pub use error::Error;
pub use fd::dup_fd;
pub use launcher::{launcher_main, LAUNCH_MARKER};
pub use listen::listen_fds;
pub use rlimit::{Resource, Rlimit};
pub use scm::{recv_fd, send_fd};
pub use socket::{is_unix_stream_listener, peer_credentials, peer_security_context, PeerCred};
pub use spawn::{Credentials, Launch, LaunchStatus, ListenFdCommand};
pub use users::{effective_gid, effective_uid, user_name};
