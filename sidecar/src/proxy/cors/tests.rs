use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method};
use spillway_crds::snapshot::CorsConfig;

use super::{Cors, CorsRefusal, is_preflight};

fn config(origins: &[&str]) -> CorsConfig {
    CorsConfig {
        allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
        allowed_methods: vec!["GET".into(), "POST".into(), "OPTIONS".into()],
        allowed_headers: vec![
            "authorization".into(),
            "api-key".into(),
            "content-type".into(),
            "x-stainless-*".into(),
        ],
        exposed_headers: vec!["retry-after".into(), "x-spillway-backend".into()],
        allow_credentials: false,
        max_age_secs: 600,
    }
}

fn request(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            )
        })
        .collect()
}

#[test]
fn origins_match_exactly_by_subdomain_pattern_or_any() {
    let cors = Cors::new(&config(&[
        "https://playground.example.com",
        "https://*.contoso.com",
        "http://localhost:3000",
    ]));
    for allowed in [
        "https://playground.example.com",
        "HTTPS://Playground.Example.com",
        "https://chat.contoso.com",
        "https://a.b.contoso.com",
        "http://localhost:3000",
    ] {
        assert!(cors.allows(allowed), "{allowed}");
    }
    for refused in [
        "https://evil.example.com",
        "http://playground.example.com",
        "https://contoso.com",
        "https://evilcontoso.com",
        "https://chat.contoso.com.evil.io",
        "https://chat.contoso.com:8443",
        "http://localhost:3001",
        "null",
        "",
    ] {
        assert!(!cors.allows(refused), "{refused}");
    }
    assert!(Cors::new(&config(&["*"])).allows("https://anything.io"));
}

#[test]
fn a_preflight_from_an_allowed_origin_echoes_what_the_browser_needs() {
    let cors = Cors::new(&config(&["https://playground.example.com"]));
    let headers = request(&[
        ("origin", "https://playground.example.com"),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "Content-Type, Authorization, x-stainless-os,x-stainless-lang",
        ),
    ]);
    assert!(is_preflight(&Method::OPTIONS, &headers));
    assert!(!is_preflight(&Method::POST, &headers));
    let out = cors.preflight(&headers).expect("allowed");
    assert_eq!(
        out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://playground.example.com"
    );
    assert_eq!(
        out[header::ACCESS_CONTROL_ALLOW_METHODS],
        "GET, POST, OPTIONS"
    );
    assert_eq!(
        out[header::ACCESS_CONTROL_ALLOW_HEADERS],
        "content-type, authorization, x-stainless-os, x-stainless-lang"
    );
    assert_eq!(out[header::ACCESS_CONTROL_MAX_AGE], "600");
    assert_eq!(out[header::VARY], "Origin");
    assert!(!out.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    assert!(!out.contains_key("access-control-allow-private-network"));
}

#[test]
fn preflights_are_refused_for_origin_method_or_header() {
    let cors = Cors::new(&config(&["https://playground.example.com"]));
    let base = [
        ("origin", "https://playground.example.com"),
        ("access-control-request-method", "POST"),
    ];
    let refused = |extra: &[(&str, &str)], replace_origin: Option<&str>| {
        let mut pairs: Vec<(&str, &str)> = base.to_vec();
        if let Some(origin) = replace_origin {
            pairs[0].1 = origin;
        }
        pairs.extend_from_slice(extra);
        cors.preflight(&request(&pairs)).expect_err("refused")
    };
    assert_eq!(
        refused(&[], Some("https://evil.example.com")),
        CorsRefusal::Origin("https://evil.example.com".into())
    );
    let mut delete = base.to_vec();
    delete[1].1 = "DELETE";
    assert_eq!(
        cors.preflight(&request(&delete)).expect_err("refused"),
        CorsRefusal::Method("DELETE".into())
    );
    assert_eq!(
        refused(
            &[("access-control-request-headers", "content-type, x-secret")],
            None
        ),
        CorsRefusal::Header("x-secret".into())
    );
}

#[test]
fn credentials_and_private_network_access() {
    let mut with_credentials = config(&["https://playground.example.com"]);
    with_credentials.allow_credentials = true;
    let cors = Cors::new(&with_credentials);
    let out = cors
        .preflight(&request(&[
            ("origin", "https://playground.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-private-network", "true"),
        ]))
        .expect("allowed");
    assert_eq!(out[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert_eq!(out["access-control-allow-private-network"], "true");
    assert!(
        !out.contains_key(header::ACCESS_CONTROL_ALLOW_HEADERS),
        "nothing requested, nothing listed"
    );
}

#[test]
fn actual_responses_are_decorated_only_for_allowed_origins() {
    let cors = Cors::new(&config(&["https://*.contoso.com"]));
    let mut response = HeaderMap::new();
    let disallowed = cors.decorate(
        Some(&HeaderValue::from_static("https://chat.contoso.com")),
        &mut response,
    );
    assert!(!disallowed);
    assert_eq!(
        response[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://chat.contoso.com"
    );
    assert_eq!(
        response[header::ACCESS_CONTROL_EXPOSE_HEADERS],
        "retry-after, x-spillway-backend"
    );
    let mut response = HeaderMap::new();
    assert!(cors.decorate(
        Some(&HeaderValue::from_static("https://evil.io")),
        &mut response
    ));
    assert!(
        response.is_empty(),
        "no CORS headers for a disallowed origin"
    );
    assert!(
        !cors.decorate(None, &mut response),
        "no Origin: not a CORS call"
    );
    assert!(response.is_empty());
}
