//! FHIR REST benchmark: this process is the load; `medlake serve` runs as its own process
//! and is driven over loopback HTTP.
//!
//! 1. `medlake generate` and `medlake ingest` load the data set (kept in `--work` between
//!    runs, so a rerun starts at step 2).
//! 2. The server starts on that lake. The ids to read and the search parameters are a
//!    uniform sample of the whole data set: SQL keeps the rows whose `md5(id)` falls under
//!    a threshold (a `LIMIT` would take the rows of the first files, the first resources
//!    written), and each measurement draws from that sample with a seeded generator
//!    (`--seed`), so a rerun draws the same requests.
//! 3. Measured on the bulk-loaded data: reads by id (in Delta) and four typical searches,
//!    each with one client (a fixed number of requests) and with `--clients` concurrent
//!    clients (for `--seconds`), as p50, p99 and requests per second. Then creates and
//!    updates with `--clients` clients, 50-entry transactions with 4, and reads by id of
//!    just-written resources (in the in-memory tail). The server's resident memory after
//!    loading is reported too: it holds the id and search indexes.
//! 4. Compaction scenario (skipped with `--long-write-secs 0`): twice, on two fresh copies
//!    of the same lake, a server that flushes every `--flush-secs` takes
//!    `--long-write-secs` of updates and creates from `--clients` clients, so that every
//!    table gets many small Delta files; once with background compaction off
//!    (`--compact-interval-secs 0`) and once on (every `--compact-secs`). After the phase
//!    and a pause long enough for the last flush (and a compaction round), the resources
//!    written in the phase are read by id, so the reads hit Delta. Reported side by side:
//!    the read p50 and p99, and the number of data files of each written table at the
//!    time of the reads (from its Delta log).
//!
//! Usage: `medlake-bench-fhir-api [--patients N] [--work DIR] [--medlake PATH]
//! [--seconds S] [--clients C] [--reads R] [--seed X] [--long-write-secs L]
//! [--flush-secs F] [--compact-secs K]`

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const USAGE: &str = "medlake-bench-fhir-api [--patients N] [--work DIR] [--medlake PATH] \
[--seconds S] [--clients C] [--reads R] [--seed X] [--long-write-secs L] [--flush-secs F] \
[--compact-secs K]";

/// How many rows of a table the uniform sample aims at: the ids to read and the search
/// parameters are drawn from it. Large enough that draws with replacement rarely repeat
/// a resource, small enough for one SQL answer.
const SAMPLE_ROWS: u64 = 50_000;

struct Args {
    patients: u64,
    work: PathBuf,
    medlake: PathBuf,
    seconds: u64,
    clients: usize,
    reads: u64,
    seed: u64,
    long_write_secs: u64,
    flush_secs: u64,
    compact_secs: u64,
}

fn parse_args() -> Result<Args> {
    let exe = std::env::current_exe()?;
    let mut args = Args {
        patients: 5_000,
        work: PathBuf::from("target/bench-fhir-api"),
        medlake: exe.with_file_name("medlake"),
        seconds: 10,
        clients: 16,
        reads: 2_000,
        seed: 1,
        long_write_secs: 300,
        flush_secs: 1,
        compact_secs: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--patients" => args.patients = val()?.parse()?,
            "--work" => args.work = PathBuf::from(val()?),
            "--medlake" => args.medlake = PathBuf::from(val()?),
            "--seconds" => args.seconds = val()?.parse()?,
            "--clients" => args.clients = val()?.parse::<usize>()?.max(1),
            "--reads" => args.reads = val()?.parse::<u64>()?.max(1),
            "--seed" => args.seed = val()?.parse()?,
            "--long-write-secs" => args.long_write_secs = val()?.parse()?,
            // The server takes whole seconds; 0 would mean "never" to no one.
            "--flush-secs" => args.flush_secs = val()?.parse::<u64>()?.max(1),
            "--compact-secs" => args.compact_secs = val()?.parse::<u64>()?.max(1),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\nusage: {USAGE}"),
        }
    }
    Ok(args)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("could not start {what}"))?;
    if !status.success() {
        bail!("{what} failed: {status}");
    }
    Ok(())
}

