//! Head sampling of traces: the standard `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
//!
//! Input: the two variables (at start-up), then per request the trace id and, when the client
//! sent a valid `traceparent`, its sampled flag. Output: whether the request is sampled — its
//! spans are exported only then, and the `traceparent` sent to each backend carries the
//! decision (it is always sent). Ratios use the OpenTelemetry SDK's rule (the trace id's
//! low 63 bits below `ratio × 2^63`), so every service with the same ratio agrees. Default:
//! `parentbased_always_on`.

/// What decides when a trace has no sampled parent to follow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RootSampler {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// The share of trace ids given, within 0 and 1.
    TraceIdRatio(f64),
}

/// A head sampler: `parent_based` follows a client's sampled flag when it sent one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler {
    /// The decision for new traces (and for all traces unless `parent_based`).
    pub root: RootSampler,
    /// Whether a client's `traceparent` flag decides for its trace.
    pub parent_based: bool,
}

impl Default for Sampler {
    fn default() -> Self {
        Self {
            root: RootSampler::AlwaysOn,
            parent_based: true,
        }
    }
}

impl Sampler {
    /// The sampler the process environment names.
    ///
    /// # Errors
    /// As [`Sampler::parse`].
    pub fn from_env() -> Result<Self, String> {
        Self::parse(
            std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
            std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
        )
    }

    /// The sampler named by `OTEL_TRACES_SAMPLER` (`name`) and `OTEL_TRACES_SAMPLER_ARG`
    /// (`arg`, the ratio for the `traceidratio` samplers, default 1).
    ///
    /// # Errors
    /// An unknown or unsupported sampler name, or a ratio that is not a number within 0 and 1.
    pub fn parse(name: Option<&str>, arg: Option<&str>) -> Result<Self, String> {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        let ratio = || -> Result<f64, String> {
            match arg.map(str::trim).filter(|a| !a.is_empty()) {
                None => Ok(1.0),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!("OTEL_TRACES_SAMPLER_ARG={text} is not a ratio within 0 and 1")
                    }),
            }
        };
        let (root, parent_based) = match name.map(str::to_ascii_lowercase).as_deref() {
            None | Some("parentbased_always_on") => (RootSampler::AlwaysOn, true),
            Some("parentbased_always_off") => (RootSampler::AlwaysOff, true),
            Some("parentbased_traceidratio") => (RootSampler::TraceIdRatio(ratio()?), true),
            Some("always_on") => (RootSampler::AlwaysOn, false),
            Some("always_off") => (RootSampler::AlwaysOff, false),
            Some("traceidratio") => (RootSampler::TraceIdRatio(ratio()?), false),
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER={other} is not supported; use always_on, always_off, \
                     traceidratio, parentbased_always_on, parentbased_always_off or \
                     parentbased_traceidratio"
                ));
            }
        };
        Ok(Self { root, parent_based })
    }

    /// Whether the trace `trace_id` is sampled; `parent` is the client's sampled flag when
    /// it sent a valid `traceparent`.
    pub fn sample(&self, trace_id: &[u8; 16], parent: Option<bool>) -> bool {
        if self.parent_based
            && let Some(sampled) = parent
        {
            return sampled;
        }
        match self.root {
            RootSampler::AlwaysOn => true,
            RootSampler::AlwaysOff => false,
            RootSampler::TraceIdRatio(ratio) => {
                // As the OpenTelemetry SDKs: the low 63 bits of the trace id against the bound.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let bound = (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64;
                let mut low = [0; 8];
                low.copy_from_slice(&trace_id[8..]);
                (u64::from_be_bytes(low) >> 1) < bound
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_standard_names() {
        assert_eq!(Sampler::parse(None, None).unwrap(), Sampler::default());
        let ratio = Sampler::parse(Some("parentbased_traceidratio"), Some("0.25")).unwrap();
        assert_eq!(ratio.root, RootSampler::TraceIdRatio(0.25));
        assert!(ratio.parent_based);
        let plain = Sampler::parse(Some("TraceIdRatio"), None).unwrap();
        assert_eq!(plain.root, RootSampler::TraceIdRatio(1.0));
        assert!(!plain.parent_based);
        let off = Sampler::parse(Some("always_off"), Some("ignored")).unwrap();
        assert_eq!(
            (off.root, off.parent_based),
            (RootSampler::AlwaysOff, false)
        );
        for (name, arg) in [
            (Some("jaeger_remote"), None),
            (Some("sometimes"), None),
            (Some("traceidratio"), Some("1.5")),
            (Some("parentbased_traceidratio"), Some("half")),
            (Some("traceidratio"), Some("NaN")),
        ] {
            assert!(Sampler::parse(name, arg).is_err(), "{name:?} {arg:?}");
        }
    }

    #[test]
    fn parent_based_follows_the_client_and_ratio_splits_trace_ids() {
        let id = |low: u64| {
            let mut id = [0u8; 16];
            id[0] = 1;
            id[8..].copy_from_slice(&low.to_be_bytes());
            id
        };
        let none = Sampler::parse(Some("parentbased_traceidratio"), Some("0")).unwrap();
        assert!(!none.sample(&id(0), None), "ratio 0 samples no new trace");
        assert!(
            none.sample(&id(u64::MAX), Some(true)),
            "a sampled client is followed"
        );
        let half = Sampler::parse(Some("traceidratio"), Some("0.5")).unwrap();
        assert!(
            half.sample(&id(0), Some(false)),
            "not parent-based: the ratio decides"
        );
        assert!(half.sample(&id((1 << 62) - 1), None));
        assert!(!half.sample(&id(u64::MAX), Some(true)));
        // Over many spread ids the share is the ratio.
        let quarter = Sampler::parse(Some("traceidratio"), Some("0.25")).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let sampled = (0..10_000)
            .filter(|_| quarter.sample(&id(rng.u64(..)), None))
            .count();
        assert!((2_200..2_800).contains(&sampled), "{sampled}");
        let always = Sampler::parse(Some("parentbased_always_off"), None).unwrap();
        assert!(!always.sample(&id(0), None));
        assert!(always.sample(&id(0), Some(true)));
    }
}
