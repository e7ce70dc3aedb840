//! Lets the trainer's binaries and tests find libtorch without LD_LIBRARY_PATH: an rpath to
//! the libtorch that torch-sys linked against (and the CUDA runtime libraries beside it in
//! the PyPI layout). LD_LIBRARY_PATH still wins, which is how a GPU machine with its own
//! libtorch runs a binary built here.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return;
    };
    let mut dirs = vec![libtorch.join("lib")];
    // PyPI layout: site-packages/torch and site-packages/nvidia/cu13/lib.
    if let Some(site_packages) = libtorch.parent() {
        dirs.push(site_packages.join("nvidia/cu13/lib"));
    }
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
