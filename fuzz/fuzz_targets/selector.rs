//! Fuzz target for the selector parser.
//!
//! Any UTF-8 input must parse or fail without panicking. When it parses, its
//! canonical form must parse back to the very same selector (and so print the
//! same canonical string), evaluate identically on a few label sets, and the
//! derived operations (unique ID, label restrictions) must not panic.
#![no_main]

use std::collections::BTreeMap;

use bulkhead_selector::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = Selector::parse(text) else {
        return;
    };
    let canonical = selector.canonical();
    let reparsed = match Selector::parse(&canonical) {
        Ok(s) => s,
        Err(e) => panic!("canonical form {canonical:?} of {text:?} does not parse: {e}"),
    };
    assert_eq!(reparsed.canonical(), canonical, "input {text:?}");
    assert_eq!(reparsed, selector, "input {text:?}");

    let label_sets: [BTreeMap<String, String>; 3] = [
        BTreeMap::new(),
        [("a", "b"), ("c", "")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        [("a", "a"), ("b", "b"), ("x", "\"")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
    ];
    let restrictions = selector.label_restrictions();
    for labels in &label_sets {
        let matched = selector.matches(labels);
        assert_eq!(matched, reparsed.matches(labels), "input {text:?}");
        if matched {
            assert!(selector.possible_to_satisfy(), "input {text:?}");
            for (label, r) in &restrictions {
                assert!(
                    r.allows(labels.get(label).map(String::as_str)),
                    "input {text:?}"
                );
            }
        }
    }
    let _ = selector.unique_id();
});
