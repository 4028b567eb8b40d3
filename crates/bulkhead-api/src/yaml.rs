//! The one YAML entry point: YAML 1.2 core semantics, as Kubernetes manifests are written.
//!
//! Only `true`/`false` (any case) are booleans, so `ns: y` or `env: no` stay strings.

use serde::de::DeserializeOwned;

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
