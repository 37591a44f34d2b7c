//! `spillway bench`: the same load directly against the simulator and through `spillway run`
//! (two backends per pool, breakers, API-key identity, quotas with limits far above the load,
//! OTLP metrics and traces to a local sink), interleaved round by round, printed as one
//! Markdown table with the median of the rounds, the gateway's added cost and the issue's
//! targets.
//!
//! Protocol: the gateway runs pinned to one CPU (`taskset -c`), this process (the load
//! generator) and the simulator to another; a warm-up; then per round (a) one request at a
//! time, (b) a fixed-rate ladder (open loop, latency from each request's slot), (c) closed
//! loops, (d) many concurrent paced streams; then (e) each feature off in turn. Gateway CPU
//! comes from `/proc/PID/stat`, memory from `/proc/PID/status`.
//!
//! Input: [`BenchArgs`]. Output: the table on stdout (progress on stderr). Modules:
//! [`table`] (pure rows, medians, targets, rendering), [`sizes`], [`procs`] (children and
//! `/proc`), [`stack`] (simulator + gateway manifests), [`sink`] (OTLP sink), [`streams`]
//! (scenario d's probe), [`scenarios`] (a–d), [`features`] (e, and f with `--compare-bin`),
//! [`affinity`] (g: the cached-token share with and without prompt-cache affinity).

pub mod affinity;
pub mod features;
pub mod procs;
pub mod scenarios;
pub mod sink;
pub mod sizes;
pub mod stack;
pub mod streams;
pub mod table;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use scenarios::{Bench, R};
use sink::Signal;
use sizes::Sizes;
use stack::{GatewaySetup, Variant, start_simulator};
use table::{Metric, Results, Target, Unit};

/// Options of `spillway bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// A ~1-minute smoke run (1 round, short steps) instead of the full ~10-minute run.
    #[arg(long)]
    pub quick: bool,
    /// Rounds of every scenario (the table shows the median).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Warm-up per side before measuring.
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Length of each fixed-rate and closed-loop step.
    #[arg(long, value_parser = parse_duration)]
    pub step: Option<Duration>,
    /// Requests one at a time per round and side.
    #[arg(long)]
    pub sequential: Option<u64>,
    /// Fixed rates of the ladder, e.g. `500,1000,2000`.
    #[arg(long, value_delimiter = ',')]
    pub ladder: Option<Vec<f64>>,
    /// Connections of the closed-loop steps, e.g. `16,64,256`.
    #[arg(long, value_delimiter = ',')]
    pub connections: Option<Vec<usize>>,
    /// Concurrent paced streams.
    #[arg(long)]
    pub streams: Option<u64>,
    /// Deltas per paced stream.
    #[arg(long)]
    pub deltas: Option<u32>,
    /// Skip scenario (e), each feature off in turn.
    #[arg(long)]
    pub no_features: bool,
    /// CPU for the gateway.
    #[arg(long, default_value_t = 0)]
    pub gateway_cpu: usize,
    /// CPU for the load generator (this process) and the simulator.
    #[arg(long, default_value_t = 1)]
    pub load_cpu: usize,
    /// Do not pin processes to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// The `spillway` binary to run as simulator and gateway (default: this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Another `spillway` binary (e.g. built from the previous commit) to measure against
    /// this one in every round: scenario (f).
    #[arg(long)]
    pub compare_bin: Option<PathBuf>,
    /// Run only scenario (g), prompt-cache affinity's cached-token share (~10 s).
    #[arg(long)]
    pub affinity_only: bool,
    /// Whether this process was pinned (set by [`pin_load_generator`]).
    #[arg(skip)]
    pub pinned: bool,
    /// CPUs of the machine, counted before pinning (set by [`pin_load_generator`]).
    #[arg(skip)]
    pub cpus: usize,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway_crds::duration::parse(text)
}

impl BenchArgs {
    /// The sizes these options describe.
    ///
    /// # Errors
    /// A zero or empty size.
    pub fn sizes(&self) -> anyhow::Result<Sizes> {
        let mut sizes = if self.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        };
        sizes.rounds = self.rounds.unwrap_or(sizes.rounds);
        sizes.warmup = self.warmup.unwrap_or(sizes.warmup);
        sizes.step = self.step.unwrap_or(sizes.step);
        sizes.sequential = self.sequential.unwrap_or(sizes.sequential);
        sizes.ladder = self.ladder.clone().unwrap_or(sizes.ladder);
        sizes.connections = self.connections.clone().unwrap_or(sizes.connections);
        sizes.streams = self.streams.unwrap_or(sizes.streams);
        sizes.deltas = self.deltas.unwrap_or(sizes.deltas);
        sizes.features = !self.no_features;
        sizes.validate()?;
        Ok(sizes)
    }
}

/// Pins this process to `--load-cpu` with `taskset -a -p` (every thread, and the threads
/// it starts later). Call before the async runtime starts, so the runtime sizes itself to
/// one CPU. Without `taskset`, with fewer than two CPUs or with `--no-pin`, nothing is
/// pinned and the table says so.
pub fn pin_load_generator(args: &mut BenchArgs) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    args.cpus = cpus;
    if args.no_pin || cpus < 2 || args.gateway_cpu == args.load_cpu {
        args.pinned = false;
        return;
    }
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &args.load_cpu.to_string()])
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    args.pinned = status.is_ok_and(|s| s.success());
    if !args.pinned {
        eprintln!("spillway bench: cannot pin with taskset; running unpinned");
    }
}

