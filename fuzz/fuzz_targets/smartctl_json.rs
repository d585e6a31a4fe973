//! `smartctl --json` output is parsed from a subprocess that may be broken,
//! truncated or replaced: any bytes decode to a report, standby or an error.
#![no_main]

use firmware_shims::smart;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = smart::parse(data);
    let _ = smart::parse_scan(data);
});
