//! Bulk-ingest benchmark.
//!
//! Generates synthetic FHIR NDJSON with `medlake generate`, then, in the same run:
//! 1. the raw limit: parse every line with `serde_json` into a `Value`, no storage, on
//!    one thread and on every core;
//! 2. `medlake ingest` end to end into a fresh local lake, with its peak RSS;
//! 3. the same ingest on a quarter of the data, to show that peak memory does not grow
//!    with the input.
//!
//! Usage: `medlake-bench-ingest [--patients N] [--work DIR] [--medlake PATH]`
//! The medlake binary defaults to the one beside this benchmark's executable, so build both
//! with the same profile (see benches/README.md).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

struct Args {
    patients: u64,
    work: PathBuf,
    medlake: PathBuf,
}

fn parse_args() -> Result<Args> {
    let exe = std::env::current_exe()?;
    let mut args = Args {
        patients: 3_500,
        work: PathBuf::from("target/bench-ingest"),
        medlake: exe.with_file_name("medlake"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--patients" => args.patients = val()?.parse()?,
            "--work" => args.work = PathBuf::from(val()?),
            "--medlake" => args.medlake = PathBuf::from(val()?),
            "-h" | "--help" => {
                println!("medlake-bench-ingest [--patients N] [--work DIR] [--medlake PATH]");
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

/// Parse every line of `files` with serde_json on `threads` threads; (resources, seconds).
fn raw_parse(files: &[PathBuf], threads: usize) -> Result<(u64, f64)> {
    let started = Instant::now();
    let chunks: Vec<Vec<PathBuf>> = (0..threads)
        .map(|t| files.iter().skip(t).step_by(threads).cloned().collect())
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|files| {
            std::thread::spawn(move || -> Result<u64> {
                let mut n = 0u64;
                for f in files {
                    let r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&f)?);
                    for line in r.lines() {
                        let line = line?;
                        let v: serde_json::Value = serde_json::from_str(&line)?;
                        std::hint::black_box(&v);
                        n += 1;
                    }
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| anyhow::anyhow!("a parse thread panicked"))??;
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

/// Run a command, returning (seconds, peak RSS in bytes of the child).
fn run_measured(cmd: &mut Command) -> Result<(f64, u64)> {
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
    Ok((secs, usage.ru_maxrss as u64 * 1024))
}

fn dir_bytes(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

fn ingest(args: &Args, input: &Path, lake: &Path) -> Result<(f64, u64)> {
    let _ = std::fs::remove_dir_all(lake);
    run_measured(
        Command::new(&args.medlake)
            .args(["ingest", "-q"])
            .arg(input)
            .env("MEDLAKE_DATA", lake)
            .stdout(std::process::Stdio::null()),
    )
}

fn generate(args: &Args, patients: u64, out: &Path) -> Result<u64> {
    if !out.join("manifest.json").exists() {
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
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json"))?)?;
    m["total"].as_u64().context("manifest has no total")
}

fn main() -> Result<()> {
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
    let small_patients = (args.patients / 4).max(1);
    let small = args.work.join(format!("gen-{small_patients}"));
    eprintln!(
        "generating {} and {} patients...",
        args.patients, small_patients
    );
    let total = generate(&args, args.patients, &big)?;
    let small_total = generate(&args, small_patients, &small)?;
    let files = ndjson_files(&big)?;
    let bytes = dir_bytes(&files);

    eprintln!("raw parse...");
    let (n1, s1) = raw_parse(&files, 1)?;
    let (nn, sn) = raw_parse(&files, cores)?;
    assert_eq!(n1, total);
    assert_eq!(nn, total);
    eprintln!("medlake ingest ({total} resources)...");
    let (secs, rss) = ingest(&args, &big, &args.work.join("lake-big"))?;
    eprintln!("medlake ingest ({small_total} resources)...");
    let (small_secs, small_rss) = ingest(&args, &small, &args.work.join("lake-small"))?;

    let rate = total as f64 / secs;
    let raw1 = n1 as f64 / s1;
    let rawn = nn as f64 / sn;
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| input | {total} resources, {:.0} MB NDJSON, {} patients |",
        bytes as f64 / 1e6,
        args.patients
    );
    println!(
        "| raw serde_json parse, 1 thread | {raw1:.0} resources/s ({:.1} MB/s) |",
        bytes as f64 / 1e6 / s1
    );
    println!(
        "| raw serde_json parse, {cores} threads | {rawn:.0} resources/s ({:.1} MB/s) |",
        bytes as f64 / 1e6 / sn
    );
    println!(
        "| medlake ingest end to end | {rate:.0} resources/s ({:.1} MB/s), {secs:.1} s |",
        bytes as f64 / 1e6 / secs
    );
    println!(
        "| ingest / raw parse ({cores} threads) | {:.0}% |",
        100.0 * rate / rawn
    );
    println!(
        "| ingest / raw parse (1 thread) | {:.0}% |",
        100.0 * rate / raw1
    );
    println!(
        "| peak RSS, {total} resources | {:.0} MB |",
        rss as f64 / 1e6
    );
    println!(
        "| peak RSS, {small_total} resources | {:.0} MB ({:.0} resources/s) |",
        small_rss as f64 / 1e6,
        small_total as f64 / small_secs
    );
    Ok(())
}
