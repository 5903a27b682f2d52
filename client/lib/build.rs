//! Generates the gRPC client stubs from the shared `proto/` directory. The client crate never
//! depends on the server crate, so users of the client do not compile the server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(
            config,
            &["../../proto/mintcache/v1/cache.proto"],
            &["../../proto"],
        )?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
