//! The agent's metrics, rendered in the Prometheus text format.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the apply-latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Counters, gauges and the apply-latency histogram.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default, Clone)]
struct Inner {
    bucket_counts: [u64; BUCKETS.len()],
    apply_count: u64,
    apply_sum: f64,
    apply_failures: u64,
    load_errors: u64,
    drift_repairs: u64,
    delta_misses: u64,
    rules: usize,
    sets: usize,
    elements: usize,
    local_endpoints: usize,
    /// (interface or `*`, host endpoint) pairs: which endpoint governs which interface.
    host_endpoints: Vec<(String, String)>,
    healthy: bool,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Records a successful transaction and the table it left.
    pub fn applied(&self, took: Duration, rules: usize, sets: usize, elements: usize) {
        self.with(|m| {
            let s = took.as_secs_f64();
            for (i, le) in BUCKETS.iter().enumerate() {
                if s <= *le {
                    m.bucket_counts[i] += 1;
                }
            }
            m.apply_count += 1;
            m.apply_sum += s;
            m.rules = rules;
            m.sets = sets;
            m.elements = elements;
            m.healthy = true;
        });
    }

    /// Records the table size without a transaction (nothing changed).
    pub fn healthy(&self) {
        self.with(|m| m.healthy = true);
    }

    /// Records a failed transaction (the previous rules stay).
    pub fn apply_failed(&self) {
        self.with(|m| {
            m.apply_failures += 1;
            m.healthy = false;
        });
    }

    /// Records resources that failed to load (the last good state stays enforced).
    pub fn load_failed(&self) {
        self.with(|m| m.load_errors += 1);
    }

    /// Records a repaired difference between the kernel and the intended table.
    pub fn drift_repaired(&self) {
        self.with(|m| m.drift_repairs += 1);
    }

    /// Records an installed table found to differ from the calc graph's while no change
    /// was pending (a delta that missed something).
    pub fn delta_missed(&self) {
        self.with(|m| m.delta_misses += 1);
    }

    /// Records how many endpoints this node enforces.
    pub fn local_endpoints(&self, n: usize) {
        self.with(|m| m.local_endpoints = n);
    }

    /// Records which host endpoint governs which interface (`*`: every other one).
    pub fn host_endpoints(&self, placement: Vec<(String, String)>) {
        self.with(|m| m.host_endpoints = placement);
    }

    /// Whether the last apply succeeded.
    pub fn is_healthy(&self) -> bool {
        self.with(|m| m.healthy)
    }

    /// Drift repairs so far.
    pub fn drift_repairs(&self) -> u64 {
        self.with(|m| m.drift_repairs)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.with(|m| m.clone());
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP bulkhead_agent_apply_seconds Time to program one change into the kernel."
        );
        let _ = writeln!(s, "# TYPE bulkhead_agent_apply_seconds histogram");
        for (le, count) in BUCKETS.iter().zip(m.bucket_counts) {
            let _ = writeln!(
                s,
                "bulkhead_agent_apply_seconds_bucket{{le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(
            s,
            "bulkhead_agent_apply_seconds_bucket{{le=\"+Inf\"}} {}",
            m.apply_count
        );
        let _ = writeln!(s, "bulkhead_agent_apply_seconds_sum {}", m.apply_sum);
        let _ = writeln!(s, "bulkhead_agent_apply_seconds_count {}", m.apply_count);
        let gauges = [
            (
                "bulkhead_agent_rules",
                "Rules in the node's table.",
                m.rules as u64,
            ),
            (
                "bulkhead_agent_sets",
                "Sets and maps in the node's table.",
                m.sets as u64,
            ),
            (
                "bulkhead_agent_set_elements",
                "Elements in the node's sets and maps.",
                m.elements as u64,
            ),
            (
                "bulkhead_agent_local_endpoints",
                "Endpoints this node enforces.",
                m.local_endpoints as u64,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let name = "bulkhead_agent_host_endpoint_interface";
        let _ = writeln!(
            s,
            "# HELP {name} 1 for each interface and the host endpoint that governs it (\"*\": every other host interface).\n# TYPE {name} gauge"
        );
        for (interface, endpoint) in &m.host_endpoints {
            let _ = writeln!(
                s,
                "{name}{{host_endpoint=\"{}\",interface=\"{}\"}} 1",
                label_value(endpoint),
                label_value(interface)
            );
        }
        let counters = [
            (
                "bulkhead_agent_apply_failures_total",
                "Transactions the kernel rejected.",
                m.apply_failures,
            ),
            (
                "bulkhead_agent_load_errors_total",
                "Resource loads that failed validation.",
                m.load_errors,
            ),
            (
                "bulkhead_agent_drift_repairs_total",
                "Kernel tables found changed and repaired (tamper events).",
                m.drift_repairs,
            ),
            (
                "bulkhead_agent_delta_misses_total",
                "Installed tables found to differ from the calculated one with no change pending (repaired by a whole diff).",
                m.delta_misses,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        s
    }
}

/// `v` escaped for a label value of the text format.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.applied(Duration::from_millis(3), 10, 2, 5);
        m.applied(Duration::from_millis(30), 10, 2, 5);
        let text = m.render();
        assert!(
            text.contains("bulkhead_agent_apply_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("bulkhead_agent_apply_seconds_bucket{le=\"0.05\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("bulkhead_agent_apply_seconds_count 2"),
            "{text}"
        );
        assert!(text.contains("bulkhead_agent_rules 10"), "{text}");
    }

    #[test]
    fn host_endpoint_placement_is_one_sample_per_interface() {
        let m = Metrics::default();
        m.host_endpoints(vec![
            ("*".into(), "all".into()),
            ("eth1".into(), "up\"link".into()),
        ]);
        let text = m.render();
        assert!(
            text.contains(
                "bulkhead_agent_host_endpoint_interface{host_endpoint=\"all\",interface=\"*\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "bulkhead_agent_host_endpoint_interface{host_endpoint=\"up\\\"link\",interface=\"eth1\"} 1"
            ),
            "{text}"
        );
    }
}
