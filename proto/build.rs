//! Compiles `proto/tapedeck/capture/v1/capture.proto` with `protox` (pure Rust, so no `protoc`
//! install is needed). The tonic service code is generated only with the `grpc` feature.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/tapedeck/capture/v1/capture.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .build_transport(grpc)
        .out_dir(&out)
        .compile_fds(descriptors)?;
    Ok(())
}
