//! Fuzz target for the fast YAML path (`bulkhead_api::yaml::fast_value`): on any text it
//! must not panic, and whenever it gives a value, serde-saphyr gives the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(fast) = bulkhead_api::yaml::fast_value(text) {
        let slow = bulkhead_api::yaml::from_str(text).ok();
        assert_eq!(slow, Some(fast), "the fast path differs from serde-saphyr on {text:?}");
    }
});
