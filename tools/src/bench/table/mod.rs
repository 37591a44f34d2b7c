//! The pure core of `spillway bench`: every number measured ([`Results`]), grouped into rows
//! by scenario and metric, each with its direct-to-simulator and through-the-gateway samples
//! (one per round), and the rendering of those rows as a Markdown table with the median of
//! the rounds, the gateway's added cost, and whether the target is met.
//!
//! Input: [`Metric`]s and samples recorded in any order. Output: text ([`Results::render`])
//! and a count of targets met ([`Results::targets`]). No I/O.

use std::fmt::Write as _;

/// Which path a sample was measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Load generator → simulator.
    Direct,
    /// Load generator → `spillway run` → simulator.
    Gateway,
}

/// How a metric's value reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A duration in microseconds (printed as µs or ms).
    Micros,
    /// Requests per second.
    PerSecond,
    /// A share, 0–100.
    Percent,
    /// A plain count.
    Count,
    /// CPU-seconds per 1,000 requests.
    CpuPer1k,
    /// Mebibytes.
    MiB,
}

/// What a target constrains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Gateway minus direct must be at most this.
    AddedAtMost(f64),
    /// The gateway's value must be at most this.
    AtMost(f64),
    /// The gateway's value must be at least this.
    AtLeast(f64),
}

/// One row's identity and meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Scenario label, e.g. `a. one at a time`.
    pub scenario: String,
    /// Metric label, e.g. `latency p50`.
    pub name: String,
    /// Unit of the samples.
    pub unit: Unit,
    /// Whether the row shows gateway − direct.
    pub added: bool,
    /// The target for this row, when it has one.
    pub target: Option<Target>,
}

impl Metric {
    /// A row showing both sides and the difference.
    pub fn added(scenario: &str, name: &str, unit: Unit) -> Self {
        Self {
            scenario: scenario.to_owned(),
            name: name.to_owned(),
            unit,
            added: true,
            target: None,
        }
    }

    /// A row without a difference column (a gateway-only figure, or a count).
    pub fn plain(scenario: &str, name: &str, unit: Unit) -> Self {
        Self {
            added: false,
            ..Self::added(scenario, name, unit)
        }
    }

    /// The same row with a target.
    #[must_use]
    pub fn with_target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }
}

#[derive(Clone, Debug)]
struct Row {
    metric: Metric,
    direct: Vec<f64>,
    gateway: Vec<f64>,
}

/// Everything measured; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Results {
    rows: Vec<Row>,
}

/// Whether a row met its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The row has no target.
    None,
    /// Met.
    Met,
    /// Not met.
    NotMet,
    /// Not measured (a side has no sample).
    Unknown,
}

/// The median of `samples` (the mean of the middle two for an even count); `None` when
/// empty. NaNs are ignored.
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// `value` in `unit`, e.g. `85µs`, `1.25ms`, `5,120/s`, `99.9%`, `0.042`, `12.3 MiB`.
pub fn format_value(value: f64, unit: Unit) -> String {
    if value < 0.0 {
        return format!("-{}", format_value(-value, unit));
    }
    match unit {
        Unit::Micros if value.abs() < 1000.0 => format!("{value:.0}µs"),
        Unit::Micros if value.abs() < 1_000_000.0 => format!("{:.2}ms", value / 1e3),
        Unit::Micros => format!("{:.2}s", value / 1e6),
        Unit::PerSecond => format!("{}/s", crate::loadtest::render::thousands(value as u64)),
        Unit::Percent => format!("{value:.1}%"),
        Unit::Count => format!("{value:.0}"),
        Unit::CpuPer1k => format!("{value:.3} s"),
        Unit::MiB => format!("{value:.1} MiB"),
    }
}

fn format_target(target: Target, unit: Unit) -> String {
    match target {
        Target::AddedAtMost(v) => format!("added ≤ {}", format_value(v, unit)),
        Target::AtMost(v) => format!("≤ {}", format_value(v, unit)),
        Target::AtLeast(v) => format!("≥ {}", format_value(v, unit)),
    }
}

impl Row {
    fn added(&self) -> Option<f64> {
        if !self.metric.added {
            return None;
        }
        Some(median(&self.gateway)? - median(&self.direct)?)
    }

    fn verdict(&self) -> Verdict {
        let Some(target) = self.metric.target else {
            return Verdict::None;
        };
        let (value, ok): (Option<f64>, fn(f64, f64) -> bool) = match target {
            Target::AddedAtMost(_) => (self.added(), |v, t| v <= t),
            Target::AtMost(_) => (median(&self.gateway), |v, t| v <= t),
            Target::AtLeast(_) => (median(&self.gateway), |v, t| v >= t),
        };
        let limit = match target {
            Target::AddedAtMost(t) | Target::AtMost(t) | Target::AtLeast(t) => t,
        };
        match value {
            None => Verdict::Unknown,
            Some(v) if ok(v, limit) => Verdict::Met,
            Some(_) => Verdict::NotMet,
        }
    }
}

impl Results {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one round's `value` of `metric` on `side`; a new (scenario, name) pair adds a
    /// row at the end, so rows keep the order they were first measured in.
    pub fn record(&mut self, metric: &Metric, side: Side, value: f64) {
        let index = match self
            .rows
            .iter()
            .position(|r| r.metric.scenario == metric.scenario && r.metric.name == metric.name)
        {
            Some(index) => index,
            None => {
                self.rows.push(Row {
                    metric: metric.clone(),
                    direct: Vec::new(),
                    gateway: Vec::new(),
                });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[index];
        match side {
            Side::Direct => row.direct.push(value),
            Side::Gateway => row.gateway.push(value),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The median of the samples of (scenario, name) on `side`.
    pub fn median_of(&self, scenario: &str, name: &str, side: Side) -> Option<f64> {
        let row = self
            .rows
            .iter()
            .find(|r| r.metric.scenario == scenario && r.metric.name == name)?;
        median(match side {
            Side::Direct => &row.direct,
            Side::Gateway => &row.gateway,
        })
    }

    /// (met, not met, not measured) over the rows with a target.
    pub fn targets(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for row in &self.rows {
            match row.verdict() {
                Verdict::Met => counts.0 += 1,
                Verdict::NotMet => counts.1 += 1,
                Verdict::Unknown => counts.2 += 1,
                Verdict::None => {}
            }
        }
        counts
    }

    /// The Markdown table: scenario, metric, direct, gateway, added, target, met; each value
    /// the median of its rounds (`-` when not measured), the scenario printed once per group.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("| scenario | metric | direct | gateway | added | target | met |\n");
        out.push_str("|---|---|---:|---:|---:|---|---|\n");
        let mut last_scenario = "";
        for row in &self.rows {
            let metric = &row.metric;
            let value =
                |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format_value(v, metric.unit));
            let scenario = if metric.scenario == last_scenario {
                ""
            } else {
                metric.scenario.as_str()
            };
            last_scenario = &metric.scenario;
            let added = match row.added() {
                Some(v) if v >= 0.0 => format!("+{}", format_value(v, metric.unit)),
                Some(v) => format_value(v, metric.unit),
                None => "-".to_owned(),
            };
            let target = metric
                .target
                .map_or_else(String::new, |t| format_target(t, metric.unit));
            let met = match row.verdict() {
                Verdict::None => "",
                Verdict::Met => "yes",
                Verdict::NotMet => "**no**",
                Verdict::Unknown => "n/a",
            };
            let _ = writeln!(
                out,
                "| {scenario} | {} | {} | {} | {added} | {target} | {met} |",
                metric.name,
                value(median(&row.direct)),
                value(median(&row.gateway)),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests;
