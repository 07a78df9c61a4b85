//! The ingest benchmark: closed-loop clients over loopback, each on its own keep-alive
//! connection, sending pre-signed unique deliveries as fast as responses come back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alert_inbox::config::Config;
use alert_inbox::receiver::server::{serve_listener, ConnectionLimits};
use alert_inbox::receiver::verify::{basic_header, sign, SIGNATURE_HEADER};
use alert_inbox::receiver::{router, Receiver, Sink};
use alert_inbox::runtime::Runtime;
use alert_inbox::secret::Secret;
use alert_inbox::store::{journal, Store};
use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http::{header, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::stats::{ms, percentile, proc_status_kib};

const SECRET: &str = "benchmark secret";
const USER: &str = "realtheory";
const PASSWORD: &str = "benchmark password";

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Unique deliveries sent to each receiver
    #[arg(long, default_value_t = 50_000)]
    deliveries: usize,
    /// Concurrent connections, each sending one delivery at a time
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Worker threads of the receivers' runtime
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Worker threads of the load generator's runtime
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Only run against the storing receiver
    #[arg(long)]
    skip_ceiling: bool,
    /// Measure right after the warm-up, before the journal has written its spare segments
    /// (as in the first half minute of a new store)
    #[arg(long)]
    fresh_journal: bool,
    /// Directory for the store [default: a new temporary directory]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,
}

/// One pre-built delivery.
struct Prepared {
    id: String,
    body: Bytes,
    signature: HeaderValue,
}

struct Report {
    name: &'static str,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
    rss_min_kib: u64,
    rss_max_kib: u64,
}

impl Report {
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&mut self) {
        self.latencies.sort_unstable();
        println!(
            "{:<8} {:>8} ok {:>5} errors in {:>7.3} s: {:>9.0} deliveries/s, p50 {}, p99 {}, p99.9 {}, max {}; RSS {}–{} MiB",
            self.name,
            self.latencies.len(),
            self.errors,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            ms(percentile(&self.latencies, 50.0)),
            ms(percentile(&self.latencies, 99.0)),
            ms(percentile(&self.latencies, 99.9)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.rss_min_kib / 1024,
            self.rss_max_kib / 1024,
        );
    }
}

pub fn run(args: IngestArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: Some(data_dir.clone()),
        webhook_secrets: vec![Secret::new(SECRET)],
        basic_user: Some(USER.to_owned()),
        basic_password: Some(Secret::new(PASSWORD)),
        ..Config::default()
    };
    let basic = HeaderValue::from_str(&basic_header(USER, &Secret::new(PASSWORD)))?;

    let template = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/documented-example.json"
    ))?;
    let run_id = &hex::encode(rand::random::<[u8; 4]>());
    let warmup = prepare(&template, &format!("warmup-{run_id}"), 2_000);
    let deliveries = prepare(&template, &format!("bench-{run_id}"), args.deliveries);
    println!(
        "{} deliveries of {} bytes, {} connections, {} server and {} client threads, {} cores",
        deliveries.len(),
        deliveries[0].body.len(),
        args.concurrency,
        args.server_threads,
        args.client_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .thread_name("bench-server")
        .enable_all()
        .build()?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .thread_name("bench-client")
        .enable_all()
        .build()?;

    let storing = server.block_on(Runtime::start(&config))?;
    let store_addr = storing.local_addr();
    let ceiling_addr = server.block_on(start_ceiling(&config))?;

    let mut reports = Vec::new();
    let load = |addr, name, deliveries: &[Prepared]| {
        client.block_on(send_all(
            addr,
            name,
            deliveries,
            args.concurrency,
            &config.path,
            &basic,
        ))
    };
    load(store_addr, "warmup", &warmup)?;
    wait_until_idle(&data_dir)?;
    if !args.fresh_journal {
        // A receiver that has been up for a while has written its spare journal segments,
        // once deliveries paused long enough.
        let started = Instant::now();
        wait_for_spares(&data_dir)?;
        println!(
            "store    the journal wrote its spare segments {:.0} s after the warm-up",
            started.elapsed().as_secs_f64()
        );
    }
    let (mut report, succeeded) = load(store_addr, "store", &deliveries)?;
    let backlog = Store::pending(&data_dir)?;
    let applied_after = wait_until_idle(&data_dir)?;
    let missing = verify_stored(&data_dir, &deliveries, &succeeded)?;
    report.print();
    println!(
        "store    {backlog} deliveries not yet applied at the last answer; all applied and indexed {:.3} s later ({:.0} applied/s over the whole run)",
        applied_after.as_secs_f64(),
        succeeded.len() as f64 / (report.elapsed + applied_after).as_secs_f64(),
    );
    println!(
        "store    {} deliveries answered 2xx, {} of them missing from the store",
        succeeded.len(),
        missing
    );
    reports.push(report);

    if !args.skip_ceiling {
        load(ceiling_addr, "warmup", &warmup)?;
        let (mut report, _) = load(ceiling_addr, "ceiling", &deliveries)?;
        report.print();
        reports.push(report);
        let ratio = reports[0].throughput() / reports[1].throughput();
        println!("store/ceiling throughput ratio: {:.1}%", ratio * 100.0);
    }
    println!(
        "peak RSS of this process (load generator included): {} MiB",
        proc_status_kib("VmHWM") / 1024
    );

    server.block_on(storing.shutdown());
    anyhow::ensure!(
        missing == 0,
        "{missing} acknowledged deliveries are missing from the store"
    );
    Ok(())
}

