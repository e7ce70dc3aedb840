//! These tests link the trainer, hence libtorch: the same rpath as the trainer's own
//! binaries (one copy of that logic, in services/trainer/rpath.rs).

include!("../services/trainer/rpath.rs");
