//! What the unprivileged front sends the root monitor, through the monitor's
//! parser (`srpcd::ipc::decode`): arbitrary datagrams and fd counts must give
//! a typed message or a precise error, never a panic; whatever decodes must
//! re-encode to a datagram that decodes to the same message and payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srpcd::ipc::{decode, IpcError, ToMonitor, MAX_MESSAGE};

fuzz_target!(|data: &[u8]| {
    // First byte: how many fds came with the datagram (0 to 3).
    let Some((&fds, datagram)) = data.split_first() else {
        return;
    };
    let fds = usize::from(fds % 4);
    match decode::<ToMonitor>(datagram, fds) {
        Ok((msg, payload)) => {
            assert!(fds <= 1, "accepted {fds} fds");
            assert!(datagram.len() <= MAX_MESSAGE);
            assert!(payload.len() + 4 <= datagram.len());
            let header = serde_json::to_vec(&msg).unwrap();
            let mut again = u32::try_from(header.len()).unwrap().to_be_bytes().to_vec();
            again.extend_from_slice(&header);
            again.extend_from_slice(payload);
            let (msg2, payload2) = decode::<ToMonitor>(&again, fds).unwrap();
            assert_eq!(msg2, msg);
            assert_eq!(payload2, payload);
        }
        Err(IpcError::TooLarge) => assert!(datagram.len() > MAX_MESSAGE),
        Err(IpcError::Malformed(why)) => assert!(!why.is_empty()),
        Err(IpcError::Io(e)) => panic!("decode did I/O: {e}"),
    }
});
