//! The operating-system layer: every `unsafe` block and raw libc call of sRPC
//! lives here, each with a `// SAFETY:` comment. Everything else in the
//! workspace is `#![forbid(unsafe_code)]` and calls the safe functions below.
