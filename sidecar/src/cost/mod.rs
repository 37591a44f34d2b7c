//! What calls cost: exact money per call, and the fixed cost of provisioned (PTU) backends
//! shared out between the apps they served.
//!
//! - [`price`]: a call's [`CallCost`] from its tokens by type and its backend's
//!   [`Pricing`]: metered at the pay-as-you-go rates, or — on a provisioned backend — the
//!   price-weighted value that decides its app's share of the backend's fixed cost.
//! - [`provisioned`]: the hourly ledger of provisioned backends and the sharing formula.
//! - [`Picos`]: money in 10⁻¹² currency units, so a token times a rate per million tokens
//!   (in millionths) is exact; sums never go through floating point.
//!
//! Pure: no clock, no I/O. The telemetry task feeds records in and emits the results.

use std::fmt;

use spillway_crds::billing::{Micros, Pricing, TokenType};

pub mod provisioned;

/// Money in 10⁻¹² currency units: `tokens × rate per million in millionths`, exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Picos(pub u128);

impl Picos {
    /// Picos per millionth.
    pub const PER_MICRO: u128 = 1_000_000;
    /// Picos per currency unit.
    pub const PER_UNIT: u128 = 1_000_000_000_000;

    /// The amount of `micros`.
    pub fn from_micros(micros: Micros) -> Self {
        Self(u128::from(micros.0) * Self::PER_MICRO)
    }

    /// Billionths (nanos), rounded up: what a money budget counts.
    pub fn nanos_up(self) -> u64 {
        u64::try_from(self.0.div_ceil(1000)).unwrap_or(u64::MAX)
    }

    /// Whole millionths, rounded down, and the picos left over.
    pub fn split_micros(self) -> (u64, u128) {
        let whole = self.0 / Self::PER_MICRO;
        (
            u64::try_from(whole).unwrap_or(u64::MAX),
            self.0 % Self::PER_MICRO,
        )
    }
}

impl std::ops::Add for Picos {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

impl std::ops::AddAssign for Picos {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

impl fmt::Display for Picos {
    /// The shortest exact decimal in currency units: `0.0000275`, `3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::PER_UNIT;
        let frac = self.0 % Self::PER_UNIT;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let frac = format!("{frac:012}");
        write!(f, "{whole}.{}", frac.trim_end_matches('0'))
    }
}

impl serde::Serialize for Picos {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How an amount of money arises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostKind {
    /// Pay-as-you-go: tokens times the backend's rates.
    Metered,
    /// An app's share of a provisioned backend's fixed cost.
    Provisioned,
    /// The part of a provisioned backend's fixed cost no app used.
    Unallocated,
}

impl CostKind {
    /// The `spillway.cost.kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metered => "metered",
            Self::Provisioned => "provisioned",
            Self::Unallocated => "unallocated",
        }
    }
}

/// What one call costs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCost {
    /// ISO 4217 code of the backend's pricing.
    pub currency: String,
    /// `Metered` (billed per call) or `Provisioned` (served by a PTU backend: the amount is
    /// the call's price-weighted value, which decides its app's share of the backend's fixed
    /// cost; it is not billed per call).
    pub kind: CostKind,
    /// The amount, exact.
    pub amount: Picos,
}

/// The cost of `tokens` (per billing class, as `Usage::by_type` gives them) on a backend
/// priced by `pricing`, for a call for `requested` that the
/// backend answered as `reported`. `None` when the backend is metered but no rates apply to
/// the model: tokens are still counted, no cost is emitted. A provisioned backend without
/// rates weighs every token 1 (per million: one millionth).
pub fn price(
    pricing: &Pricing,
    tokens: impl IntoIterator<Item = (TokenType, u64)>,
    requested: &str,
    reported: Option<&str>,
) -> Option<CallCost> {
    let rates = pricing.rates_for(requested, reported);
    let kind = if pricing.provisioned.is_some() {
        CostKind::Provisioned
    } else if rates.is_some() {
        CostKind::Metered
    } else {
        return None;
    };
    let rate = |t: TokenType| rates.map_or(Micros(1), |r| r.per_million(t));
    let amount = tokens
        .into_iter()
        .map(|(kind, n)| Picos(u128::from(n) * u128::from(rate(kind).0)))
        .fold(Picos::default(), |sum, p| sum + p);
    Some(CallCost {
        currency: pricing.currency.clone(),
        kind,
        amount,
    })
}

#[cfg(test)]
mod tests;
