//! `compile()` of an `AIGateway`'s CORS settings: defaults, normalisation, every problem case.

use super::gateway::{CORS_DEFAULT_ALLOWED_HEADERS, CORS_DEFAULT_EXPOSED_HEADERS, check_origin};
use super::support::compile_text;

const GW: &str =
    "apiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: gw, namespace: ns}\n";

#[test]
fn cors_defaults_cover_the_sdk_headers_and_the_backoff_headers() {
    let text = format!(
        "{GW}spec:\n  cors:\n    allowedOrigins: ['https://Playground.Example.com', 'http://localhost:3000', 'https://*.contoso.com']\n"
    );
    let (snapshot, problems) = compile_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    let cors = snapshot.gateway.cors.expect("cors compiled");
    assert_eq!(
        cors.allowed_origins,
        [
            "https://playground.example.com",
            "http://localhost:3000",
            "https://*.contoso.com"
        ]
    );
    assert_eq!(cors.allowed_methods, ["GET", "POST", "DELETE", "OPTIONS"]);
    assert_eq!(cors.allowed_headers, CORS_DEFAULT_ALLOWED_HEADERS);
    assert_eq!(cors.exposed_headers, CORS_DEFAULT_EXPOSED_HEADERS);
    assert!(!cors.allow_credentials);
    assert_eq!(cors.max_age_secs, 600);
    for needed in ["authorization", "api-key", "traceparent", "x-ms-useragent"] {
        assert!(cors.allowed_headers.iter().any(|h| h == needed), "{needed}");
    }
    for readable in [
        "retry-after",
        "x-ratelimit-remaining-tokens",
        "x-spillway-backend",
    ] {
        assert!(
            cors.exposed_headers.iter().any(|h| h == readable),
            "{readable}"
        );
    }
}

#[test]
fn cors_given_lists_are_normalised() {
    let text = format!(
        "{GW}spec:\n  cors:\n    allowedOrigins: ['*']\n    allowedMethods: [post, Get]\n    allowedHeaders: [Content-Type, X-Custom-*]\n    exposedHeaders: [X-Request-Id]\n    maxAge: 90s\n"
    );
    let (snapshot, problems) = compile_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    let cors = snapshot.gateway.cors.expect("cors compiled");
    assert_eq!(cors.allowed_origins, ["*"]);
    assert_eq!(cors.allowed_methods, ["POST", "GET"]);
    assert_eq!(cors.allowed_headers, ["content-type", "x-custom-*"]);
    assert_eq!(cors.exposed_headers, ["x-request-id"]);
    assert_eq!(cors.max_age_secs, 90);
}

#[test]
fn no_cors_section_means_no_cors() {
    let (snapshot, problems) = compile_text(&format!("{GW}spec: {{}}\n"));
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(snapshot.gateway.cors, None);
}

#[test]
fn cors_problems_name_the_field_and_the_fix() {
    let cases = [
        (
            "{allowedOrigins: []}",
            "spec.cors.allowedOrigins",
            "at least one origin",
        ),
        (
            "{allowedOrigins: ['playground.example.com']}",
            "spec.cors.allowedOrigins[0]",
            "scheme://host",
        ),
        (
            "{allowedOrigins: ['ftp://x.example.com']}",
            "spec.cors.allowedOrigins[0]",
            "http or https",
        ),
        (
            "{allowedOrigins: ['https://x.example.com/']}",
            "spec.cors.allowedOrigins[0]",
            "no path",
        ),
        (
            "{allowedOrigins: ['https://x.example.com:99999']}",
            "spec.cors.allowedOrigins[0]",
            "not a port",
        ),
        (
            "{allowedOrigins: ['https://*']}",
            "spec.cors.allowedOrigins[0]",
            "not a host name",
        ),
        (
            "{allowedOrigins: ['https://*.com']}",
            "spec.cors.allowedOrigins[0]",
            "top-level domain",
        ),
        (
            "{allowedOrigins: ['https://a.*.example.com']}",
            "spec.cors.allowedOrigins[0]",
            "not a host name",
        ),
        (
            "{allowedOrigins: ['*'], allowCredentials: true}",
            "spec.cors.allowCredentials",
            "list the origins",
        ),
        (
            "{allowedOrigins: ['*'], allowedMethods: ['PO ST']}",
            "spec.cors.allowedMethods[0]",
            "not an HTTP method",
        ),
        (
            "{allowedOrigins: ['*'], allowedHeaders: ['bad header']}",
            "spec.cors.allowedHeaders[0]",
            "not an HTTP header name",
        ),
        (
            "{allowedOrigins: ['*'], maxAge: soon}",
            "spec.cors.maxAge",
            "",
        ),
    ];
    for (cors, field, needle) in cases {
        let (_, problems) = compile_text(&format!("{GW}spec:\n  cors: {cors}\n"));
        let problem = problems
            .iter()
            .find(|p| p.field == field)
            .unwrap_or_else(|| panic!("{cors}: no problem at {field}: {problems:#?}"));
        assert!(
            problem.message.contains(needle),
            "{cors}: {} lacks `{needle}`",
            problem.message
        );
    }
}

#[test]
fn origins_with_ports_and_ipv6_hosts() {
    assert_eq!(
        check_origin("http://[::1]:8080").as_deref(),
        Ok("http://[::1]:8080")
    );
    assert_eq!(check_origin("http://[::1]").as_deref(), Ok("http://[::1]"));
    assert_eq!(
        check_origin("HTTP://LOCALHOST:5173").as_deref(),
        Ok("http://localhost:5173")
    );
    assert!(check_origin("http://localhost:0").is_err());
    assert!(check_origin("http://user@host").is_err());
    assert!(check_origin("https://.example.com").is_err());
}
