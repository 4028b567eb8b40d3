//! The figures of a run: what was measured (variants), one round's samples, a point's
//! rounds, and medians and ranges over them.

/// What is in the node's forward path during a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// No table at all (and so no conntrack hooks in the node namespace).
    NoFirewall,
    /// Only `ct state established,related accept` in a forward chain.
    Conntrack,
    /// The rendered `inet bulkhead` table.
    Policy,
}

impl Variant {
    pub(super) const ALL: [Variant; 3] = [Variant::NoFirewall, Variant::Conntrack, Variant::Policy];

    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// A short name for the per-round output.
    pub fn label(self) -> &'static str {
        match self {
            Variant::NoFirewall => "none",
            Variant::Conntrack => "ct",
            Variant::Policy => "policy",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// New TCP connections (open and close) per second.
    pub connections: f64,
    /// Bulk throughput, bytes per second.
    pub throughput: f64,
    /// Connects that failed or did not see the server's close within 1 s.
    pub failed: u64,
    /// SYN retransmissions at the client during the connection-rate phase.
    pub syn_retrans: u64,
    /// Listen-queue drops at the server during the connection-rate phase.
    pub listen_drops: u64,
}

impl Sample {
    /// Everything that says a connection was lost or delayed by a timeout.
    pub fn losses(&self) -> u64 {
        self.failed + self.syn_retrans + self.listen_drops
    }
}

/// One round: each variant once, in `order`.
#[derive(Debug, Clone)]
pub struct Round {
    /// The order the variants ran in.
    pub order: [Variant; 3],
    /// Indexed by [`Variant`] (no firewall, conntrack only, policy).
    pub samples: [Sample; 3],
}

impl Round {
    /// The sample of `variant`.
    pub fn sample(&self, variant: Variant) -> Sample {
        self.samples[variant.index()]
    }
}

/// One configuration's result.
#[derive(Debug, Clone)]
pub struct Point {
    /// Policies in the cluster.
    pub policies: usize,
    /// Rules in the node's table.
    pub rules: usize,
    /// Elements in the node's sets.
    pub elements: usize,
    /// Every round, in order.
    pub rounds: Vec<Round>,
}

/// Median, minimum and maximum of some values.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// The median (mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        };
        Spread {
            median,
            min: values.first().copied().unwrap_or(f64::NAN),
            max: values.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// (max − min) / median: 0.4 means the rounds lie within about ±20%.
    pub fn relative_range(&self) -> f64 {
        (self.max - self.min) / self.median
    }
}

impl Point {
    /// Connection rates of `variant` over the rounds.
    pub fn connections(&self, variant: Variant) -> Spread {
        Spread::of(
            self.rounds
                .iter()
                .map(|r| r.sample(variant).connections)
                .collect(),
        )
    }

    /// Throughputs of `variant` over the rounds, bytes per second.
    pub fn throughput(&self, variant: Variant) -> Spread {
        Spread::of(
            self.rounds
                .iter()
                .map(|r| r.sample(variant).throughput)
                .collect(),
        )
    }

    /// Per-round ratio of `variant`'s connection rate to the no-firewall one of the same
    /// round.
    pub fn connection_ratios(&self, variant: Variant) -> Spread {
        self.connection_ratios_to(variant, Variant::NoFirewall)
    }

    /// Per-round connection-rate ratio of `variant` to `base` (policy to conntrack only
    /// tells the table's own cost from conntrack's).
    pub fn connection_ratios_to(&self, variant: Variant, base: Variant) -> Spread {
        Spread::of(
            self.rounds
                .iter()
                .map(|r| r.sample(variant).connections / r.sample(base).connections)
                .collect(),
        )
    }

    /// Per-round throughput ratio of `variant` to no firewall.
    pub fn throughput_ratios(&self, variant: Variant) -> Spread {
        Spread::of(
            self.rounds
                .iter()
                .map(|r| r.sample(variant).throughput / r.sample(Variant::NoFirewall).throughput)
                .collect(),
        )
    }

    /// Losses of `variant` over all rounds.
    pub fn losses(&self, variant: Variant) -> u64 {
        self.rounds.iter().map(|r| r.sample(variant).losses()).sum()
    }
}
