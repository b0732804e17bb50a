//! srpc-launch: what srpcd's monitor execs, still root, for every child it
//! starts (front, workers, handlers). It applies the cgroup, limits and ids and
//! execs the real program; see `srpc_os::launcher_main`. Never run by hand.
#![forbid(unsafe_code)]

fn main() {
    srpc_os::launcher_main()
}
