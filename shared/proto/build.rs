//! Compiles the wire contract. The only build script that touches protobuf: every other
//! crate uses the types from here. `protoc` comes from `protoc-bin-vendored`, so a fresh
//! machine needs nothing installed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files: Vec<PathBuf> = std::fs::read_dir(proto_root.join("gradients/v1"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    let mut files: Vec<PathBuf> = files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "proto")).collect();
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    // Maps as BTreeMap: encoded in key order, so equal messages encode to equal bytes —
    // signatures over encoded messages depend on it (a HashMap's order varies per instance).
    prost_build::Config::new().btree_map(["."]).compile_protos(&files, std::slice::from_ref(&proto_root))?;
    // The official ONNX contract (vendored, see proto/onnx/README.md), for the exporter and
    // the evaluator's checks.
    let onnx = proto_root.join("onnx/onnx.proto");
    println!("cargo:rerun-if-changed={}", onnx.display());
    prost_build::Config::new().compile_protos(&[onnx], &[proto_root.join("onnx")])?;
    Ok(())
}
