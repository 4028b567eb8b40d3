//! The one YAML entry point: YAML 1.2 core semantics, as Kubernetes manifests are written.
//!
//! Only `true`/`false` (any case) are booleans, so `ns: y` or `env: no` stay strings.
//!
//! Documents read into a `serde_json::Value` ([`value_from_str`]) first go through a small
//! parser for the block-style subset manifests are written in ([`fast_value`]); whatever it
//! is not certain about (anchors, tags, block scalars, multi-line scalars, numbers other
//! than plain decimal integers, …) goes to serde-saphyr, which also reports every error.

use serde::de::DeserializeOwned;
use serde_json::Value;

mod fast;
mod flow;
mod scalar;

/// Parser options used for every document Bulkhead reads.
pub fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options
}

/// Deserializes one YAML (or JSON) document.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, options())
}

/// Reads one YAML (or JSON) document into a JSON value: the fast path when it applies,
/// else serde-saphyr. The result, and every error, is the one [`from_str`] gives.
pub fn value_from_str(text: &str) -> Result<Value, serde_saphyr::Error> {
    match fast_value(text) {
        Some(value) => Ok(value),
        None => from_str(text),
    }
}

/// The fast path alone: `Some` with the value serde-saphyr would give when the document is
/// in the subset it reads, `None` otherwise (including for every invalid document). Use
/// [`value_from_str`]; this is public for the benches and the fuzz target.
pub fn fast_value(text: &str) -> Option<Value> {
    fast::parse(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn yaml_1_1_booleans_stay_strings() {
        let v: serde_json::Value = super::from_str("a: y\nb: no\nc: true\n").expect("valid YAML");
        assert_eq!(v["a"], "y");
        assert_eq!(v["b"], "no");
        assert_eq!(v["c"], true);
    }
}
