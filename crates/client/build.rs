//! Compiles the test-only service in `proto/clienttest.proto` (used by this crate's integration
//! tests as a stand-in application server) with protox: no system protoc needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/clienttest.proto");
    let fds = protox::compile(["proto/clienttest.proto"], ["proto"])?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