/// Generate and bulk-load the data set unless a previous run left it; (resources, lake).
fn prepare(args: &Args) -> Result<(u64, PathBuf)> {
    let input = args.work.join(format!("gen-{}", args.patients));
    let lake = args.work.join(format!("lake-{}", args.patients));
    if !input.join("manifest.json").exists() {
        eprintln!("generating {} patients...", args.patients);
        run(
            Command::new(&args.medlake)
                .args(["generate", "-q", "--seed", "1", "--patients"])
                .arg(args.patients.to_string())
                .arg("--out")
                .arg(&input),
            "medlake generate",
        )?;
    }
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(input.join("manifest.json"))?)?;
    let total = manifest["total"]
        .as_u64()
        .context("manifest has no total")?;
    if !table_dir(&lake, "patient").join("_delta_log").exists() {
        eprintln!("ingesting {total} resources...");
        let _ = std::fs::remove_dir_all(&lake);
        run(
            Command::new(&args.medlake)
                .args(["ingest", "-q"])
                .arg(&input)
                .env("MEDLAKE_DATA", &lake),
            "medlake ingest",
        )?;
    }
    Ok((total, lake))
}

/// The Delta table of a resource type in the lake's default workspace.
fn table_dir(lake: &Path, table: &str) -> PathBuf {
    lake.join("default/fhir").join(table)
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// The server's resident memory in MB (Linux), 0 where unknown.
    fn rss_mb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb / 1024)
    }

    /// Stop with SIGTERM, so the server flushes its tail to Delta and a copy of the lake
    /// taken afterwards needs no WAL replay; SIGKILL if it has not exited in two minutes.
    fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("the server did not stop on SIGTERM within 2 minutes: killing it");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &Args, lake: &Path, extra: &[String]) -> Result<Server> {
    let mut child = Command::new(&args.medlake)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pg-listen",
            "off",
            "--flight-listen",
            "off",
        ])
        .args(extra)
        .env("MEDLAKE_DATA", lake)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start medlake serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(a) = line.strip_prefix("listening on ") {
                    break a.trim().to_string();
                }
            }
            _ => bail!("medlake serve stopped before it listened"),
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Server {
        child,
        base: format!("http://{addr}"),
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Rows of a SQL query as JSON objects.
fn sql(agent: &ureq::Agent, base: &str, query: &str) -> Result<Vec<Value>> {
    let mut r = agent.post(&format!("{base}/sql")).send(query)?;
    if r.status() != 200 {
        bail!(
            "SQL answered {}: {}",
            r.status(),
            r.body_mut().read_to_string()?
        );
    }
    // A uniform sample is a few MB: above ureq's default limit of 10 MB for a body.
    Ok(r.body_mut().with_config().limit(1 << 30).read_json()?)
}

/// About `wanted` rows of `fhir.<table>`, uniformly over the whole table: a row is in
/// the sample when the md5 of its id falls under a threshold, which has nothing to do
/// with where the row sits in the files. `columns` are SQL expressions beside `id`; the
/// rows come back ordered by id, so that seeded draws from them repeat run to run.
fn sample_rows(
    agent: &ureq::Agent,
    base: &str,
    table: &str,
    columns: &str,
    wanted: u64,
) -> Result<Vec<Value>> {
    let count = sql(
        agent,
        base,
        &format!("SELECT count(*) AS n FROM fhir.{table}"),
    )?
    .first()
    .and_then(|r| r["n"].as_u64())
    .unwrap_or(0);
    let share = if count == 0 {
        1.0
    } else {
        (wanted as f64 / count as f64).min(1.0)
    };
    // md5 is 32 hex digits: comparing it with 8 of them compares its first 32 bits.
    let threshold = ((share * 4_294_967_296.0) as u64).min(u64::from(u32::MAX));
    let filter = if share >= 1.0 {
        String::new()
    } else {
        format!("WHERE md5(id) < '{threshold:08x}'")
    };
    let mut rows = sql(
        agent,
        base,
        &format!("SELECT id, {columns} FROM fhir.{table} {filter}"),
    )?;
    rows.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(rows)
}

fn sample_ids(agent: &ureq::Agent, base: &str, table: &str) -> Result<Vec<String>> {
    Ok(sample_rows(agent, base, table, "1 AS one", SAMPLE_ROWS)?
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect())
}

/// SplitMix64, a small seeded generator, so that the benchmark's draws repeat run to run
/// without a dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the bias of the multiply-shift is below 2^-40 here.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The `n`th draw in `0..len` of client `client`: computed from the three numbers alone,
/// so that concurrent clients draw independent, repeatable sequences without sharing a
/// generator.
fn draw(seed: u64, client: usize, n: u64, len: usize) -> usize {
    // Neighbouring states give unrelated outputs: SplitMix64's output step is a mixer.
    let mut rng = Rng(seed.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ ((client as u64) << 40) ^ n);
    rng.below(len)
}

/// (p50, p99) in milliseconds.
fn percentiles(mut micros: Vec<u64>) -> (f64, f64) {
    if micros.is_empty() {
        return (0.0, 0.0);
    }
    micros.sort_unstable();
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    (at(0.5), at(0.99))
}

/// How long a measurement runs: for a time, or a number of requests per client.
#[derive(Clone, Copy)]
enum Budget {
    Seconds(u64),
    RequestsPerClient(u64),
}

/// The figures of one measurement.
struct Figures {
    clients: usize,
    requests: u64,
    per_second: f64,
    p50: f64,
    p99: f64,
}

impl Figures {
    fn clients(&self) -> String {
        match self.clients {
            1 => "1 client".to_string(),
            n => format!("{n} clients"),
        }
    }

    fn cell(&self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, {:.0}/s ({} requests)",
            self.p50, self.p99, self.per_second, self.requests
        )
    }
}

