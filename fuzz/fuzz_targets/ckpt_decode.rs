//! The checkpoint decoder on arbitrary bytes, twice: as a whole file (the
//! header checks), and as a payload behind a valid header with its correct
//! checksum, so the field decoders and their length fields are reached too.
//! No input may panic, hang or make it allocate more than the input's size
//! suggests; whatever decodes must encode and decode to the same bytes.
#![no_main]

use crashpoint::sim::ckpt::format::{decode, encode, MAGIC, VERSION};
use libfuzzer_sys::fuzz_target;

fn with_header(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(52 + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(payload);
    out
}

fn check(bytes: &[u8]) {
    match decode(bytes) {
        Ok(ck) => {
            // Compared as bytes: a NaN parameter is not equal to itself.
            let bytes = encode(&ck);
            let again = decode(&bytes).expect("an encoded checkpoint decodes");
            assert_eq!(encode(&again), bytes);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    check(&with_header(data));
});
