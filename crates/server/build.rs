//! Compiles proto/pointsman/v1/router.proto with protox (pure Rust, no
//! protoc) and writes the generated code plus the encoded descriptor set
//! (served by reflection) to OUT_DIR.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = root.join("pointsman/v1/router.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("pointsman_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Undecodable requests answer INVALID_ARGUMENT (src/codec.rs).
        .codec_path("crate::codec::PbCodec")
        .compile_fds(fds)?;
    Ok(())
}
