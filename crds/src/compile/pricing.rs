//! Compiling prices: `spec.pricing` and `spec.backends[].pricing` of an `AIBackendPool` into
//! each backend's [`Pricing`], the pool's defaults merged in.
//!
//! Input: the pool's spec. Output: one `Option<Pricing>` per backend, in `spec.backends`
//! order (`None`: neither the backend nor the pool sets prices), and a problem in the
//! [`Checker`] for every amount, currency or placement that is wrong. Merging: the backend's
//! currency, else the pool's; the backend's rates, then the pool's; the backend's provisioned
//! cost (a pool has none).

use std::collections::BTreeSet;

use super::validate::Checker;
use crate::billing::{Micros, ModelRates, Pricing, ProvisionedCost, Rates};
use crate::v1alpha1::{AiBackendPoolSpec, ModelRatesSpec, PricingSpec};

/// Where a `pricing` field sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// `spec.pricing`: defaults of every backend.
    Pool,
    /// `spec.backends[i].pricing`.
    Backend,
}

/// One `pricing` field, amounts parsed.
struct Parsed<'a> {
    path: String,
    currency: Option<&'a str>,
    rates: Vec<ModelRates>,
    provisioned: Option<ProvisionedCost>,
}

impl Parsed<'_> {
    /// Whether one of its entries prices every model, so no rate after it is ever used.
    fn covers_every_model(&self) -> bool {
        self.rates.iter().any(|r| r.model.is_none())
    }
}

/// The merged pricing of each backend of `spec`.
pub(super) fn compile_pricing(
    spec: &AiBackendPoolSpec,
    check: &mut Checker,
) -> Vec<Option<Pricing>> {
    let pool = spec
        .pricing
        .as_ref()
        .map(|p| parse(p, "spec.pricing".to_owned(), Level::Pool, check));
    let mut pool_currency_reported = false;
    spec.backends
        .iter()
        .enumerate()
        .map(|(i, backend)| {
            let own = backend.pricing.as_ref().map(|p| {
                let path = format!("spec.backends[{i}].pricing");
                parse(p, path, Level::Backend, check)
            });
            merge(
                own.as_ref(),
                pool.as_ref(),
                check,
                &mut pool_currency_reported,
            )
        })
        .collect()
}

fn parse<'a>(spec: &'a PricingSpec, path: String, level: Level, check: &mut Checker) -> Parsed<'a> {
    if let Some(code) = &spec.currency {
        check.currency(&format!("{path}.currency"), code);
    }
    if spec.rates.is_empty() && spec.provisioned.is_none() {
        let what = match level {
            Level::Pool => {
                "set rates (per million tokens) for the pool's models, or remove pricing"
            }
            Level::Backend => {
                "set rates (per million tokens), provisioned (a PTU deployment's fixed cost), \
                 or both; remove pricing to use the pool's"
            }
        };
        check.invalid(path.clone(), what);
    }
    let provisioned = spec.provisioned.as_ref().map(|p| {
        let at = format!("{path}.provisioned");
        if level == Level::Pool {
            check.invalid(
                at.clone(),
                "a provisioned (PTU) cost belongs to the backend that has the reserved \
                 capacity; move it to that backend's pricing.provisioned",
            );
        }
        ProvisionedCost {
            amount: check.amount(&format!("{at}.amount"), &p.amount),
            per: p.per,
        }
    });
    Parsed {
        rates: parse_rates(&spec.rates, &path, check),
        path,
        currency: spec.currency.as_deref(),
        provisioned,
    }
}

/// The entries of `rates`, in order; an entry no call can reach is a problem.
fn parse_rates(entries: &[ModelRatesSpec], path: &str, check: &mut Checker) -> Vec<ModelRates> {
    let mut catch_all = None;
    let mut models = BTreeSet::new();
    let mut rates = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("{path}.rates[{i}]");
        if let Some(first) = catch_all {
            check.invalid(
                at.clone(),
                format!(
                    "never used: rates[{first}] has no model, so it matches every call first; \
                     move the entry without model to the end"
                ),
            );
        }
        match &entry.model {
            None => {
                catch_all.get_or_insert(i);
            }
            Some(model) if model.trim().is_empty() => check.invalid(
                format!("{at}.model"),
                "write a model name, or remove model to price every model",
            ),
            Some(model) if !models.insert(model.as_str()) => check.invalid(
                format!("{at}.model"),
                format!(
                    "`{model}` is listed twice; only the first entry is used, remove the other"
                ),
            ),
            Some(_) => {}
        }
        rates.push(compile_rates(entry, &at, check));
    }
    rates
}

fn compile_rates(entry: &ModelRatesSpec, at: &str, check: &mut Checker) -> ModelRates {
    let mut amount = |name: &str, text: &str| check.amount(&format!("{at}.{name}"), text);
    let input = amount("input", &entry.input);
    let output = entry
        .output
        .as_deref()
        .map_or(Micros::default(), |text| amount("output", text));
    let [
        cached_input,
        cache_write_input,
        audio_input,
        image_input,
        reasoning_output,
        audio_output,
    ] = entry
        .optional_rates()
        .map(|(name, text)| text.map(|text| amount(name, text)));
    ModelRates {
        model: entry.model.clone(),
        rates: Rates {
            input,
            output,
            cached_input,
            cache_write_input,
            audio_input,
            image_input,
            reasoning_output,
            audio_output,
        },
    }
}

/// A backend's pricing: its own, the pool's merged in.
fn merge(
    own: Option<&Parsed<'_>>,
    pool: Option<&Parsed<'_>>,
    check: &mut Checker,
    pool_currency_reported: &mut bool,
) -> Option<Pricing> {
    if own.is_none() && pool.is_none() {
        return None;
    }
    let own_currency = own.and_then(|o| o.currency);
    let pool_currency = pool.and_then(|p| p.currency);
    let Some(currency) = own_currency.or(pool_currency) else {
        match own {
            Some(own) => check.invalid(
                format!("{}.currency", own.path),
                "say which currency the amounts are in (ISO 4217, e.g. USD), here or in \
                 spec.pricing.currency",
            ),
            None if !*pool_currency_reported => {
                *pool_currency_reported = true;
                check.invalid(
                    "spec.pricing.currency",
                    "say which currency the amounts are in (ISO 4217, e.g. USD); a backend's \
                     own pricing.currency replaces it",
                );
            }
            None => {}
        }
        return None;
    };
    let mut rates = own.map(|o| o.rates.clone()).unwrap_or_default();
    if let Some(pool) = pool {
        match (own, own_currency, pool_currency) {
            (Some(own), Some(mine), Some(theirs)) if mine != theirs => {
                if !pool.rates.is_empty() && !own.covers_every_model() {
                    check.invalid(
                        format!("{}.currency", own.path),
                        format!(
                            "`{mine}` differs from spec.pricing.currency `{theirs}`, whose rates \
                             this backend falls back to for models its own rates do not list; \
                             use one currency, or give this backend a rate without model so the \
                             pool's rates are never used"
                        ),
                    );
                }
            }
            _ => rates.extend(pool.rates.iter().cloned()),
        }
    }
    Some(Pricing {
        currency: currency.to_owned(),
        rates,
        provisioned: own.and_then(|o| o.provisioned.clone()),
    })
}
