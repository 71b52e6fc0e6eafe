//! `chaos`: the chaos suite's command line (the library is `routemesh_loadtest::chaos`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use routemesh_loadtest::chaos::{self, Bins, Scenario, Settings, report};

/// The chaos suite: starts the real gateway (`routemesh`), `classifier-worker`, `nats-server`
/// and FAKE upstreams (loadtest's `fake-upstream` and this binary's `upstream-fixture`: test
/// fixtures, not models), attacks them and checks the targets of issue 16:
///
///   fuzz       HTTP fuzzing, structured and byte-level (--cases, fixed --seed): no panic,
///              no 5xx of the gateway's own, every 4xx in OpenAI's error shape, bounded RSS
///   slowloris  --slow-connections slow connections opened at once against a gateway with a
///              small file limit (--fd-limit), /healthz probed every 100 ms on fresh
///              connections: every probe answered within 2 s (latency reported)
///   kill9      SIGKILL of the gateway during feedback and cache fills, restart on the same
///              stores: nothing acknowledged lost, feedback applied once
///   nats       NATS SIGKILLed and restarted under load on two gateways, feedback during the
///              outage: acknowledged, and applied exactly once on both
///   worker     classifier workers SIGKILLed under 20 req/s: 0 errors, ≤ 1% degraded
///   upstream   an upstream that stalls, errors, breaks streams and dies: the fallback answers,
///              nothing broken is cached, only a model that failed is blamed
///
/// Each scenario writes REPORT/NAME.md and REPORT/NAME.json (figures, targets, the command),
/// and REPORT/summary.md lists them. Progress goes to stderr.
///
/// Exit status: 0 every target met; 1 a target missed (listed at the end); 2 a scenario could
/// not run (a process did not start, …) or bad arguments.
#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    version,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    internal: Option<Internal>,
    /// Scenarios to run, comma-separated, or `all`.
    #[arg(long, value_name = "NAME,..|all", default_value = "all", value_parser = Scenario::parse_list)]
    scenario: std::vec::Vec<Scenario>,
    /// Where the reports go.
    #[arg(long, value_name = "DIR", default_value = "loadtest/reports/chaos")]
    report: PathBuf,
    /// Folder of the routemesh, classifier-worker and fake-upstream binaries.
    #[arg(long, value_name = "DIR", default_value = "target/debug")]
    bin_dir: PathBuf,
    /// The nats-server binary (default: PATH, then /usr/sbin/nats-server).
    #[arg(long, value_name = "PATH")]
    nats_bin: Option<PathBuf>,
    /// The MiniLM folder (scripts/fetch-model.sh installs it).
    #[arg(long, value_name = "DIR", default_value = "models/all-MiniLM-L6-v2")]
    model_dir: PathBuf,
    /// Logs, configs and stores of the processes started, one folder per scenario.
    #[arg(long, value_name = "DIR", default_value = ".run/chaos")]
    work_dir: PathBuf,
    /// Fuzzed requests (fuzz).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    cases: u64,
    /// Seed of the fuzzer and of every random choice.
    #[arg(long, value_name = "N", default_value_t = 16)]
    seed: u64,
    /// Slow connections opened at once and kept slow, reopened when closed (slowloris).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    slow_connections: usize,
    /// How long they are held (slowloris).
    #[arg(long, value_name = "DUR", default_value = "15s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// The gateway's file limit, `ulimit -n` (slowloris).
    #[arg(long, value_name = "N", default_value_t = 256)]
    fd_limit: u32,
    /// Most growth of the gateway's RSS after the fuzzer's warm-up, in MiB (fuzz).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    rss_growth_mib: u64,
}

#[derive(Debug, Subcommand)]
enum Internal {
    /// (internal) The controllable FAKE upstream the `upstream` scenario runs: prints
    /// `fake-upstream listening on http://ADDR`; `POST /chaos/mode` with ok, slow, stall,
    /// error:STATUS or cut:N.
    #[command(hide = true)]
    UpstreamFixture {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        #[arg(long, default_value = "fixture")]
        name: String,
    },
    /// Writes the raw bytes of one fuzz case to stdout, to replay a finding of the report
    /// (`nc 127.0.0.1 PORT < case.bin` against a gateway started with the fuzz scenario's
    /// config, .run/chaos/fuzz/gateway.yaml).
    FuzzCase {
        /// `structured` or `bytes`.
        #[arg(long)]
        lane: String,
        #[arg(long, default_value_t = 16)]
        seed: u64,
        #[arg(long)]
        index: u64,
    },
}

