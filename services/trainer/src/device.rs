//! Picking the device: CUDA when libtorch's CUDA library loads and sees a GPU, else CPU.
//!
//! libtorch registers its CUDA backend only when `libtorch_cuda.so` is loaded, and the
//! linker drops it from our binary because no symbol of it is referenced. Linking it
//! unconditionally (`--no-as-needed`) would make the binary fail to start on CPU machines
//! where the PyPI wheel ships the library but not cuDNN and cuBLAS, so it is opened at run
//! time instead, and a failure just means CPU.

use std::ffi::CString;

use tch::Device;

/// Loads `libtorch_cuda.so` (from the library path or beside libtorch) if it can.
/// Returns the loader's message when it cannot.
pub fn load_cuda_backend() -> Result<(), String> {
    let name = CString::new("libtorch_cuda.so").expect("no interior NUL");
    // SAFETY: dlopen with a valid C string; the handle is intentionally never closed so
    // the backend stays registered for the life of the process.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local C string or null.
        let message = unsafe { libc::dlerror() };
        let text = if message.is_null() {
            "unknown dlopen error".to_owned()
        } else {
            unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned()
        };
        return Err(text);
    }
    Ok(())
}

/// `cuda` if a GPU is usable, else `cpu`; `requested` may force `cpu`.
pub fn choose(requested: &str) -> Device {
    match requested {
        "cpu" => Device::Cpu,
        _ => {
            let loaded = load_cuda_backend();
            if tch::Cuda::is_available() {
                Device::Cuda(0)
            } else {
                if let Err(reason) = loaded {
                    tracing::debug!(%reason, "CUDA backend not loaded; training on CPU");
                }
                Device::Cpu
            }
        }
    }
}
