//! Unit-test input: a GlobalNetworkPolicy written in YAML flow, compiled by the engine.

use bulkhead_engine::compile::Policy;

/// The GlobalNetworkPolicy `g` selecting `all()` with `extra` spec fields (YAML flow,
/// e.g. `ingress: [{action: Allow}]`), compiled.
pub(crate) fn gnp(extra: &str) -> Policy {
    let text = format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec: {{selector: all(), {extra}}}\n"
    );
    let loaded = bulkhead_api::load_str("test.yaml", &text).expect("valid policy");
    bulkhead_engine::incremental::policy(&loaded[0].resource)
        .expect("compiles")
        .expect("enforced")
}