fn main() -> ExitCode {
    let command = routemesh_loadtest::bench::shell_command(std::env::args());
    let cli = Cli::parse();
    // The slowloris scenario holds --slow-connections client sockets in this process: raise
    // the soft open-file limit to the hard one (the children inherit it; the attacked gateway
    // gets its own small limit). Where it cannot be raised, slowloris says so and stops.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("chaos: cannot raise the open-file limit: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chaos: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Internal::FuzzCase { lane, seed, index }) = &cli.internal {
        use routemesh_loadtest::chaos::fuzz::{self, cases::Lane};
        use std::io::Write as _;
        let lane = match lane.as_str() {
            "structured" => Lane::Structured,
            "bytes" => Lane::Bytes,
            other => {
                eprintln!("chaos fuzz-case: --lane is structured or bytes, not `{other}`");
                return ExitCode::from(2);
            }
        };
        let bytes = fuzz::case_bytes(lane, *seed, *index);
        return match std::io::stdout().lock().write_all(&bytes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    if let Some(Internal::UpstreamFixture { listen, name }) = &cli.internal {
        return match runtime.block_on(chaos::upstream_fixture::serve(listen, name)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chaos upstream-fixture: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match settings(&cli, command.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(2);
        }
    };
    let mut reports = Vec::new();
    for &scenario in &cli.scenario {
        chaos::progress(scenario, format!("start: {}", scenario.title()));
        let mut r = runtime.block_on(chaos::run(scenario, &settings));
        r.finish();
        if let Err(e) = r.write(&settings.report_dir) {
            eprintln!("chaos: cannot write the report of {}: {e}", scenario.name());
        }
        chaos::progress(
            scenario,
            format!(
                "{} in {:.0} s ({}/{}.md)",
                r.verdict.to_uppercase(),
                r.duration_s,
                settings.report_dir.display(),
                r.scenario
            ),
        );
        reports.push(r);
    }
    // Everything a scenario started is killed as its handles drop; the runtime goes last.
    drop(runtime);
    let summary = report::summary_markdown(&reports, &command);
    if let Err(e) = std::fs::write(settings.report_dir.join("summary.md"), &summary) {
        eprintln!("chaos: cannot write the summary: {e}");
    }
    let mut status = 0u8;
    eprintln!();
    for r in &reports {
        let missed = r.missed();
        eprintln!("chaos: {:<10} {}", r.scenario, r.verdict.to_uppercase());
        for m in &missed {
            eprintln!("    missed: {m}");
        }
        status = status.max(match r.verdict {
            "passed" => 0,
            "failed" => 1,
            _ => 2,
        });
    }
    ExitCode::from(status)
}

fn settings(cli: &Cli, command: String) -> Result<Settings, String> {
    let bin = |name: &str| chaos::absolute(&cli.bin_dir.join(name));
    let bins = Bins {
        gateway: bin("routemesh"),
        worker: bin("classifier-worker"),
        fake: bin("fake-upstream"),
        nats: cli
            .nats_bin
            .clone()
            .or_else(find_nats)
            .unwrap_or_else(|| PathBuf::from("nats-server")),
        chaos: std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?,
    };
    for (what, path) in [
        ("gateway", &bins.gateway),
        ("classifier-worker", &bins.worker),
        ("fake-upstream", &bins.fake),
    ] {
        if !path.is_file() {
            return Err(format!(
                "the {what} binary {} is missing: build it (`cargo build -p routemesh-gateway -p routemesh-classifier-worker -p routemesh-loadtest`; scripts/chaos.sh does) or pass --bin-dir",
                path.display()
            ));
        }
    }
    if !bins.nats.is_file()
        && cli
            .scenario
            .iter()
            .any(|s| matches!(s, Scenario::Nats | Scenario::Worker))
    {
        return Err("nats-server is not installed: `apt-get install nats-server` (scripts/chaos.sh does), or pass --nats-bin".to_owned());
    }
    let model_dir = chaos::absolute(&cli.model_dir);
    if !model_dir.join("model.safetensors").is_file() {
        return Err(format!(
            "the MiniLM model is missing at {}: run scripts/fetch-model.sh",
            model_dir.display()
        ));
    }
    if cli.cases == 0 || cli.slow_connections == 0 {
        return Err("--cases and --slow-connections must be at least 1".to_owned());
    }
    Ok(Settings {
        bins,
        model_dir,
        report_dir: cli.report.clone(),
        work_dir: cli.work_dir.clone(),
        command,
        cases: cli.cases,
        seed: cli.seed,
        slow_connections: cli.slow_connections,
        hold: cli.hold,
        fd_limit: cli.fd_limit,
        rss_growth_mib: cli.rss_growth_mib,
    })
}

/// `nats-server` in PATH, else the Debian place.
fn find_nats() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .chain(["/usr/sbin/nats-server", "/usr/local/bin/nats-server"].map(PathBuf::from))
        .find(|p| p.is_file())
}
