//! The long soak: 64 clients against the release conformance app, one
//! storage or one fault at a time, and the figures for `RELIABILITY.md`.
//!
//! ```text
//! cargo build --release --example conformance
//! cargo run --release -p session-tests --bin soak -- --duration 60
//! ```
//!
//! Options: `--duration SECONDS` per run (default 60), `--clients N`
//! (default 64), `--only a,b` (runs by name: simple, encrypted, memory,
//! redis, redis-cluster, redis-sentinel, memcached, redis-kill,
//! redis-freeze, redis-network, redis-cluster-failover,
//! redis-sentinel-failover, memcached-kill), `--app PATH` (default
//! `target/release/examples/conformance`, or under `CARGO_TARGET_DIR`),
//! `--output FILE` (the markdown figures, also printed). Exits non-zero when
//! any run broke a check. With `SOAK_DEBUG` set, it also prints the 503s
//! after the last heal, by client and route.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use session_tests::Store;
use session_tests::soak::{self, Fault, Load, Schedule};

const RUNS: &[(&str, Fault, Store)] = &[
    ("simple", Fault::None, Store::Simple),
    ("encrypted", Fault::None, Store::Encrypted),
    ("memory", Fault::None, Store::Memory),
    ("redis", Fault::None, Store::Redis),
    ("redis-cluster", Fault::None, Store::RedisCluster),
    ("redis-sentinel", Fault::None, Store::RedisSentinel),
    ("memcached", Fault::None, Store::Memcached),
    ("redis-kill", Fault::RedisKill, Store::Redis),
    ("redis-freeze", Fault::RedisFreeze, Store::Redis),
    ("redis-network", Fault::Network, Store::Redis),
    (
        "redis-cluster-failover",
        Fault::ClusterFailover,
        Store::RedisCluster,
    ),
    (
        "redis-sentinel-failover",
        Fault::SentinelFailover,
        Store::RedisSentinel,
    ),
    ("memcached-kill", Fault::MemcachedKill, Store::Memcached),
];

struct Options {
    duration: Duration,
    clients: usize,
    only: Option<Vec<String>>,
    app: String,
    output: Option<String>,
}

fn options() -> Result<Options, String> {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    let mut options = Options {
        duration: Duration::from_secs(60),
        clients: 64,
        only: None,
        app: format!("{target}/release/examples/conformance"),
        output: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--duration" => {
                options.duration =
                    Duration::from_secs(value()?.parse().map_err(|_| "--duration takes seconds")?);
            }
            "--clients" => options.clients = value()?.parse().map_err(|_| "--clients takes N")?,
            "--only" => options.only = Some(value()?.split(',').map(str::to_owned).collect()),
            "--app" => options.app = value()?,
            "--output" => options.output = Some(value()?),
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    Ok(options)
}

fn store_name(store: Store) -> &'static str {
    match store {
        Store::Simple => "simple",
        Store::Encrypted => "encrypted",
        Store::Memory => "memory",
        Store::Redis => "redis",
        Store::RedisCluster => "redis-cluster",
        Store::RedisSentinel => "redis-sentinel",
        Store::Memcached => "memcached",
        _ => unreachable!("not soaked"),
    }
}

/// The app in a process of its own, and its pid.
struct App {
    child: Child,
    base: String,
}

impl App {
    fn start(path: &str, stage: &soak::Stage) -> App {
        let mut command = Command::new(path);
        command
            .env("SESSION_STORE", store_name(stage.store))
            .env("CONFORMANCE_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !stage.redis_url.is_empty() {
            command.env("REDIS_URL", &stage.redis_url);
        }
        if !stage.memcached.is_empty() {
            command.env("MEMCACHED_URL", stage.memcached.join(","));
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {path} ({error}): build it with `cargo build --release --example conformance`"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the app prints its address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the app printed {line:?}"))
            .to_owned();
        App { child, base }
    }
}

/// The resident memory of process `pid` in KiB (`VmRSS` in /proc).
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

