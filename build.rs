//! Compiles `proto/model_metrics.proto` with protox (no system `protoc`) and
//! generates its prost types into OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/model_metrics.proto");
    let descriptors = protox::compile(["model_metrics.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
