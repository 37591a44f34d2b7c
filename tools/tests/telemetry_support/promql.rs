//! What a Grafana dashboard's queries need from the metrics: every PromQL expression of
//! every panel (rows included) and every `label_values(metric, label)` variable, parsed with
//! a real PromQL parser into the metric names and label names they use.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use promql_parser::parser::{self, Expr};
use serde_json::Value;

/// One metric a query reads, with the labels it filters on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector {
    pub metric: String,
    pub matcher_labels: BTreeSet<String>,
}

/// Labels an aggregation groups by (or a binary operation matches on), and the selectors
/// under it: each label must exist on at least one of them.
#[derive(Clone, Debug)]
pub struct Grouping {
    pub labels: BTreeSet<String>,
    pub selectors: Vec<Selector>,
}

/// What one query uses.
#[derive(Clone, Debug, Default)]
pub struct Uses {
    pub selectors: Vec<Selector>,
    pub groupings: Vec<Grouping>,
}

/// Replaces Grafana's variables with values PromQL accepts: ranges become durations, any
/// other `$var` / `${var}` (used in regex matchers) becomes `.*`.
pub fn substitute_grafana_variables(expr: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    while let Some(start) = out.find('$') {
        let rest = &out[start + 1..];
        let len = if let Some(inner) = rest.strip_prefix('{') {
            inner.find('}').map_or(rest.len(), |end| end + 2)
        } else {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
        };
        out.replace_range(start..=start + len, ".*");
    }
    out
}

/// Parses `expr` (after substituting Grafana variables) and lists what it uses.
pub fn uses(expr: &str) -> Uses {
    let text = substitute_grafana_variables(expr);
    let ast = parser::parse(&text).unwrap_or_else(|e| panic!("invalid PromQL {text:?}: {e}"));
    let mut uses = Uses::default();
    walk(&ast, &mut uses);
    uses
}

fn walk(expr: &Expr, uses: &mut Uses) {
    match expr {
        Expr::VectorSelector(vs) => uses.selectors.push(selector(vs)),
        Expr::MatrixSelector(ms) => uses.selectors.push(selector(&ms.vs)),
        Expr::Aggregate(agg) => {
            let inner = sub(&agg.expr, uses);
            if let Some(param) = &agg.param {
                walk(param, uses);
            }
            if let Some(modifier) = &agg.modifier {
                uses.groupings.push(Grouping {
                    labels: modifier.labels().labels.iter().cloned().collect(),
                    selectors: inner,
                });
            }
        }
        Expr::Binary(bin) => {
            let mut both = sub(&bin.lhs, uses);
            both.extend(sub(&bin.rhs, uses));
            if let Some(matching) = bin.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                uses.groupings.push(Grouping {
                    labels: matching.labels().labels.iter().cloned().collect(),
                    selectors: both,
                });
            }
        }
        Expr::Paren(p) => walk(&p.expr, uses),
        Expr::Unary(u) => walk(&u.expr, uses),
        Expr::Subquery(s) => walk(&s.expr, uses),
        Expr::Call(call) => {
            for arg in &call.args.args {
                walk(arg, uses);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Walks `expr` into `uses` and returns the selectors found under it.
fn sub(expr: &Expr, uses: &mut Uses) -> Vec<Selector> {
    let before = uses.selectors.len();
    walk(expr, uses);
    uses.selectors[before..].to_vec()
}

fn selector(vs: &parser::VectorSelector) -> Selector {
    let name_matcher = vs
        .matchers
        .matchers
        .iter()
        .find(|m| m.name == "__name__")
        .map(|m| m.value.clone());
    let metric = vs
        .name
        .clone()
        .or(name_matcher)
        .unwrap_or_else(|| panic!("a selector without a metric name: {vs:?}"));
    let matcher_labels = vs
        .matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
        .map(|m| m.name.clone())
        .filter(|name| name != "__name__")
        .collect();
    Selector {
        metric,
        matcher_labels,
    }
}

/// Every PromQL expression of a dashboard: panel targets (rows' nested panels included),
/// with the panel title.
pub fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            stack.extend(nested);
        }
        let title = panel["title"].as_str().unwrap_or("").to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.clone(), expr.to_owned()));
            }
        }
    }
    out
}

/// Every `label_values(metric, label)` query of the dashboard's variables.
pub fn variable_label_values(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = match &variable["query"] {
            Value::String(q) => q.clone(),
            Value::Object(o) => o
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            _ => continue,
        };
        let Some(args) = query
            .trim()
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        else {
            continue;
        };
        let (metric, label) = args.rsplit_once(',').expect("label_values(metric, label)");
        out.push((metric.trim().to_owned(), label.trim().to_owned()));
    }
    out
}