/// Runs the bench and prints the table.
///
/// # Errors
/// Invalid sizes, a process that does not start, or a step without any success. The scratch
/// folder with the processes' logs is kept then, and named in the message.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.affinity_only {
        progress("scenario g: prompt-cache affinity");
        let g = affinity::measure().await?;
        print!("{}", g.render());
        return Ok(());
    }
    let sizes = args.sizes()?;
    let exe = match &args.bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe().context("cannot find this binary")?,
    };
    let dir = std::env::temp_dir().join(format!("spillway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let load_before = load_average();
    let results = measure(&args, &sizes, &exe, &dir)
        .await
        .with_context(|| format!("logs are in {}", dir.display()))?;
    let header = Header {
        args: &args,
        sizes: &sizes,
        load_before,
        load_after: load_average(),
    };
    let mut out = std::io::stdout().lock();
    write!(out, "{}", header.render())?;
    write!(out, "{}", results.render())?;
    let (met, missed, unknown) = results.targets();
    writeln!(
        out,
        "\ntargets: {met} met, {missed} not met, {unknown} not measured"
    )?;
    out.flush()?;
    drop(out);
    progress("scenario g: prompt-cache affinity");
    let g = affinity::measure().await?;
    print!("{}", g.render());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts the sink, the simulator and the everything-on gateway, then runs every scenario.
async fn measure(
    args: &BenchArgs,
    sizes: &Sizes,
    exe: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<Results> {
    let (gateway_cpu, load_cpu) = if args.pinned {
        (Some(args.gateway_cpu), Some(args.load_cpu))
    } else {
        (None, None)
    };
    let sink = sink::OtlpSink::start().await?;
    let sim = start_simulator(exe, load_cpu, dir, sizes.interval).await?;
    let url = |name: &str| {
        sim.urls
            .get(name)
            .cloned()
            .with_context(|| format!("the simulator has no backend {name}"))
    };
    let mut bench = Bench {
        fast_direct: url("fast-1")?,
        paced_direct: url("paced-1")?,
        sizes: sizes.clone(),
        results: Results::new(),
        resources: Vec::new(),
    };
    let otlp = sink.url();
    let setup = GatewaySetup {
        exe,
        cpu: gateway_cpu,
        dir,
        urls: &sim.urls,
        otlp: &otlp,
        export_interval: Duration::from_secs(2),
    };
    let mut gateway = setup.start(Variant::AllOn).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle =
        Metric::plain(R, "RSS idle (after start)", Unit::MiB).with_target(Target::AtMost(20.0));
    bench.resources.push((idle, gateway.child.rss_mib()?));
    features::wait_until_serving(&gateway.url).await?;
    progress(&format!("warming up {:?} per side", sizes.warmup));
    bench.warm_up(&gateway).await?;
    for round in 1..=sizes.rounds {
        progress(&format!("round {round} of {}: scenarios a–d", sizes.rounds));
        bench.round(&gateway).await?;
        gateway.child.check_alive()?;
    }
    for (name, signal) in [
        ("OTLP metric exports received", Signal::Metrics),
        ("OTLP trace exports received", Signal::Traces),
    ] {
        let count = sink.exports(signal) as f64;
        bench
            .resources
            .push((Metric::plain(R, name, Unit::Count), count));
    }
    bench.flush_resources();
    gateway.child.stop().await;
    if sizes.features {
        for round in 1..=sizes.rounds {
            progress(&format!("round {round} of {}: scenario e", sizes.rounds));
            bench.features(&setup).await?;
        }
    }
    if let Some(other) = &args.compare_bin {
        for round in 1..=sizes.rounds {
            progress(&format!("round {round} of {}: scenario f", sizes.rounds));
            bench.compare(&setup, other, round).await?;
        }
    }
    sim.child.stop().await;
    Ok(bench.results)
}

fn progress(text: &str) {
    eprintln!("spillway bench: {text}");
}

/// `/proc/loadavg`'s first three fields, or `?`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

/// The lines above the table: what ran, where, and how busy the machine was.
struct Header<'a> {
    args: &'a BenchArgs,
    sizes: &'a Sizes,
    load_before: String,
    load_after: String,
}

impl Header<'_> {
    fn render(&self) -> String {
        let (args, sizes) = (self.args, self.sizes);
        let cpus = args.cpus;
        let pinning = if args.pinned {
            format!(
                "gateway on CPU {}, load generator + simulator + OTLP sink on CPU {}",
                args.gateway_cpu, args.load_cpu
            )
        } else {
            "not pinned".to_owned()
        };
        format!(
            "# spillway bench ({mode})\n\n\
             - machine: {cpus} CPUs; {pinning}; load average before {before}, after {after}\n\
             - {rounds} round(s), median shown; warm-up {warmup:?} per side; steps {step:?}\n\
             - (a) {seq} requests one at a time ({half} streams); (b) open loop, latency from \
             each request's slot; (c) {conns:?} connections; (d) {streams} streams × {deltas} \
             deltas every {interval:?}\n\
             - added = gateway − direct; direct = the simulator alone, same load, same round\n\n",
            mode = if args.quick { "quick" } else { "full" },
            before = self.load_before,
            after = self.load_after,
            rounds = sizes.rounds,
            warmup = sizes.warmup,
            step = sizes.step,
            seq = sizes.sequential,
            half = sizes.sequential / 2,
            conns = sizes.connections,
            streams = sizes.streams,
            deltas = sizes.deltas,
            interval = sizes.interval,
        )
    }
}
