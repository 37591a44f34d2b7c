//! The `spillway-operator` binary: parses the command line, sets up logging (stderr; text or
//! JSON) and runs the operator until SIGINT or SIGTERM. Stdout carries one JSON line with the
//! bound addresses and the generated CA file, for scripts and tests.

use clap::Parser;
use spillway_operator::app::{self, LogFormat, OperatorArgs};

fn main() -> anyhow::Result<()> {
    let args = OperatorArgs::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(app::run(args))
}