fn secs(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64())
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("soak: {message}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = String::new();
    let mut failed = false;
    let mut faults = String::new();
    let mut latencies = String::new();
    report.push_str(
        "| run | storage | requests | increments acknowledged | lost | phantom | other violations | 503s (clients / shared writers) | emptied sessions | RSS start / middle / end (MiB) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for &(name, fault, store) in RUNS {
        if options
            .only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|o| o == name))
        {
            continue;
        }
        eprintln!("soak: {name}, {} s", options.duration.as_secs());
        let schedule = if fault == Fault::None {
            Schedule {
                at: Duration::MAX,
                outage: Duration::ZERO,
            }
        } else {
            Schedule {
                at: options.duration / 3,
                outage: Duration::from_secs(5),
            }
        };
        let stage = soak::stage(fault, store, schedule).await;
        let app = App::start(&options.app, &stage);
        let load = Load {
            base: app.base.clone(),
            clients: options.clients,
            shared_writers: if matches!(stage.store, Store::Simple | Store::Encrypted) {
                0
            } else {
                8
            },
            duration: options.duration,
            max_requests: u64::MAX,
            request_limit: Duration::from_secs(15),
        };
        let app_pid = app.child.id();
        let start_rss = rss(app_pid);
        let half = options.duration / 2;
        let middle = tokio::spawn(async move {
            tokio::time::sleep(half).await;
            rss(app_pid)
        });
        let outcome = soak::run(load, stage.faults).await;
        let middle_rss = middle.await.unwrap_or(0);
        let end_rss = rss(app_pid);
        drop(app);
        drop(stage.keep);
        let count = |prefix: &str| -> u64 {
            outcome
                .violations
                .counts
                .iter()
                .filter(|(kind, _)| kind.starts_with(prefix))
                .map(|(_, count)| count)
                .sum()
        };
        let lost = count("lost write");
        let phantom = count("phantom write");
        let other: u64 = outcome.violations.counts.values().sum::<u64>() - lost - phantom;
        let unavailable = outcome
            .events
            .iter()
            .filter(|e| e.status == 503 && e.client < outcome.clients)
            .count();
        let shared_unavailable = outcome
            .events
            .iter()
            .filter(|e| e.status == 503 && e.client >= outcome.clients)
            .count();
        failed |= !outcome.violations.is_empty();
        let mib = |kb: u64| format!("{:.1}", kb as f64 / 1024.0);
        report.push_str(&format!(
            "| {name} | {} | {} | {} | {lost} | {phantom} | {other} | {unavailable} / {shared_unavailable} | {} | {} / {} / {} |\n",
            store_name(stage.store),
            outcome.events.len(),
            outcome.acknowledged_increments,
            outcome.emptied_sessions,
            mib(start_rss),
            mib(middle_rss),
            mib(end_rss),
        ));
        for (route, (count, [p50, p99, p999])) in outcome.percentiles() {
            latencies.push_str(&format!(
                "| {name} | {} | {count} | {} | {} | {} |\n",
                route.name(),
                ms(p50),
                ms(p99),
                ms(p999)
            ));
        }
        for figures in outcome.window_figures() {
            let span = figures
                .unavailable_span
                .map_or("none".to_owned(), |(first, last)| {
                    format!(
                        "{} s ({} → {})",
                        secs(last - first),
                        secs(first),
                        secs(last)
                    )
                });
            faults.push_str(&format!(
                "| {name} | {} | {} → {} | {} | {} | {} | {} | {span} | {} | {} |\n",
                figures.window.label,
                secs(figures.window.from),
                secs(figures.window.to),
                figures.requests,
                figures.unavailable,
                figures.succeeded,
                figures.other,
                secs(figures.recovery),
                ms(figures.slowest),
            ));
        }
        if std::env::var_os("SOAK_DEBUG").is_some() {
            let mut late = std::collections::BTreeMap::new();
            let healed = outcome.windows.last().map_or(Duration::ZERO, |w| w.to);
            for e in outcome
                .events
                .iter()
                .filter(|e| e.status == 503 && e.sent > healed)
            {
                *late.entry((e.client, e.route)).or_insert(0) += 1;
            }
            eprintln!("soak: 503s after {healed:?} by (client, route): {late:?}");
        }
        for (kind, examples) in &outcome.violations.examples {
            eprintln!(
                "soak: {name}: {kind}: {} (e.g. {examples:?})",
                outcome.violations.counts[kind]
            );
        }
    }
    report.push_str(
        "\nLatency of the answers 2xx, per route (ms):\n\n| run | route | answers | p50 | p99 | p99.9 |\n|---|---|---|---|---|---|\n",
    );
    report.push_str(&latencies);
    report.push_str(
        "\nFault windows (seconds from the start of the run; a window's 503 span runs from its first 503 to the last one before the next fault):\n\n| run | fault | from → healed | requests in it | 503 | 2xx | other | 503 span | recovery after heal | slowest answer (ms) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    report.push_str(&faults);
    println!("{report}");
    if let Some(path) = &options.output {
        std::fs::write(path, &report).expect("write the report");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
