//! Fuzz target for the resource loader (`bulkhead_api::load_str`) and the engine's model
//! builder: any text either loads (and then builds a model or gives a model error) or
//! gives positioned errors; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match bulkhead_api::load_str("fuzz.yaml", text) {
        Ok(loaded) => {
            let resources: Vec<_> = loaded.into_iter().map(|l| l.resource).collect();
            for r in &resources {
                // Every loaded resource prints back to a document.
                let _ = r.to_document();
            }
            if let Ok(cluster) = bulkhead_engine::Cluster::build(&resources) {
                let ip = "10.65.0.1".parse().expect("literal address");
                let _ = cluster.evaluate(&bulkhead_engine::Flow::tcp(ip, ip, 80));
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error result carries at least one error");
            for e in &errors.0 {
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
