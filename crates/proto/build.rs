//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates
//! the tonic clients and servers from the file descriptors.

use std::path::PathBuf;

const PROTOS: &[&str] = &["dugong/v1/dugong.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    for file in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(PROTOS, [&root])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
