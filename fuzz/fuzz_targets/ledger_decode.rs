//! Sequence-ledger decoding of arbitrary bytes never panics; a decoded ledger
//! re-encodes to the same bytes and answers every query.
#![no_main]

use coordinator::store::ledger::Ledger;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = Ledger::decode(data) {
        let enc = l.encode();
        assert_eq!(Ledger::decode(&enc).as_ref(), Ok(&l));
        for seq in [0, 1, l.high_water_mark(), l.high_water_mark().saturating_add(1)] {
            let _ = l.verdict(seq);
        }
    }
});
