use std::io::Write as _;

use super::*;

#[test]
fn load_config_merges_file_and_short_forms() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(file, "backends:\n  - name: ptu\n    rpm: 5\n").expect("write");
    let args = SimulateArgs {
        config: Some(file.path().to_path_buf()),
        backends: vec![BackendConfig::parse_short("name=paygo,tpm=10").expect("short")],
    };
    let config = load_config(&args).expect("valid");
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["ptu", "paygo"]);
    assert_eq!(config.backends[0].rpm, Some(5));

    let clash = SimulateArgs {
        backends: vec![BackendConfig::new("ptu")],
        ..args
    };
    let err = load_config(&clash).expect_err("duplicate").to_string();
    assert!(err.contains("appears twice"), "{err}");
    let err = load_config(&SimulateArgs::default())
        .expect_err("empty")
        .to_string();
    assert!(err.contains("no backends"), "{err}");
    let missing = SimulateArgs {
        config: Some("/nonexistent/sim.yaml".into()),
        backends: Vec::new(),
    };
    let err = format!("{:#}", load_config(&missing).expect_err("missing"));
    assert!(err.contains("cannot read /nonexistent/sim.yaml"), "{err}");
}

#[tokio::test]
async fn start_reports_bind_errors_with_the_backend() {
    let first = start(SimConfig {
        backends: vec![BackendConfig::new("a")],
    })
    .await
    .expect("starts");
    let taken = BackendConfig {
        listen: first.backends()[0].addr(),
        ..BackendConfig::new("b")
    };
    let err = start(SimConfig {
        backends: vec![taken],
    })
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("backend `b`: cannot listen on"), "{err}");
    assert_eq!(first.url("a"), Some(first.backends()[0].url()));
    assert_eq!(first.url("zzz"), None);
    first.shutdown().await;
}
