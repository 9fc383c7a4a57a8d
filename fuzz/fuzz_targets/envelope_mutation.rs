#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| typed_sessions_fuzz::checks::envelope_mutation(data));
