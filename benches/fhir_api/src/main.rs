//! FHIR REST benchmark: this process is the load; `medlake serve` runs as its own process
//! and is driven over loopback HTTP.
//!
//! 1. `medlake generate` and `medlake ingest` load at least a million resources (kept in
//!    `--work` between runs, so a rerun starts at step 2).
//! 2. The server starts on that lake; ids to read come from `POST /sql`.
//! 3. Measured: read by id of bulk-loaded resources (in Delta), one client, p50/p99;
//!    read by id of just-written resources (in the in-memory tail); creates and updates
//!    with `--clients` concurrent clients; 50-entry transactions; and four typical
//!    searches on the bulk-loaded data, one client, p50/p99 (their parameters are drawn
//!    from the data with SQL, so each search finds something). The server's resident
//!    memory after loading is reported too: it holds the id and search indexes.
//!
//! Usage: `medlake-bench-fhir-api [--patients N] [--work DIR] [--medlake PATH]
//! [--seconds S] [--clients C] [--reads R]`

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

struct Args {
    patients: u64,
    work: PathBuf,
    medlake: PathBuf,
    seconds: u64,
    clients: usize,
    reads: usize,
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
            "--reads" => args.reads = val()?.parse::<usize>()?.max(1),
            "-h" | "--help" => {
                println!(
                    "medlake-bench-fhir-api [--patients N] [--work DIR] [--medlake PATH] \
                     [--seconds S] [--clients C] [--reads R]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
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
    if !lake.join("default/fhir/patient/_delta_log").exists() {
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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &Args, lake: &Path) -> Result<Server> {
    let mut child = Command::new(&args.medlake)
        .args(["serve", "--listen", "127.0.0.1:0"])
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

fn ids(agent: &ureq::Agent, base: &str, table: &str, n: usize) -> Result<Vec<String>> {
    let mut r = agent
        .post(&format!("{base}/sql"))
        .send(format!("SELECT id FROM fhir.{table} LIMIT {n}"))?;
    let rows: Vec<Value> = r.body_mut().read_json()?;
    Ok(rows
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect())
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

/// Read every `Type/id` once, one client; latencies in microseconds.
fn read_all(agent: &ureq::Agent, base: &str, targets: &[(String, String)]) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(targets.len());
    for (t, id) in targets {
        let started = Instant::now();
        let mut r = agent.get(&format!("{base}/fhir/{t}/{id}")).call()?;
        let _ = r.body_mut().read_to_string()?;
        if r.status() != 200 {
            bail!("GET {t}/{id} answered {}", r.status());
        }
        out.push(started.elapsed().as_micros() as u64);
    }
    Ok(out)
}

/// Run `work` on `clients` threads for `seconds`; (operations per second, p50, p99).
fn load(
    clients: usize,
    seconds: u64,
    work: impl Fn(&ureq::Agent, usize, u64) -> Result<()> + Send + Sync + 'static,
) -> Result<(f64, f64, f64)> {
    let work = Arc::new(work);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let work = work.clone();
            let done = done.clone();
            std::thread::spawn(move || -> Result<Vec<u64>> {
                let agent = agent();
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    work(&agent, c, n)?;
                    latencies.push(t.elapsed().as_micros() as u64);
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
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
    let (p50, p99) = percentiles(all);
    Ok((done.load(Ordering::Relaxed) as f64 / secs, p50, p99))
}

fn expect(r: ureq::http::Response<ureq::Body>, status: u16, what: &str) -> Result<()> {
    if r.status() != status {
        bail!("{what} answered {} instead of {status}", r.status());
    }
    Ok(())
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
    let server = start_server(&args, &lake)?;
    let base = server.base.clone();
    // Before any query: what the id and search indexes hold, not what queries leave.
    let loaded_mb = server.rss_mb();
    let a = agent();

    let patients = ids(&a, &base, "patient", args.reads)?;
    let observations = ids(&a, &base, "observation", args.reads)?;
    if patients.is_empty() || observations.is_empty() {
        bail!("the lake has no patients or observations");
    }
    let mut targets: Vec<(String, String)> = Vec::new();
    for i in 0..args.reads {
        let (t, list) = if i % 2 == 0 {
            ("Patient", &patients)
        } else {
            ("Observation", &observations)
        };
        // A stride through the list, so consecutive reads hit different files.
        let id = &list[(i * 7919) % list.len()];
        targets.push((t.to_string(), id.clone()));
    }
    eprintln!("warming up...");
    read_all(&a, &base, &targets[..targets.len().min(100)])?;
    eprintln!("{} reads by id (bulk-loaded, in Delta)...", targets.len());
    let (delta_p50, delta_p99) = percentiles(read_all(&a, &base, &targets)?);

    eprintln!("searches...");
    let searches = typical_searches(&a, &base, &patients, args.reads.min(400))?;
    let rss_mb = server.rss_mb();

    eprintln!("creates, {} clients, {} s...", args.clients, args.seconds);
    let pats = Arc::new(patients.clone());
    let p = pats.clone();
    let b = base.clone();
    let (creates, create_p50, create_p99) =
        load(args.clients, args.seconds, move |agent, c, n| {
            let patient = &p[(c * 131 + n as usize) % p.len()];
            let r = agent
                .post(&format!("{b}/fhir/Observation"))
                .header("Content-Type", "application/fhir+json")
                .header("Prefer", "return=minimal")
                .send(observation(patient, n).to_string())?;
            expect(r, 201, "POST Observation")
        })?;

    // Updates: each client owns its own patients, so no two clients race on one id.
    eprintln!("updates, {} clients, {} s...", args.clients, args.seconds);
    let clients = args.clients;
    let p = pats.clone();
    let b = base.clone();
    let (updates, update_p50, update_p99) =
        load(args.clients, args.seconds, move |agent, c, n| {
            let mine: Vec<&String> = p.iter().skip(c).step_by(clients).collect();
            let id = mine[(n as usize) % mine.len().max(1)];
            let body = json!({"resourceType": "Patient", "id": id, "active": n % 2 == 0});
            let r = agent
                .put(&format!("{b}/fhir/Patient/{id}"))
                .header("Content-Type", "application/fhir+json")
                .header("Prefer", "return=minimal")
                .send(body.to_string())?;
            if r.status() != 200 && r.status() != 201 {
                bail!("PUT Patient/{id} answered {}", r.status());
            }
            Ok(())
        })?;

    // Reads of what was just written: served from the in-memory tail.
    let fresh: Vec<(String, String)> = targets
        .iter()
        .filter(|(t, _)| t == "Patient")
        .take(500)
        .cloned()
        .collect();
    let (tail_p50, tail_p99) = percentiles(read_all(&a, &base, &fresh)?);

    eprintln!("50-entry transactions, 4 clients, {} s...", args.seconds);
    let p = pats.clone();
    let b = base.clone();
    let (transactions, tx_p50, tx_p99) = load(4, args.seconds, move |agent, c, n| {
        let entries: Vec<Value> = (0..50u64)
            .map(|k| {
                let patient = &p[(c * 977 + (n * 50 + k) as usize) % p.len()];
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

    println!("| measure | value |");
    println!("|---|---|");
    println!("| data | {total} resources, {} patients |", args.patients);
    println!(
        "| read by id, bulk-loaded (Delta), 1 client | p50 {delta_p50:.1} ms, p99 {delta_p99:.1} ms ({} reads) |",
        targets.len()
    );
    println!(
        "| read by id, just written (tail), 1 client | p50 {tail_p50:.1} ms, p99 {tail_p99:.1} ms |"
    );
    println!(
        "| create, {} clients | {creates:.0}/s, p50 {create_p50:.1} ms, p99 {create_p99:.1} ms |",
        args.clients
    );
    println!(
        "| update, {} clients | {updates:.0}/s, p50 {update_p50:.1} ms, p99 {update_p99:.1} ms |",
        args.clients
    );
    println!(
        "| 50-entry transactions, 4 clients | {transactions:.1}/s ({:.0} resources/s), p50 {tx_p50:.1} ms, p99 {tx_p99:.1} ms |",
        transactions * 50.0
    );
    for s in &searches {
        println!(
            "| search: {} | p50 {:.1} ms, p99 {:.1} ms, {:.1} resources per answer ({} searches) |",
            s.name, s.p50, s.p99, s.resources, s.runs
        );
    }
    println!(
        "| server resident memory | {loaded_mb} MB when loaded (id and search indexes), {rss_mb} MB after the reads and searches |"
    );
    Ok(())
}

struct SearchFigures {
    name: &'static str,
    p50: f64,
    p99: f64,
    resources: f64,
    runs: usize,
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
    Ok(r.body_mut().read_json()?)
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

/// The four searches of the issue, each `runs` times with parameters drawn from the data.
fn typical_searches(
    agent: &ureq::Agent,
    base: &str,
    patients: &[String],
    runs: usize,
) -> Result<Vec<SearchFigures>> {
    let families: Vec<String> = sql(
        agent,
        base,
        "SELECT json_get_str(resource, 'name', 0, 'family') AS f FROM fhir.patient LIMIT 2000",
    )?
    .iter()
    .filter_map(|r| r["f"].as_str().map(str::to_string))
    .collect();
    let coded: Vec<(String, String)> = sql(
        agent,
        base,
        "SELECT json_get_str(resource, 'subject', 'reference') AS s, \
                json_get_str(resource, 'code', 'coding', 0, 'system') AS sys, \
                json_get_str(resource, 'code', 'coding', 0, 'code') AS c \
         FROM fhir.observation LIMIT 20000",
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
    let pick = |i: usize, n: usize| (i * 7919) % n;
    type Query = Box<dyn Fn(usize) -> String>;
    let (f, c) = (families, coded.clone());
    let (c2, p2) = (coded, patients.to_vec());
    let plans: Vec<(&'static str, Query)> = vec![
        (
            "Patient by family name (`Patient?family=<name>`)",
            Box::new(move |i| format!("Patient?family={}", url_escape(&f[pick(i, f.len())]))),
        ),
        (
            "Observation by patient and code (`Observation?patient=<id>&code=<system|code>`)",
            Box::new(move |i| {
                let (pat, code) = &c[pick(i, c.len())];
                format!("Observation?patient={pat}&code={}", url_escape(code))
            }),
        ),
        (
            "Observation by patient and date range, sorted by date (`Observation?patient=<id>&date=ge2015-01-01&date=lt2025-01-01&_sort=date`)",
            Box::new(move |i| {
                let (pat, _) = &c2[pick(i, c2.len())];
                format!("Observation?patient={pat}&date=ge2015-01-01&date=lt2025-01-01&_sort=date")
            }),
        ),
        (
            "Encounter with its Observations (`Encounter?patient=<id>&_count=10&_revinclude=Observation:encounter`)",
            Box::new(move |i| {
                let pat = &p2[pick(i, p2.len())];
                format!("Encounter?patient={pat}&_count=10&_revinclude=Observation:encounter")
            }),
        ),
    ];
    let mut out = Vec::new();
    for (name, query) in plans {
        // Warm-up, as for reads: the first touch of a file reads its footer.
        for i in 0..20 {
            let _ = agent
                .get(&format!("{base}/fhir/{}", query(i + runs)))
                .call()?;
        }
        let mut micros = Vec::with_capacity(runs);
        let mut resources = 0usize;
        for i in 0..runs {
            let url = format!("{base}/fhir/{}", query(i));
            let started = Instant::now();
            let mut r = agent.get(&url).call()?;
            let body = r.body_mut().read_to_string()?;
            micros.push(started.elapsed().as_micros() as u64);
            if r.status() != 200 {
                bail!("GET {url} answered {}: {body}", r.status());
            }
            let bundle: Value = serde_json::from_str(&body)?;
            resources += bundle["entry"].as_array().map_or(0, Vec::len);
        }
        let (p50, p99) = percentiles(micros);
        out.push(SearchFigures {
            name,
            p50,
            p99,
            resources: resources as f64 / runs as f64,
            runs,
        });
    }
    Ok(out)
}
