//! Bulk-ingest benchmark.
//!
//! Generates synthetic FHIR NDJSON with `medlake generate`, then, in the same run:
//! 1. the raw limit: parse every line with `serde_json` into a `Value` and drop it, no
//!    validation and no storage, on one thread and on every core (a rayon pool fed in
//!    chunks, as medlake's own pipeline is);
//! 2. `medlake ingest` end to end into a fresh local lake, with its peak RSS and CPU time;
//! 3. the same ingest on half of the data, to show that peak memory does not grow
//!    with the input.
//!
//! The machines are shared and noisy, so the raw parse and the ingest are run
//! `--rounds` times, interleaved, and the median of each is reported.
//!
//! Usage: `medlake-bench-ingest [--patients N] [--rounds R] [--work DIR] [--medlake PATH]`
//! The medlake binary defaults to the one beside this benchmark's executable, so build both
//! with the same profile (see benches/README.md).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The same allocator as `medlake`, with its settings, so that the raw parse it is
/// compared with is not slowed by a different one.
#[path = "../../../api/src/allocator.rs"]
mod allocator;

struct Args {
    patients: u64,
    rounds: usize,
    work: PathBuf,
    medlake: PathBuf,
}

fn parse_args() -> Result<Args> {
    let exe = std::env::current_exe()?;
    let mut args = Args {
        patients: 3_800,
        rounds: 3,
        work: PathBuf::from("target/bench-ingest"),
        medlake: exe.with_file_name("medlake"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--patients" => args.patients = val()?.parse()?,
            "--rounds" => args.rounds = val()?.parse::<usize>()?.max(1),
            "--work" => args.work = PathBuf::from(val()?),
            "--medlake" => args.medlake = PathBuf::from(val()?),
            "-h" | "--help" => {
                println!(
                    "medlake-bench-ingest [--patients N] [--rounds R] [--work DIR] [--medlake PATH]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

fn ndjson_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    v.sort();
    Ok(v)
}

/// Parse every line of `files` with serde_json on a pool of `threads`; (resources, seconds).
fn raw_parse(files: &[PathBuf], threads: usize) -> Result<(u64, f64)> {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let started = Instant::now();
    let mut total = 0u64;
    for f in files {
        let r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(f)?);
        let mut lines = r.lines();
        loop {
            let chunk: Vec<String> = lines.by_ref().take(4096).collect::<Result<_, _>>()?;
            if chunk.is_empty() {
                break;
            }
            total += pool.install(|| {
                chunk
                    .par_iter()
                    .map(|line| {
                        let v: serde_json::Value = serde_json::from_str(line)?;
                        std::hint::black_box(&v);
                        Ok(1u64)
                    })
                    .sum::<Result<u64, serde_json::Error>>()
            })?;
        }
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// What one run of a command took.
struct Measured {
    secs: f64,
    cpu_secs: f64,
    peak_rss: u64,
}

/// Run a command and measure it with `wait4`.
fn run_measured(cmd: &mut Command) -> Result<Measured> {
    let started = Instant::now();
    let child = cmd.spawn().context("could not start medlake")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, written by the kernel for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = started.elapsed().as_secs_f64();
    if r < 0 {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("medlake exited with status {status}");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measured {
        secs,
        cpu_secs: tv(usage.ru_utime) + tv(usage.ru_stime),
        peak_rss: usage.ru_maxrss as u64 * 1024,
    })
}

fn dir_bytes(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

fn ingest(args: &Args, input: &Path, lake: &Path) -> Result<Measured> {
    let _ = std::fs::remove_dir_all(lake);
    run_measured(
        Command::new(&args.medlake)
            .args(["ingest", "-q"])
            .arg(input)
            .env("MEDLAKE_DATA", lake)
            .stdout(std::process::Stdio::null()),
    )
}

/// Generate `patients` into `out` unless already there; (resources, generation seconds if run).
fn generate(args: &Args, patients: u64, out: &Path) -> Result<(u64, Option<f64>)> {
    let mut secs = None;
    if !out.join("manifest.json").exists() {
        let started = Instant::now();
        let st = Command::new(&args.medlake)
            .args([
                "generate",
                "-q",
                "--seed",
                "1",
                "--patients",
                &patients.to_string(),
                "--out",
            ])
            .arg(out)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !st.success() {
            bail!("medlake generate failed");
        }
        secs = Some(started.elapsed().as_secs_f64());
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json"))?)?;
    Ok((m["total"].as_u64().context("manifest has no total")?, secs))
}

fn main() -> Result<()> {
    allocator::keep_freed_pages();
    let args = parse_args()?;
    if !args.medlake.exists() {
        bail!(
            "{} does not exist; build it with the same profile first",
            args.medlake.display()
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::fs::create_dir_all(&args.work)?;
    let big = args.work.join(format!("gen-{}", args.patients));
    let small_patients = (args.patients / 2).max(1);
    let small = args.work.join(format!("gen-{small_patients}"));
    eprintln!(
        "generating {} and {} patients...",
        args.patients, small_patients
    );
    let (total, gen_secs) = generate(&args, args.patients, &big)?;
    let (small_total, _) = generate(&args, small_patients, &small)?;
    let files = ndjson_files(&big)?;
    let bytes = dir_bytes(&files);
    let mb = bytes as f64 / 1e6;

    let (mut raw1, mut rawn, mut ingests) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        eprintln!(
            "round {round}/{}: raw parse, then medlake ingest of {total} resources...",
            args.rounds
        );
        let (n1, s1) = raw_parse(&files, 1)?;
        let (nn, sn) = raw_parse(&files, cores)?;
        if n1 != total || nn != total {
            bail!("raw parse saw {n1} and {nn} resources, the manifest says {total}");
        }
        raw1.push(s1);
        rawn.push(sn);
        ingests.push(ingest(&args, &big, &args.work.join("lake-big"))?);
    }
    eprintln!("medlake ingest of {small_total} resources...");
    let small_run = ingest(&args, &small, &args.work.join("lake-small"))?;

    let secs = median(ingests.iter().map(|m| m.secs).collect());
    let cpu = median(ingests.iter().map(|m| m.cpu_secs).collect());
    let rss = ingests.iter().map(|m| m.peak_rss).max().unwrap_or(0);
    let (s1, sn) = (median(raw1), median(rawn));
    let rate = total as f64 / secs;
    let raw1 = total as f64 / s1;
    let rawn = total as f64 / sn;
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| input | {total} resources, {mb:.0} MB NDJSON, {} patients |",
        args.patients
    );
    if let Some(g) = gen_secs {
        println!(
            "| medlake generate | {:.0} resources/s, {g:.1} s |",
            total as f64 / g
        );
    }
    println!(
        "| raw serde_json parse, 1 thread | {raw1:.0} resources/s ({:.1} MB/s) |",
        mb / s1
    );
    println!(
        "| raw serde_json parse, {cores} threads | {rawn:.0} resources/s ({:.1} MB/s) |",
        mb / sn
    );
    println!(
        "| medlake ingest end to end | {rate:.0} resources/s ({:.1} MB/s), {secs:.1} s, {cpu:.1} CPU-s |",
        mb / secs
    );
    println!(
        "| ingest / raw parse, {cores} threads each | {:.0}% |",
        100.0 * rate / rawn
    );
    println!(
        "| ingest CPU-s / raw parse CPU-s (1 thread) | {:.1}x |",
        cpu / s1
    );
    println!(
        "| peak RSS, {total} resources | {:.0} MB |",
        rss as f64 / 1e6
    );
    println!(
        "| peak RSS, {small_total} resources | {:.0} MB ({:.0} resources/s) |",
        small_run.peak_rss as f64 / 1e6,
        small_total as f64 / small_run.secs
    );
    println!("({} rounds, medians; {cores} cores)", args.rounds);
    Ok(())
}
