//! The `spillway` binary: parses the command line and runs one subcommand on a tokio
//! runtime. Logs go to stderr (`RUST_LOG`, default `info`), so stdout stays free for
//! machine-readable lines.

use clap::{Parser, Subcommand};
use spillway_sidecar::run::{self, RunArgs};
use spillway_tools::bench::{self, BenchArgs};
use spillway_tools::demo::{self, DemoArgs};
use spillway_tools::loadtest::{self, LoadtestArgs};
use spillway_tools::simulate::{self, SimulateArgs};

/// jemalloc rather than glibc's malloc: glibc kept the memory of large request bodies in its
/// per-thread arenas for good (RSS 27–75 MiB against 15 MiB idle after ten 12 MiB bodies),
/// and it costs more CPU per call on the data path. Measured in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Spillway: a Kubernetes-native gateway for generative AI.
#[derive(Debug, Parser)]
#[command(
    name = "spillway",
    version,
    about = "Spillway: a Kubernetes-native gateway for generative AI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Run(RunArgs),
    /// Run OpenAI / Azure OpenAI compatible backend simulators.
    Simulate(SimulateArgs),
    /// Run the demo: simulated PTU and pay-as-you-go backends, the gateway, three apps.
    ///
    /// Everything runs in this process on 127.0.0.1 (no cluster, no keys), with a live view
    /// and a summary that checks spillover, breaker trips and re-closes, and token counts.
    Demo(DemoArgs),
    /// Send bounded load to an OpenAI / Azure OpenAI endpoint and report on it.
    ///
    /// Reports status codes, latency and time-to-first-token percentiles, responses per
    /// backend (`x-spillway-backend`), retries and tokens.
    Loadtest(LoadtestArgs),
    /// Benchmark the gateway against the simulator alone and print a table.
    ///
    /// Starts a simulator and `spillway run` (everything on), pins the gateway to one CPU and
    /// the load to another, and interleaves direct and gateway rounds of: one request at a
    /// time, a fixed-rate ladder, closed loops, 1,000 paced streams, and each feature off.
    Bench(BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    // Freed pages go back to the OS from a background thread (after jemalloc's decay time,
    // ~10 s) rather than only when the allocator is next busy.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    // The load generator pins itself before the runtime starts its threads.
    if let Command::Bench(args) = &mut cli.command {
        bench::pin_load_generator(args);
    }
    // The demo and the load generator own the terminal: only warnings unless RUST_LOG says.
    let default_filter = match cli.command {
        Command::Demo(_) | Command::Loadtest(_) | Command::Bench(_) => "warn",
        Command::Run(_) | Command::Simulate(_) => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Simulate(args) => simulate::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Loadtest(args) => loadtest::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    })
}
