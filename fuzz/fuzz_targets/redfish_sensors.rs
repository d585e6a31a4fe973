//! A BMC's `Thermal` and `Power` documents are untrusted: any bytes that
//! are JSON parse to readings (only finite numbers), and deciding whether
//! they refuse a spare never panics.
#![no_main]

use coordinator::actuate::redfish::{parse_power, parse_thermal, Readings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let (temperatures, fans) = parse_thermal(&v);
    let power = parse_power(&v);
    let r = Readings {
        health: v["Status"]["Health"].as_str().unwrap_or_default().to_owned(),
        temperatures,
        fans,
        power,
    };
    assert!(r
        .temperatures
        .iter()
        .chain(&r.fans)
        .chain(&r.power)
        .all(|x| x.value.is_finite()));
    let _ = r.refusal();
});