/// Run `work(agent, client, n)` on `clients` threads within `budget`.
fn load(
    clients: usize,
    budget: Budget,
    work: impl Fn(&ureq::Agent, usize, u64) -> Result<()> + Send + Sync + 'static,
) -> Result<Figures> {
    let work = Arc::new(work);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let work = work.clone();
            std::thread::spawn(move || -> Result<Vec<u64>> {
                let agent = agent();
                let mut latencies = Vec::new();
                let deadline = match budget {
                    Budget::Seconds(s) => Some(Instant::now() + Duration::from_secs(s)),
                    Budget::RequestsPerClient(_) => None,
                };
                for n in 0u64.. {
                    let more = match budget {
                        Budget::Seconds(_) => deadline.is_some_and(|d| Instant::now() < d),
                        Budget::RequestsPerClient(k) => n < k,
                    };
                    if !more {
                        break;
                    }
                    let t = Instant::now();
                    work(&agent, c, n)?;
                    latencies.push(t.elapsed().as_micros() as u64);
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??,
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let requests = all.len() as u64;
    let (p50, p99) = percentiles(all);
    Ok(Figures {
        clients,
        requests,
        per_second: requests as f64 / secs,
        p50,
        p99,
    })
}

fn expect(r: ureq::http::Response<ureq::Body>, status: u16, what: &str) -> Result<()> {
    if r.status() != status {
        bail!("{what} answered {} instead of {status}", r.status());
    }
    Ok(())
}

/// Ids to read, by resource type; a request alternates between the types and draws the
/// id uniformly from its type's list.
type ReadPool = Arc<Vec<(&'static str, Vec<String>)>>;

/// The client numbers a measurement draws with start at one of these, so that no two
/// measurements send the same sequence of requests (a repeat would find it cached).
const WARM_UP_CLIENTS: usize = 1_000;
const ONE_CLIENT: usize = 0;
const MANY_CLIENTS: usize = 100;

fn reads_by_id(
    base: &str,
    pool: &ReadPool,
    seed: u64,
    (first_client, clients): (usize, usize),
    budget: Budget,
) -> Result<Figures> {
    let (base, pool) = (base.to_string(), pool.clone());
    load(clients, budget, move |agent, c, n| {
        let (ty, ids) = &pool[(c + n as usize) % pool.len()];
        let id = &ids[draw(seed, first_client + c, n, ids.len())];
        let mut r = agent.get(&format!("{base}/fhir/{ty}/{id}")).call()?;
        let _ = r.body_mut().read_to_string()?;
        expect(r, 200, &format!("GET {ty}/{id}"))
    })
}

/// Read every `Type/id` once, one client, in order.
fn read_each(base: &str, targets: &[(&str, &str)]) -> Result<Figures> {
    let targets: Arc<Vec<(String, String)>> = Arc::new(
        targets
            .iter()
            .map(|(t, i)| (t.to_string(), i.to_string()))
            .collect(),
    );
    let base = base.to_string();
    let count = targets.len() as u64;
    load(1, Budget::RequestsPerClient(count), move |agent, _, n| {
        let (ty, id) = &targets[n as usize];
        let mut r = agent.get(&format!("{base}/fhir/{ty}/{id}")).call()?;
        let _ = r.body_mut().read_to_string()?;
        expect(r, 200, &format!("GET {ty}/{id}"))
    })
}

fn observation(patient: &str, i: u64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-11-01T08:00:00Z",
        "valueQuantity": {"value": 60 + (i % 40), "unit": "/min",
                          "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

/// POST an Observation; the id the server gave it.
fn create_observation(agent: &ureq::Agent, base: &str, patient: &str, n: u64) -> Result<String> {
    let r = agent
        .post(&format!("{base}/fhir/Observation"))
        .header("Content-Type", "application/fhir+json")
        .header("Prefer", "return=minimal")
        .send(observation(patient, n).to_string())?;
    // Location: <base>/Observation/<id>/_history/<version>
    let id = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.split("/_history/").next())
        .and_then(|l| l.rsplit('/').next())
        .map(str::to_string);
    expect(r, 201, "POST Observation")?;
    id.context("POST Observation answered without a Location")
}

fn update_patient(agent: &ureq::Agent, base: &str, id: &str, n: u64) -> Result<()> {
    let body = json!({"resourceType": "Patient", "id": id, "active": n % 2 == 0});
    let r = agent
        .put(&format!("{base}/fhir/Patient/{id}"))
        .header("Content-Type", "application/fhir+json")
        .header("Prefer", "return=minimal")
        .send(body.to_string())?;
    if r.status() != 200 && r.status() != 201 {
        bail!("PUT Patient/{id} answered {}", r.status());
    }
    Ok(())
}

/// The ids each client updates: its own share of `pool`, so no two clients race on one
/// id (which would measure version conflicts, not writes).
fn share_of(pool: &[String], client: usize, clients: usize) -> Vec<String> {
    pool.iter().skip(client).step_by(clients).cloned().collect()
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if !args.medlake.exists() {
        bail!(
            "{} does not exist; build it first (see benches/README.md)",
            args.medlake.display()
        );
    }
    std::fs::create_dir_all(&args.work)?;
    let (total, lake) = prepare(&args)?;
    let server = start_server(&args, &lake, &[])?;
    let base = server.base.clone();
    // Before any query: what the id and search indexes hold, not what queries leave.
    let loaded_mb = server.rss_mb();
    let a = agent();
    let clients = args.clients;
    let seed = args.seed;

    eprintln!("sampling ids and search parameters uniformly...");
    let mut patients = sample_ids(&a, &base, "patient")?;
    let observations = sample_ids(&a, &base, "observation")?;
    if patients.is_empty() || observations.is_empty() {
        bail!("the lake has no patients or observations");
    }
    // Shuffled once, so that any prefix of it (the pool the updates use) is uniform too.
    Rng(seed).shuffle(&mut patients);
    let bulk: ReadPool = Arc::new(vec![
        ("Patient", patients.clone()),
        ("Observation", observations.clone()),
    ]);

    eprintln!("warming up...");
    reads_by_id(
        &base,
        &bulk,
        seed,
        (WARM_UP_CLIENTS, 1),
        Budget::RequestsPerClient(100),
    )?;
    eprintln!(
        "{} reads by id (bulk-loaded, in Delta), 1 client...",
        args.reads
    );
    let delta_1 = reads_by_id(
        &base,
        &bulk,
        seed,
        (ONE_CLIENT, 1),
        Budget::RequestsPerClient(args.reads),
    )?;
    eprintln!("reads by id, {clients} clients, {} s...", args.seconds);
    let delta_n = reads_by_id(
        &base,
        &bulk,
        seed,
        (MANY_CLIENTS, clients),
        Budget::Seconds(args.seconds),
    )?;

    eprintln!("searches, 1 client and {clients} clients...");
    let searches = typical_searches(&a, &base, &args, &patients)?;
    let rss_mb = server.rss_mb();

    eprintln!("creates, {clients} clients, {} s...", args.seconds);
    let pats = Arc::new(patients.clone());
    let p = pats.clone();
    let b = base.clone();
    let creates = load(
        clients,
        Budget::Seconds(args.seconds),
        move |agent, c, n| {
            let patient = &p[draw(seed, c, n, p.len())];
            create_observation(agent, &b, patient, n).map(drop)
        },
    )?;

    eprintln!("updates, {clients} clients, {} s...", args.seconds);
    // A pool of `--reads` patients, read back afterwards from the tail.
    let pool: Vec<String> = patients.iter().take(args.reads as usize).cloned().collect();
    let shares: Arc<Vec<Vec<String>>> =
        Arc::new((0..clients).map(|c| share_of(&pool, c, clients)).collect());
    let b = base.clone();
    let updates = load(
        clients,
        Budget::Seconds(args.seconds),
        move |agent, c, n| {
            let mine = &shares[c];
            if mine.is_empty() {
                return Ok(());
            }
            update_patient(agent, &b, &mine[n as usize % mine.len()], n)
        },
    )?;

    // Reads of what was just written: served from the in-memory tail.
    let fresh: Vec<(&str, &str)> = pool
        .iter()
        .take(500)
        .map(|id| ("Patient", id.as_str()))
        .collect();
    let tail_1 = read_each(&base, &fresh)?;

    eprintln!("50-entry transactions, 4 clients, {} s...", args.seconds);
    let p = pats.clone();
    let b = base.clone();
    let transactions = load(4, Budget::Seconds(args.seconds), move |agent, c, n| {
        let entries: Vec<Value> = (0..50u64)
            .map(|k| {
                let patient = &p[draw(seed, c, n * 50 + k, p.len())];
                json!({"resource": observation(patient, k), "request": {"method": "POST", "url": "Observation"}})
            })
            .collect();
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let r = agent
            .post(&format!("{b}/fhir"))
            .header("Content-Type", "application/fhir+json")
            .header("Prefer", "return=minimal")
            .send(bundle.to_string())?;
        expect(r, 200, "POST transaction")
    })?;
    // Stopped cleanly: the compaction scenario copies this lake.
    server.stop()?;

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| data | {total} resources, {} patients; ids and parameters drawn uniformly (seed {seed}) from {} patients and {} observations |",
        args.patients,
        patients.len(),
        observations.len()
    );
    for f in [&delta_1, &delta_n] {
        println!(
            "| read by id, bulk-loaded (Delta), {} | {} |",
            f.clients(),
            f.cell()
        );
    }
    println!(
        "| read by id, just written (tail), 1 client | {} |",
        tail_1.cell()
    );
    println!("| create, {clients} clients | {} |", creates.cell());
    println!("| update, {clients} clients | {} |", updates.cell());
    println!(
        "| 50-entry transactions, 4 clients | {} ({:.0} resources/s) |",
        transactions.cell(),
        transactions.per_second * 50.0
    );
    for s in &searches {
        for (f, entries) in &s.runs {
            println!(
                "| search: {}, {} | {}, {:.1} resources per answer |",
                s.name,
                f.clients(),
                f.cell(),
                *entries as f64 / f.requests.max(1) as f64
            );
        }
    }
    println!(
        "| server resident memory | {loaded_mb} MB when loaded (id and search indexes), {rss_mb} MB after the reads and searches |"
    );

    if args.long_write_secs > 0 {
        compaction_scenario(&args, &lake, &patients)?;
    }
    Ok(())
}

struct SearchFigures {
    name: &'static str,
    /// One client, then `--clients`; with the entries (matches and included resources)
    /// of all the run's answers.
    runs: Vec<(Figures, u64)>,
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The search URL of a client's `n`th request.
type Query = Arc<dyn Fn(usize, u64) -> String + Send + Sync>;

/// The four searches of issue #3, with parameters drawn uniformly from samples of the
/// data: one client for `min(--reads, 400)` searches, then `--clients` for `--seconds`.
fn typical_searches(
    agent: &ureq::Agent,
    base: &str,
    args: &Args,
    patients: &[String],
) -> Result<Vec<SearchFigures>> {
    let families: Vec<String> = sample_rows(
        agent,
        base,
        "patient",
        "json_get_str(resource, 'name', 0, 'family') AS f",
        SAMPLE_ROWS,
    )?
    .iter()
    .filter_map(|r| r["f"].as_str().map(str::to_string))
    .collect();
    // (patient, system|code) of sampled Observations: each search finds something.
    let coded: Vec<(String, String)> = sample_rows(
        agent,
        base,
        "observation",
        "json_get_str(resource, 'subject', 'reference') AS s, \
         json_get_str(resource, 'code', 'coding', 0, 'system') AS sys, \
         json_get_str(resource, 'code', 'coding', 0, 'code') AS c",
        SAMPLE_ROWS,
    )?
    .iter()
    .filter_map(|r| {
        let s = r["s"].as_str()?.strip_prefix("Patient/")?;
        Some((
            s.to_string(),
            format!("{}|{}", r["sys"].as_str()?, r["c"].as_str()?),
        ))
    })
    .collect();
    if families.is_empty() || coded.is_empty() {
        bail!("no families or coded observations to search for");
    }
    let seed = args.seed;
    let (f, c, c2, p) = (
        Arc::new(families),
        Arc::new(coded.clone()),
        Arc::new(coded),
        Arc::new(patients.to_vec()),
    );
    let plans: Vec<(&'static str, Query)> = vec![
        (
            "Patient by family name (`Patient?family=<name>`)",
            Arc::new(move |client, n| {
                let family = &f[draw(seed, client, n, f.len())];
                format!("Patient?family={}", url_escape(family))
            }),
        ),
        (
            "Observation by patient and code (`Observation?patient=<id>&code=<system|code>`)",
            Arc::new(move |client, n| {
                let (pat, code) = &c[draw(seed, client, n, c.len())];
                format!("Observation?patient={pat}&code={}", url_escape(code))
            }),
        ),
        (
            "Observation by patient and date range, sorted by date (`Observation?patient=<id>&date=ge2015-01-01&date=lt2025-01-01&_sort=date`)",
            Arc::new(move |client, n| {
                let (pat, _) = &c2[draw(seed, client, n, c2.len())];
                format!("Observation?patient={pat}&date=ge2015-01-01&date=lt2025-01-01&_sort=date")
            }),
        ),
        (
            "Encounter with its Observations (`Encounter?patient=<id>&_count=10&_revinclude=Observation:encounter`)",
            Arc::new(move |client, n| {
                let pat = &p[draw(seed, client, n, p.len())];
                format!("Encounter?patient={pat}&_count=10&_revinclude=Observation:encounter")
            }),
        ),
    ];
    let runs = args.reads.min(400);
    let mut out = Vec::new();
    for (name, query) in plans {
        let measure = |first_client: usize, clients: usize, budget: Budget| {
            let entries = Arc::new(AtomicU64::new(0));
            let (e, q, b) = (entries.clone(), query.clone(), base.to_string());
            let figures = load(clients, budget, move |agent, client, n| {
                let url = format!("{b}/fhir/{}", q(first_client + client, n));
                let mut r = agent.get(&url).call()?;
                let body = r.body_mut().read_to_string()?;
                if r.status() != 200 {
                    bail!("GET {url} answered {}: {body}", r.status());
                }
                let bundle: Value = serde_json::from_str(&body)?;
                let count = bundle["entry"].as_array().map_or(0, Vec::len);
                e.fetch_add(count as u64, Ordering::Relaxed);
                Ok(())
            })?;
            anyhow::Ok((figures, entries.load(Ordering::Relaxed)))
        };
        // Warm-up, as for reads: the first touch of a file reads its footer.
        measure(WARM_UP_CLIENTS, 1, Budget::RequestsPerClient(20))?;
        let one = measure(ONE_CLIENT, 1, Budget::RequestsPerClient(runs))?;
        let many = measure(MANY_CLIENTS, args.clients, Budget::Seconds(args.seconds))?;
        out.push(SearchFigures {
            name,
            runs: vec![one, many],
        });
    }
    Ok(out)
}

/// The data files of a Delta table now, from its log: the commits are replayed from
/// version 0 (adds minus removes), reading only the commits that are new since the last
/// call. `None` when the log no longer starts at version 0 (a checkpoint and a log
/// cleanup took its start away), which a lake this benchmark made does not do.
struct DeltaFiles {
    log: PathBuf,
    next_version: u64,
    live: HashSet<String>,
}

impl DeltaFiles {
    fn new(table: PathBuf) -> DeltaFiles {
        DeltaFiles {
            log: table.join("_delta_log"),
            next_version: 0,
            live: HashSet::new(),
        }
    }

    fn count(&mut self) -> Result<Option<usize>> {
        if self.next_version == 0 && !self.commit(0).exists() {
            return Ok(None);
        }
        loop {
            let path = self.commit(self.next_version);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e).with_context(|| path.display().to_string()),
            };
            // A commit is written whole (put-if-absent), but a reader may still meet a
            // file being renamed into place: a line that does not parse ends this round.
            let mut actions = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => actions.push(v),
                    Err(_) => return Ok(Some(self.live.len())),
                }
            }
            for action in actions {
                if let Some(p) = action["add"]["path"].as_str() {
                    self.live.insert(p.to_string());
                } else if let Some(p) = action["remove"]["path"].as_str() {
                    self.live.remove(p);
                }
            }
            self.next_version += 1;
        }
        Ok(Some(self.live.len()))
    }

    fn commit(&self, version: u64) -> PathBuf {
        self.log.join(format!("{version:020}.json"))
    }
}

/// The tables the write phase writes to.
const WRITTEN_TABLES: [&str; 2] = ["patient", "observation"];

fn file_counts(tables: &mut [DeltaFiles]) -> Result<Vec<Option<usize>>> {
    tables.iter_mut().map(DeltaFiles::count).collect()
}

fn show_counts(counts: &[Option<usize>]) -> String {
    WRITTEN_TABLES
        .iter()
        .zip(counts)
        .map(|(t, c)| match c {
            Some(c) => format!("{t} {c}"),
            None => format!("{t} unknown"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One run of the compaction scenario.
struct CompactionRun {
    writes: Figures,
    updated: usize,
    created: usize,
    most_files: Vec<Option<usize>>,
    files_at_reads: Vec<Option<usize>>,
    files_after_reads: Vec<Option<usize>>,
    reads_1: Figures,
    reads_n: Figures,
}

/// A long write phase on a fresh copy of `lake`, then reads by id of what it wrote.
/// `compact_secs` 0 turns background compaction off.
fn compaction_run(
    args: &Args,
    lake: &Path,
    label: &str,
    compact_secs: u64,
    patients: &[String],
) -> Result<CompactionRun> {
    let copy = args
        .work
        .join(format!("compaction-{label}-{}", args.patients));
    let _ = std::fs::remove_dir_all(&copy);
    eprintln!("compaction {label}: copying the lake...");
    copy_dir(lake, &copy)?;
    let server = start_server(
        args,
        &copy,
        &[
            "--flush-interval-secs".into(),
            args.flush_secs.to_string(),
            "--compact-interval-secs".into(),
            compact_secs.to_string(),
        ],
    )?;
    let base = server.base.clone();
    let clients = args.clients;
    let seed = args.seed;

    // Watch the file counts through the phase, for the most files it reached.
    let stop_watching = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop_watching.clone();
        let copy = copy.clone();
        std::thread::spawn(move || -> Result<Vec<Option<usize>>> {
            let mut tables: Vec<DeltaFiles> = WRITTEN_TABLES
                .iter()
                .map(|t| DeltaFiles::new(table_dir(&copy, t)))
                .collect();
            let mut most = vec![Some(0); tables.len()];
            while !stop.load(Ordering::Relaxed) {
                for (m, c) in most.iter_mut().zip(file_counts(&mut tables)?) {
                    *m = match (*m, c) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok(most)
        })
    };

    eprintln!(
        "compaction {label}: updates and creates, {clients} clients, {} s...",
        args.long_write_secs
    );
    let shares: Arc<Vec<Vec<String>>> = Arc::new(
        (0..clients)
            .map(|c| share_of(patients, c, clients))
            .collect(),
    );
    let updated = Arc::new(Mutex::new(HashSet::new()));
    let created = Arc::new(Mutex::new(Vec::new()));
    let (u, cr, b, pats) = (
        updated.clone(),
        created.clone(),
        base.clone(),
        Arc::new(patients.to_vec()),
    );
    let writes = load(
        clients,
        Budget::Seconds(args.long_write_secs),
        move |agent, c, n| {
            // Half updates of the client's own patients, half creates.
            if n % 2 == 0 {
                let mine = &shares[c];
                if mine.is_empty() {
                    return Ok(());
                }
                let id = &mine[draw(seed, c, n, mine.len())];
                update_patient(agent, &b, id, n)?;
                u.lock().unwrap().insert(id.clone());
            } else {
                let patient = &pats[draw(seed, c, n, pats.len())];
                let id = create_observation(agent, &b, patient, n)?;
                cr.lock().unwrap().push(id);
            }
            Ok(())
        },
    )?;
    // The same pause in both runs: the last flush, then one compaction round's interval,
    // so that with compaction on a round has seen the phase's last files.
    let settle = args.flush_secs + args.compact_secs + 2;
    eprintln!("compaction {label}: {settle} s for the last flush...");
    std::thread::sleep(Duration::from_secs(settle));
    stop_watching.store(true, Ordering::Relaxed);
    let most_files = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("the file watcher panicked"))??;

    let mut tables: Vec<DeltaFiles> = WRITTEN_TABLES
        .iter()
        .map(|t| DeltaFiles::new(table_dir(&copy, t)))
        .collect();
    let files_at_reads = file_counts(&mut tables)?;
    let mut updated: Vec<String> = updated.lock().unwrap().drain().collect();
    updated.sort();
    let created = std::mem::take(&mut *created.lock().unwrap());
    let (updated_count, created_count) = (updated.len(), created.len());
    if updated.is_empty() || created.is_empty() {
        bail!("the write phase wrote no patients or no observations");
    }
    let written: ReadPool = Arc::new(vec![("Patient", updated), ("Observation", created)]);
    eprintln!(
        "compaction {label}: reads by id of what the phase wrote ({})...",
        show_counts(&files_at_reads)
    );
    // No warm-up: what many files cost is, above all, the first touch of each.
    let reads_1 = reads_by_id(
        &base,
        &written,
        seed,
        (ONE_CLIENT, 1),
        Budget::RequestsPerClient(args.reads),
    )?;
    let reads_n = reads_by_id(
        &base,
        &written,
        seed,
        (MANY_CLIENTS, clients),
        Budget::Seconds(args.seconds),
    )?;
    let files_after_reads = file_counts(&mut tables)?;
    server.stop()?;
    // Each copy is as large as the lake: keep only one on disk at a time.
    std::fs::remove_dir_all(&copy)?;
    Ok(CompactionRun {
        writes,
        updated: updated_count,
        created: created_count,
        most_files,
        files_at_reads,
        files_after_reads,
        reads_1,
        reads_n,
    })
}

fn compaction_scenario(args: &Args, lake: &Path, patients: &[String]) -> Result<()> {
    let off = compaction_run(args, lake, "off", 0, patients)?;
    let on = compaction_run(args, lake, "on", args.compact_secs, patients)?;
    println!();
    println!(
        "| after {} s of updates and creates ({} clients, flush every {} s) | compaction off | compaction on (every {} s) |",
        args.long_write_secs, args.clients, args.flush_secs, args.compact_secs
    );
    println!("|---|---|---|");
    let row = |what: &str, f: &dyn Fn(&CompactionRun) -> String| {
        println!("| {what} | {} | {} |", f(&off), f(&on));
    };
    row("writes during the phase", &|r: &CompactionRun| {
        r.writes.cell()
    });
    row(
        "written: patients updated, observations created",
        &|r: &CompactionRun| format!("{}, {}", r.updated, r.created),
    );
    row("most data files during the phase", &|r: &CompactionRun| {
        show_counts(&r.most_files)
    });
    row("data files at the reads", &|r: &CompactionRun| {
        show_counts(&r.files_at_reads)
    });
    row("data files after the reads", &|r: &CompactionRun| {
        show_counts(&r.files_after_reads)
    });
    row(
        &format!(
            "read by id of written resources (in Delta), 1 client, {} reads",
            args.reads
        ),
        &|r: &CompactionRun| r.reads_1.cell(),
    );
    row(
        &format!(
            "read by id of written resources (in Delta), {} clients, {} s",
            args.clients, args.seconds
        ),
        &|r: &CompactionRun| r.reads_n.cell(),
    );
    Ok(())
}

/// Copy a folder tree (the lake: Delta tables and the WAL folder).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
