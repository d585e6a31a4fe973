//! Chunk decoding of arbitrary bytes: an error or samples, never a panic; and
//! whatever decodes re-encodes to something that decodes to the same samples.
#![no_main]

use coordinator::store::chunk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(samples) = chunk::decode(data) {
        let again = chunk::decode(&chunk::encode(&samples)).expect("re-encoded chunk decodes");
        assert_eq!(again.len(), samples.len());
        for (a, b) in again.iter().zip(&samples) {
            assert_eq!(a.ts_ms, b.ts_ms);
            assert_eq!(a.value.to_bits(), b.value.to_bits());
            assert_eq!(a.quality, b.quality);
        }
    }
});
