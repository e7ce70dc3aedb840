//! Lets the trainer's binaries and tests find libtorch without LD_LIBRARY_PATH: an rpath to
//! the libtorch that torch-sys linked against (and the CUDA runtime libraries beside it in
//! the PyPI layout). LD_LIBRARY_PATH still wins, which is how a GPU machine with its own
//! libtorch runs a binary built here.

include!("rpath.rs");
