#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The cache state machine with a manual clock and a scripted source.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::credentials::FetchFuture;

#[derive(Debug)]
struct ManualClock {
    start: Instant,
    offset_ms: AtomicU64,
}

impl ManualClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            offset_ms: AtomicU64::new(0),
        })
    }

    fn set_secs(&self, secs: f64) {
        self.offset_ms
            .store((secs * 1000.0) as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }
}

/// Answers from a script; counts fetches; an empty script answers "unreachable".
#[derive(Debug, Default)]
struct Script {
    answers: Mutex<VecDeque<Result<IssuedToken, CredentialError>>>,
    delay: Option<Duration>,
}

fn issued(value: &str, lifetime_secs: u64) -> Result<IssuedToken, CredentialError> {
    Ok(IssuedToken {
        token: AccessToken::new(value),
        lifetime: Duration::from_secs(lifetime_secs),
    })
}

fn down() -> CredentialError {
    CredentialError::Unreachable {
        endpoint: "https://login.test/t/oauth2/v2.0/token".into(),
        message: "connection refused".into(),
    }
}

impl Script {
    fn new(answers: Vec<Result<IssuedToken, CredentialError>>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into()),
            delay: None,
        })
    }

    fn push(&self, answer: Result<IssuedToken, CredentialError>) {
        self.answers.lock().unwrap().push_back(answer);
    }
}

impl TokenSource for Script {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            if let Some(delay) = self.delay {
                tokio::time::sleep(delay).await;
            }
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Err(down()))
        })
    }
}

fn cache(script: &Arc<Script>, clock: &Arc<ManualClock>) -> TokenCache {
    TokenCache::new(script.clone(), clock.clone())
}

/// Lets a spawned background refresh run to completion.
async fn settle(cache: &TokenCache) {
    for _ in 0..100 {
        tokio::task::yield_now().await;
        if !cache.inner.refreshing.load(Ordering::Acquire) {
            return;
        }
    }
    panic!("the background refresh did not finish");
}

#[test]
fn refresh_delay_is_two_thirds_or_five_minutes_ahead_never_before_half() {
    let hour = Duration::from_secs(3600);
    assert_eq!(refresh_delay(hour, 0.0), Duration::from_secs(2400));
    assert_eq!(refresh_delay(hour, 1.0), Duration::from_secs(2040));
    let twelve_min = Duration::from_secs(720);
    assert_eq!(refresh_delay(twelve_min, 0.0), Duration::from_secs(420));
    let short = Duration::from_secs(6);
    assert_eq!(refresh_delay(short, 0.0), Duration::from_secs(3));
    let jittered = refresh_delay(short, 0.5);
    assert_eq!(jittered, Duration::from_millis(2700));
    assert_eq!(refresh_delay(short, 7.0), Duration::from_millis(2400));
    assert_eq!(refresh_delay(short, f64::NAN), Duration::from_secs(3));
    let absurd = refresh_delay(Duration::from_secs(u64::MAX), 0.5);
    assert_eq!(absurd, refresh_delay(MAX_LIFETIME, 0.5), "capped at 24 h");
}

#[test]
fn backoff_doubles_from_250ms_to_5s() {
    let steps: Vec<u128> = (1..=7).map(|n| backoff(n).as_millis()).collect();
    assert_eq!(steps, vec![250, 500, 1000, 2000, 4000, 5000, 5000]);
}

#[tokio::test]
async fn one_fetch_serves_many_calls_until_refresh_is_due() {
    let clock = ManualClock::new();
    let script = Script::new(vec![issued("t1", 3600)]);
    let cache = cache(&script, &clock);
    for i in 0..50 {
        clock.set_secs(f64::from(i) * 30.0); // up to 24.5 min: before any refresh point
        assert_eq!(cache.token().await.unwrap().expose(), "t1");
    }
    assert_eq!(cache.fetches(), 1);
}

#[tokio::test]
async fn refreshes_in_the_background_before_expiry() {
    let clock = ManualClock::new();
    let script = Script::new(vec![issued("t1", 3600), issued("t2", 3600)]);
    let cache = cache(&script, &clock);
    assert_eq!(cache.token().await.unwrap().expose(), "t1");
    clock.set_secs(2401.0); // past 2/3 of the lifetime, whatever the jitter
    // The caller that finds the refresh due still gets the cached token at once.
    assert_eq!(cache.token().await.unwrap().expose(), "t1");
    settle(&cache).await;
    assert_eq!(cache.token().await.unwrap().expose(), "t2");
    assert_eq!(cache.fetches(), 2);
}

