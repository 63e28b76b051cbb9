//! Compiles `proto/model_metrics.proto` and `proto/example.proto` with
//! protox (no system `protoc`) and generates their prost types into OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/model_metrics.proto");
    println!("cargo:rerun-if-changed=proto/example.proto");
    let descriptors = protox::compile(["model_metrics.proto", "example.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
