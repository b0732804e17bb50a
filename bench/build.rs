//! Generates the gRPC echo service (needs `protoc`: `scripts/bench` installs it).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        // `bytes` fields as `Bytes`, not `Vec<u8>`: no copy of a 64 KiB payload
        // that sRPC's side does not make either.
        .bytes(".")
        .compile_protos(&["proto/echo.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/echo.proto");
    Ok(())
}