fn prepare(template: &[u8], prefix: &str, count: usize) -> Vec<Prepared> {
    let mut value: serde_json::Value = serde_json::from_slice(template).expect("fixture is JSON");
    let secret = Secret::new(SECRET);
    (0..count)
        .map(|index| {
            // Random like RealTheory's UUIDs, so index inserts land on random pages.
            let random = hex::encode(rand::random::<[u8; 12]>());
            let id = format!("{random}-{prefix}-{index:08}");
            value["content"]["id"] = id.clone().into();
            value["consoleUrl"] = format!("https://myendpoint.realtheory.io/alerts/{id}").into();
            let body = serde_json::to_vec_pretty(&value).expect("JSON serializes");
            let signature =
                HeaderValue::from_str(&sign(&secret, &body)).expect("hex is a valid header");
            Prepared {
                id,
                body: Bytes::from(body),
                signature,
            }
        })
        .collect()
}

/// Starts the same router with storage switched off; returns its address.
async fn start_ceiling(config: &Config) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let receiver = Arc::new(Receiver::new(config, Sink::Discard));
    let limits = ConnectionLimits {
        header_timeout: config.header_timeout(),
        max_connections: config.max_connections,
    };
    tokio::spawn(serve_listener(
        listener,
        router(receiver),
        limits,
        std::future::pending(),
    ));
    Ok(address)
}

async fn send_all(
    address: SocketAddr,
    name: &'static str,
    deliveries: &[Prepared],
    concurrency: usize,
    path: &str,
    basic: &HeaderValue,
) -> anyhow::Result<(Report, Vec<usize>)> {
    // The deliveries outlive every task because this function joins them all.
    let deliveries: Arc<Vec<(Bytes, HeaderValue)>> = Arc::new(
        deliveries
            .iter()
            .map(|d| (d.body.clone(), d.signature.clone()))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let succeeded = Arc::new(Mutex::new(Vec::with_capacity(deliveries.len())));
    let errors = Arc::new(AtomicUsize::new(0));

    let sampling = Arc::new(AtomicBool::new(true));
    let rss_min = Arc::new(AtomicU64::new(u64::MAX));
    let rss_max = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, rss_min, rss_max) = (sampling.clone(), rss_min.clone(), rss_max.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let rss = proc_status_kib("VmRSS");
                rss_min.fetch_min(rss, Ordering::Relaxed);
                rss_max.fetch_max(rss, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (deliveries, next, succeeded, errors) = (
            deliveries.clone(),
            next.clone(),
            succeeded.clone(),
            errors.clone(),
        );
        let (path, basic) = (path.to_owned(), basic.clone());
        tasks.push(tokio::spawn(async move {
            connection_loop(
                address,
                &path,
                &basic,
                &deliveries,
                &next,
                &succeeded,
                &errors,
            )
            .await
        }));
    }
    let mut latencies = Vec::with_capacity(deliveries.len());
    for task in tasks {
        latencies.extend(task.await.context("load task panicked")??);
    }
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();

    let succeeded = std::mem::take(&mut *succeeded.lock().unwrap());
    let report = Report {
        name,
        elapsed,
        latencies,
        errors: errors.load(Ordering::Relaxed),
        rss_min_kib: rss_min.load(Ordering::Relaxed),
        rss_max_kib: rss_max.load(Ordering::Relaxed),
    };
    Ok((report, succeeded))
}

async fn connection_loop(
    address: SocketAddr,
    path: &str,
    basic: &HeaderValue,
    deliveries: &[(Bytes, HeaderValue)],
    next: &AtomicUsize,
    succeeded: &Mutex<Vec<usize>>,
    errors: &AtomicUsize,
) -> anyhow::Result<Vec<Duration>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);

    let mut latencies = Vec::new();
    let mut ok = Vec::new();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some((body, signature)) = deliveries.get(index) else {
            break;
        };
        let request = Request::post(path)
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, basic.clone())
            .header(SIGNATURE_HEADER, signature.clone())
            .body(Full::new(body.clone()))?;

        sender.ready().await?;
        let started = Instant::now();
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        latencies.push(started.elapsed());
        if status.is_success() {
            ok.push(index);
        } else {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    succeeded.lock().unwrap().extend(ok);
    Ok(latencies)
}

/// Waits until the writer has applied and indexed every journaled delivery, so the next
/// run starts on an idle machine; returns how long that took.
fn wait_until_idle(data_dir: &std::path::Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let connection = rusqlite::Connection::open_with_flags(
        data_dir.join(alert_inbox::store::DATABASE_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    loop {
        let unindexed: i64 =
            connection.query_row("SELECT count(*) FROM alerts_fts_pending", [], |row| {
                row.get(0)
            })?;
        if unindexed == 0 && Store::pending(data_dir)? == 0 {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the writer did not finish applying within 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the journal has every spare segment it keeps.
fn wait_for_spares(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (_, spares) = journal::segment_counts(data_dir)?;
        if spares >= journal::SPARE_SEGMENTS {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < journal::SPARE_FILL_QUIET * 4,
            "the journal has {spares} of {} spare segments after {} s",
            journal::SPARE_SEGMENTS,
            started.elapsed().as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Counts deliveries that got a 2xx response but are not in the store.
fn verify_stored(
    data_dir: &std::path::Path,
    deliveries: &[Prepared],
    succeeded: &[usize],
) -> anyhow::Result<usize> {
    let connection = Store::open_reader(data_dir)?;
    let mut statement = connection.prepare("SELECT 1 FROM alerts WHERE id = ?1")?;
    let mut missing = 0;
    for &index in succeeded {
        if !statement.exists([&deliveries[index].id])? {
            missing += 1;
        }
    }
    Ok(missing)
}
