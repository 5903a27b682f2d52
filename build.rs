//! Generates the gRPC server code and the file descriptor set (for reflection) from `proto/`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    // A vendored protoc, so that a fresh machine needs no system package to build.
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_client(false)
        .file_descriptor_set_path(out_dir.join("mintcache_descriptor.bin"))
        .compile_with_config(config, &["proto/mintcache/v1/cache.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
