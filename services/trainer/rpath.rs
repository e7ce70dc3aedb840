// Shared by the build scripts of every crate whose binaries or tests link libtorch
// (`include!`d, so it has no inner doc comment of its own).

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
