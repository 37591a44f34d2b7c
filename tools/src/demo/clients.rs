//! What the demo's clients saw that the load report does not keep: the app of every request
//! id (to join the backends' ledger to apps) and, per app, who refused its calls — its own
//! quota at the gateway, or a backend whose 429 got through.
//!
//! Input: every [`RequestResult`], from the load generator's hook (and the demo's probes).
//! Output: a [`ClientLog`]; pure.
//!
//! A refusal by the gateway's quota is told apart from a backend's answer by Spillway's
//! response headers: the gateway refused before any upstream attempt (`x-spillway-attempts:
//! 0`, no `x-spillway-backend`), while a backend's 429 that reached the client names the
//! backend that sent it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::loadtest::{Ending, RequestResult};

/// Who refused one app's calls, and how often.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// 429 from the app's per-minute quota (the gateway answered; no backend was called).
    pub quota_429: u64,
    /// 403 from the app's calendar quota (the gateway answered; no backend was called).
    pub quota_403: u64,
    /// 429 from a backend that reached the client (the gateway should have spilled over).
    pub backend_429: u64,
}

/// How one request was refused, if it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The app's per-minute quota: 429 from the gateway itself.
    Quota429,
    /// The app's calendar quota: 403 from the gateway itself.
    Quota403,
    /// A backend's 429, passed on to the client.
    Backend429,
}

/// Classifies one result; see the module docs.
pub fn refusal(result: &RequestResult) -> Option<Refusal> {
    let Ending::Status(status) = result.ending else {
        return None;
    };
    let by_gateway = result.attempts == Some(0) && result.backend.is_none();
    match status {
        429 if by_gateway => Some(Refusal::Quota429),
        403 if by_gateway => Some(Refusal::Quota403),
        429 => Some(Refusal::Backend429),
        _ => None,
    }
}

/// Everything the clients saw, as far as the summary needs it.
#[derive(Clone, Debug, Default)]
pub struct ClientLog {
    /// The app of every request id sent.
    pub apps: HashMap<String, String>,
    /// Refusals per app.
    pub refusals: BTreeMap<String, Refusals>,
    /// Request ids the gateway's quotas refused (none of them may reach a backend).
    pub refused_ids: HashSet<String>,
}

impl ClientLog {
    /// Records `result` (its request id is `result.request_id`, its app `result.app`).
    pub fn note(&mut self, result: &RequestResult) {
        self.apps
            .insert(result.request_id.clone(), result.app.clone());
        let Some(refusal) = refusal(result) else {
            return;
        };
        let counts = self.refusals.entry(result.app.clone()).or_default();
        match refusal {
            Refusal::Quota429 => counts.quota_429 += 1,
            Refusal::Quota403 => counts.quota_403 += 1,
            Refusal::Backend429 => counts.backend_429 += 1,
        }
        if refusal != Refusal::Backend429 {
            self.refused_ids.insert(result.request_id.clone());
        }
    }

    /// Refusals summed over every app.
    pub fn total(&self) -> Refusals {
        sum(&self.refusals)
    }
}

/// `refusals` summed over every app.
pub fn sum(refusals: &BTreeMap<String, Refusals>) -> Refusals {
    refusals
        .values()
        .fold(Refusals::default(), |sum, r| Refusals {
            quota_429: sum.quota_429 + r.quota_429,
            quota_403: sum.quota_403 + r.quota_403,
            backend_429: sum.backend_429 + r.backend_429,
        })
}

/// An app's failures without its quota refusals: what is left of `429` are backends' 429s.
pub fn other_failures(
    failures: &BTreeMap<String, u64>,
    refusals: Refusals,
) -> BTreeMap<String, u64> {
    let mut other = failures.clone();
    for (status, quota) in [("429", refusals.quota_429), ("403", refusals.quota_403)] {
        if let Some(n) = other.get_mut(status) {
            *n = n.saturating_sub(quota);
        }
    }
    other.retain(|_, n| *n > 0);
    other
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn result(
        id: &str,
        app: &str,
        status: u16,
        attempts: u32,
        backend: Option<&str>,
    ) -> RequestResult {
        RequestResult {
            seq: 0,
            request_id: id.to_owned(),
            app: app.to_owned(),
            stream: false,
            ending: Ending::Status(status),
            body_error: None,
            latency: Duration::from_millis(5),
            time_to_first_token: None,
            backend: backend.map(str::to_owned),
            attempts: Some(attempts),
            usage: None,
        }
    }

    #[test]
    fn quota_refusals_are_told_apart_from_a_backends_429() {
        let mut log = ClientLog::default();
        for r in [
            result("a", "batch", 429, 0, None),
            result("b", "batch", 429, 0, None),
            result("c", "bot", 403, 0, None),
            result("d", "bot", 429, 3, Some("paygo")),
            result("e", "bot", 200, 2, Some("paygo")),
            result("f", "web", 503, 0, None),
        ] {
            log.note(&r);
        }
        assert_eq!(
            log.refusals["batch"],
            Refusals {
                quota_429: 2,
                ..Refusals::default()
            }
        );
        assert_eq!(
            log.refusals["bot"],
            Refusals {
                quota_403: 1,
                backend_429: 1,
                ..Refusals::default()
            }
        );
        assert!(!log.refusals.contains_key("web"), "503 is no refusal");
        assert_eq!(
            log.total(),
            Refusals {
                quota_429: 2,
                quota_403: 1,
                backend_429: 1
            }
        );
        let mut refused: Vec<_> = log.refused_ids.iter().map(String::as_str).collect();
        refused.sort_unstable();
        assert_eq!(refused, ["a", "b", "c"]);
        assert_eq!(log.apps.len(), 6);
        assert_eq!(log.apps["e"], "bot");
        let transport = RequestResult {
            ending: Ending::Error("timeout"),
            attempts: None,
            ..result("g", "web", 0, 0, None)
        };
        assert_eq!(refusal(&transport), None);
    }

    #[test]
    fn other_failures_leave_out_quota_refusals() {
        let failures = BTreeMap::from([
            ("429".to_owned(), 5),
            ("403".to_owned(), 2),
            ("503".to_owned(), 1),
        ]);
        let refusals = Refusals {
            quota_429: 4,
            quota_403: 2,
            backend_429: 1,
        };
        assert_eq!(
            other_failures(&failures, refusals),
            BTreeMap::from([("429".to_owned(), 1), ("503".to_owned(), 1)])
        );
    }
}
