//! Rollup decoding of arbitrary bytes never panics; what decodes round-trips.
#![no_main]

use coordinator::store::rollup;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(buckets) = rollup::decode(data) {
        let again = rollup::decode(&rollup::encode(&buckets)).expect("re-encoded rollup decodes");
        assert_eq!(again.len(), buckets.len());
    }
});