#[tokio::test]
async fn refresh_failure_keeps_the_cached_token_until_expiry_then_fails() {
    let clock = ManualClock::new();
    let script = Script::new(vec![issued("t1", 100)]);
    let cache = cache(&script, &clock);
    assert_eq!(cache.token().await.unwrap().expose(), "t1");
    // Refresh due at 50–67 s; the source is down from now on.
    clock.set_secs(70.0);
    assert_eq!(cache.token().await.unwrap().expose(), "t1");
    settle(&cache).await;
    assert_eq!(cache.fetches(), 2);
    assert_eq!(cache.last_error(), Some(down()));
    // Within the backoff, no new fetch; the token still works (usable until 95 s).
    assert_eq!(cache.token().await.unwrap().expose(), "t1");
    assert_eq!(cache.fetches(), 2);
    clock.set_secs(94.0);
    assert_eq!(cache.token().await.unwrap().expose(), "t1");
    settle(&cache).await;
    // Expired (margin: 5 s of 100 s): the call fails with the distinct error.
    clock.set_secs(96.0);
    let fetched = cache.fetches();
    let error = cache.token().await.unwrap_err();
    assert_eq!(error, CredentialError::NoValidToken(Box::new(down())));
    assert_eq!(
        cache.fetches(),
        fetched + 1,
        "an expired token fetches inline"
    );
    // During the backoff the next calls fail at once without a fetch.
    for _ in 0..10 {
        assert!(matches!(
            cache.token().await,
            Err(CredentialError::NoValidToken(_))
        ));
    }
    assert_eq!(cache.fetches(), fetched + 1);
    // Recovery: after the backoff the next call fetches and succeeds.
    script.push(issued("t3", 100));
    clock.set_secs(120.0);
    assert_eq!(cache.token().await.unwrap().expose(), "t3");
    assert_eq!(cache.last_error(), None);
}

#[tokio::test]
async fn first_fetch_failure_is_an_error_and_backs_off() {
    let clock = ManualClock::new();
    let refused = CredentialError::Refused {
        endpoint: "e".into(),
        status: 401,
        code: "invalid_client".into(),
        description: "AADSTS7000215: Invalid client secret provided.".into(),
    };
    let script = Script::new(vec![Err(refused.clone())]);
    let cache = cache(&script, &clock);
    let error = cache.token().await.unwrap_err();
    assert_eq!(error, CredentialError::NoValidToken(Box::new(refused)));
    assert!(error.to_string().contains("AADSTS7000215"), "{error}");
    assert!(cache.token().await.is_err());
    assert_eq!(cache.fetches(), 1, "backing off for 250 ms");
    clock.set_secs(0.3);
    script.push(issued("t1", 60));
    assert_eq!(cache.token().await.unwrap().expose(), "t1");
    assert_eq!(cache.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fetch() {
    let clock = ManualClock::new();
    let script = Arc::new(Script {
        answers: Mutex::new(vec![issued("t1", 3600), issued("t2", 3600)].into()),
        delay: Some(Duration::from_millis(50)),
    });
    let cache = Arc::new(cache(&script, &clock));
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.token().await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap().expose(), "t1");
    }
    assert_eq!(cache.fetches(), 1, "no thundering herd");
}

#[tokio::test]
async fn an_absurd_lifetime_is_capped_not_a_panic() {
    let clock = ManualClock::new();
    let script = Script::new(vec![Ok(IssuedToken {
        token: AccessToken::new("t1"),
        lifetime: Duration::from_secs(u64::MAX),
    })]);
    let cache = cache(&script, &clock);
    assert_eq!(cache.token().await.unwrap().expose(), "t1");
    clock.set_secs(80_000.0);
    assert_eq!(
        cache.token().await.unwrap().expose(),
        "t1",
        "refresh due, kept"
    );
}

#[test]
fn tokens_never_print() {
    let token = AccessToken::new("eyJ-secret-token");
    assert_eq!(format!("{token:?}"), "AccessToken(***)");
    let issued = issued("eyJ-secret-token", 1).unwrap();
    assert!(!format!("{issued:?}").contains("secret"));
}
