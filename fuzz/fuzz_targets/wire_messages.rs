#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gradients_fuzz::wire_messages(data));
