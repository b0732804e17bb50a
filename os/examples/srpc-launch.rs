//! The launcher, built with this crate's tests (which run it); srpcd installs
//! the same program as its own `srpc-launch` binary.
#![forbid(unsafe_code)]

fn main() {
    srpc_os::launcher_main()
}
