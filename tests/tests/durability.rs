//! `kill -9` at any moment, and in the windows where a crash hurts most, loses no
//! acknowledged write, duplicates none, and lets nothing unacknowledged in out of place.
//!
//! Four writers drive the FHIR API (create, update, delete, JSON Patch, transaction
//! Bundles) and `/ingest` while the server flushes to Delta every 100 ms and compacts
//! every second. The server dies, is restarted, and dies again, `MEDLAKE_KILLS` times
//! (10 by default; `benches/kill9.sh` runs 100): some kills are `SIGKILL` at a random
//! moment, some are aimed, through `MEDLAKE_CRASH_AT` ([`medlake_lake::crash`]), at a
//! flush between its rotation and its commits, a flush between its commits and the WAL
//! cleanup, a group of WAL records half written and not synced, and a compaction that
//! has committed and settled nothing else. Before a crash aimed at a flush, writes come in
//! bursts, so that some flushes rotate the WAL with nothing written behind them; and the
//! restart after it is quiet: nothing is written until the server has flushed what it
//! recovered, as after a restart at night, and the kill comes before the next flush.
//!
//! Every write carries a token of its own (an `identifier`), and each writer alone
//! writes the resources it owns, so the whole history is known: every acknowledged
//! version must read back byte for byte as the write answered it (by `vread`, and from
//! Delta by SQL), `/ingest` writes and deletes as far as they can be checked (the stored
//! content, the 410 of a delete); versions are gapless and stored once; a write that was
//! never acknowledged may have landed, but only whole, only as the version right after
//! the resource's acknowledged ones, and only once. A resource an unacknowledged write
//! touched is not written again, so that its last version is the only one in doubt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use medlake_e2e::{Server, http, sql_json};
use serde_json::{Value, json};

/// The identifier system of the tokens that tell every write apart.
const TOKEN_SYSTEM: &str = "urn:medlake:kill9";
const WRITERS: usize = 4;
/// Resources a writer keeps writing; older ones are left as they are.
const OWNED_MAX: usize = 24;
const TYPES: [&str; 2] = ["Patient", "Observation"];
/// The crash points aimed at, in turn (see `lake/src/crash.rs`).
const AIMED: [&str; 4] = [
    "flush-before-commit",
    "wal-mid-group",
    "flush-after-commit",
    "compact-after-commit",
];
const SIGABRT: i32 = 6;

/// xorshift64*: the test needs cheap, reproducible randomness, not quality.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

type Key = (String, String);

/// What an acknowledged version must read back as.
#[derive(Clone, Debug)]
enum Expect {
    /// Exactly the body the write answered with.
    Body(String),
    /// The resource sent (an `/ingest` answer has no body): equal but for `meta`.
    Content(Value),
    Deleted,
}

/// What an unacknowledged request would have done to one resource.
#[derive(Clone, Debug)]
enum Effect {
    Put {
        resource_type: &'static str,
        /// `None` where the server picks the id.
        id: Option<String>,
        token: String,
        /// What was sent, where the stored version must equal it (not for a patch, nor
        /// where the server rewrote references).
        content: Option<Value>,
    },
    Delete {
        resource_type: &'static str,
        id: String,
    },
}

struct Unacknowledged {
    kind: &'static str,
    effects: Vec<Effect>,
}

#[derive(Default)]
struct Ledger {
    acked: HashMap<Key, BTreeMap<i64, Expect>>,
    unacked: Vec<Unacknowledged>,
    /// Acknowledged requests per kind.
    requests: BTreeMap<&'static str, u64>,
    problems: Vec<String>,
}

struct Owned {
    resource_type: &'static str,
    id: String,
    version: i64,
    live: bool,
}

/// One response, read whole.
struct Answer {
    status: u16,
    etag: Option<i64>,
    body: String,
}

type HttpResult = Result<ureq::http::Response<ureq::Body>, ureq::Error>;

fn answer(result: HttpResult) -> Option<Answer> {
    let mut resp = result.ok()?;
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_etag);
    let body = resp.body_mut().read_to_string().ok()?;
    Some(Answer { status, etag, body })
}

fn parse_etag(tag: &str) -> Option<i64> {
    tag.trim_start_matches("W/").trim_matches('"').parse().ok()
}

fn meta_version(resource: &Value) -> Result<i64, String> {
    resource["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no meta.versionId in {resource}"))
}

fn token_of(resource: &Value) -> Option<&str> {
    resource["identifier"]
        .as_array()?
        .iter()
        .find(|i| i["system"] == TOKEN_SYSTEM)?["value"]
        .as_str()
}

/// Whether a stored resource is what was sent, but for `meta` (and the id, where the
/// server chose it).
fn same_content(stored: &Value, sent: &Value) -> bool {
    let (Some(stored), Some(sent)) = (stored.as_object(), sent.as_object()) else {
        return false;
    };
    let (mut stored, mut sent) = (stored.clone(), sent.clone());
    stored.remove("meta");
    sent.remove("meta");
    if !sent.contains_key("id") {
        stored.remove("id");
    }
    stored == sent
}

fn patient(id: Option<&str>, token: &str, variant: u64) -> Value {
    let mut p = json!({
        "resourceType": "Patient",
        "identifier": [{"system": TOKEN_SYSTEM, "value": token}],
        "active": variant % 2 == 0,
        "gender": (["female", "male", "other"][(variant % 3) as usize]),
        "name": [{"family": format!("Kill{variant}"), "given": ["Nine", token]}],
        "birthDate": format!("19{:02}-0{}-1{}", variant % 100, 1 + variant % 9, variant % 10),
    });
    if let Some(id) = id {
        p["id"] = json!(id);
    }
    p
}

fn observation(id: Option<&str>, token: &str, subject: Option<&str>, variant: u64) -> Value {
    let mut o = json!({
        "resourceType": "Observation",
        "identifier": [{"system": TOKEN_SYSTEM, "value": token}],
        "status": (["final", "amended", "preliminary"][(variant % 3) as usize]),
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "valueQuantity": {"value": 40 + variant % 100, "unit": "/min"},
    });
    if let Some(s) = subject {
        o["subject"] = json!({"reference": s});
    }
    if let Some(id) = id {
        o["id"] = json!(id);
    }
    o
}

fn resource(resource_type: &str, id: Option<&str>, token: &str, variant: u64) -> Value {
    match resource_type {
        "Patient" => patient(id, token, variant),
        _ => observation(id, token, None, variant),
    }
}

/// One writer: the resources it owns, and how it writes them.
struct Writer {
    number: usize,
    rng: Rng,
    owned: Vec<Owned>,
    requests: u64,
}

impl Writer {
    fn token(&self, entry: usize) -> String {
        format!("w{}-{}-{entry}", self.number, self.requests)
    }

    fn pick(&mut self, wanted: impl Fn(&Owned) -> bool, not: Option<usize>) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.owned.len())
            .filter(|&i| Some(i) != not && wanted(&self.owned[i]))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.rng.below(candidates.len() as u64) as usize])
    }

    /// An acknowledged version: it must be the next of a resource this writer owns, or
    /// the first of a new one.
    fn ack(
        &mut self,
        ledger: &mut Ledger,
        resource_type: &'static str,
        id: &str,
        version: i64,
        expect: Expect,
    ) {
        let live = !matches!(expect, Expect::Deleted);
        let expected = match self
            .owned
            .iter_mut()
            .find(|o| o.resource_type == resource_type && o.id == id)
        {
            Some(o) => {
                let next = o.version + 1;
                o.version = version;
                o.live = live;
                next
            }
            None => {
                self.owned.push(Owned {
                    resource_type,
                    id: id.to_string(),
                    version,
                    live,
                });
                1
            }
        };
        let earlier = ledger
            .acked
            .entry((resource_type.to_string(), id.to_string()))
            .or_default()
            .insert(version, expect);
        if earlier.is_some() {
            ledger.problems.push(format!(
                "{resource_type}/{id} v{version} was acknowledged twice"
            ));
        }
        if version != expected {
            ledger.problems.push(format!(
                "{resource_type}/{id}: acknowledged v{version} where v{expected} was next"
            ));
        }
    }

    /// Book a request's outcome. An answer with a 2xx is acknowledged and goes to
    /// `on_ok`; anything else leaves its effects in doubt and their resources alone from
    /// now on. Returns whether to go on writing in this round.
    fn settle(
        &mut self,
        ledger: &Mutex<Ledger>,
        kind: &'static str,
        result: HttpResult,
        effects: Vec<Effect>,
        on_ok: impl FnOnce(&mut Writer, &mut Ledger, Answer) -> Result<(), String>,
    ) -> bool {
        let answered = answer(result);
        let mut ledger = ledger.lock().unwrap();
        match answered {
            Some(a) if (200..300).contains(&a.status) => {
                *ledger.requests.entry(kind).or_default() += 1;
                if let Err(e) = on_ok(self, &mut *ledger, a) {
                    ledger.problems.push(format!("{kind}: {e}"));
                }
                true
            }
            other => {
                // A 4xx means the test sent something wrong, which would make it prove less.
                let client_error = other.as_ref().filter(|a| (400..500).contains(&a.status));
                if let Some(a) = client_error {
                    ledger
                        .problems
                        .push(format!("{kind} answered {}: {}", a.status, a.body));
                }
                for e in &effects {
                    let (t, id) = match e {
                        Effect::Put {
                            resource_type,
                            id: Some(id),
                            ..
                        } => (*resource_type, id),
                        Effect::Delete { resource_type, id } => (*resource_type, id),
                        Effect::Put { id: None, .. } => continue,
                    };
                    self.owned
                        .retain(|o| !(o.resource_type == t && o.id == *id));
                }
                ledger.unacked.push(Unacknowledged { kind, effects });
                client_error.is_some()
            }
        }
    }

    /// One request of a random kind.
    fn step(&mut self, agent: &ureq::Agent, base: &str, ledger: &Mutex<Ledger>) -> bool {
        self.requests += 1;
        // Let go of the oldest resources between requests, never while one is answered.
        if self.owned.len() > OWNED_MAX {
            self.owned.drain(..self.owned.len() - OWNED_MAX);
        }
        match self.rng.below(100) {
            0..18 => self.create(agent, base, ledger),
            18..36 => self.update(agent, base, ledger),
            36..48 => self.delete(agent, base, ledger),
            48..64 => self.patch(agent, base, ledger),
            64..82 => self.transaction(agent, base, ledger),
            _ => self.ingest(agent, base, ledger),
        }
    }

    fn create(&mut self, agent: &ureq::Agent, base: &str, ledger: &Mutex<Ledger>) -> bool {
        let token = self.token(0);
        let body = patient(None, &token, self.rng.next());
        let result = agent
            .post(format!("{base}/fhir/Patient"))
            .header("Content-Type", "application/fhir+json")
            .send(body.to_string());
        let effects = vec![Effect::Put {
            resource_type: "Patient",
            id: None,
            token,
            content: Some(body),
        }];
        self.settle(ledger, "create", result, effects, |w, l, a| {
            let v: Value = serde_json::from_str(&a.body).map_err(|e| e.to_string())?;
            let id = v["id"].as_str().ok_or("no id")?.to_string();
            w.ack(l, "Patient", &id, meta_version(&v)?, Expect::Body(a.body));
            Ok(())
        })
    }

    /// PUT: a new version of an owned resource (deleted ones come back), or now and
    /// then a new resource under the writer's own id.
    fn update(&mut self, agent: &ureq::Agent, base: &str, ledger: &Mutex<Ledger>) -> bool {
        let (resource_type, id) = match self.pick(|_| true, None) {
            Some(i) if self.rng.below(5) > 0 => {
                (self.owned[i].resource_type, self.owned[i].id.clone())
            }
            _ => ("Patient", format!("w{}-{}", self.number, self.requests)),
        };
        let token = self.token(0);
        let body = resource(resource_type, Some(&id), &token, self.rng.next());
        let result = agent
            .put(format!("{base}/fhir/{resource_type}/{id}"))
            .header("Content-Type", "application/fhir+json")
            .send(body.to_string());
        let effects = vec![Effect::Put {
            resource_type,
            id: Some(id.clone()),
            token,
            content: Some(body),
        }];
        self.settle(ledger, "update", result, effects, |w, l, a| {
            let v: Value = serde_json::from_str(&a.body).map_err(|e| e.to_string())?;
            w.ack(
                l,
                resource_type,
                &id,
                meta_version(&v)?,
                Expect::Body(a.body),
            );
            Ok(())
        })
    }

    fn delete(&mut self, agent: &ureq::Agent, base: &str, ledger: &Mutex<Ledger>) -> bool {
        let Some(i) = self.pick(|o| o.live, None) else {
            return self.create(agent, base, ledger);
        };
        let (resource_type, id) = (self.owned[i].resource_type, self.owned[i].id.clone());
        let result = agent
            .delete(format!("{base}/fhir/{resource_type}/{id}"))
            .call();
        let effects = vec![Effect::Delete {
            resource_type,
            id: id.clone(),
        }];
        self.settle(ledger, "delete", result, effects, |w, l, a| {
            // Without an ETag the server thought the resource already gone: nothing written.
            let version = a.etag.ok_or_else(|| {
                format!(
                    "deleting live {resource_type}/{id} wrote nothing ({})",
                    a.status
                )
            })?;
            w.ack(l, resource_type, &id, version, Expect::Deleted);
            Ok(())
        })
    }

    fn patch(&mut self, agent: &ureq::Agent, base: &str, ledger: &Mutex<Ledger>) -> bool {
        let Some(i) = self.pick(|o| o.live, None) else {
            return self.create(agent, base, ledger);
        };
        let (resource_type, id) = (self.owned[i].resource_type, self.owned[i].id.clone());
        let token = self.token(0);
        let variant = self.rng.below(3) as usize;
        let (path, value) = match resource_type {
            "Patient" => ("/gender", ["female", "male", "unknown"][variant]),
            _ => ("/status", ["corrected", "amended", "final"][variant]),
        };
        let body = json!([
            {"op": "replace", "path": "/identifier/0/value", "value": token},
            {"op": "replace", "path": path, "value": value},
        ]);
        let result = agent
            .patch(format!("{base}/fhir/{resource_type}/{id}"))
            .header("Content-Type", "application/json-patch+json")
            .send(body.to_string());
        let effects = vec![Effect::Put {
            resource_type,
            id: Some(id.clone()),
            token,
            content: None,
        }];
        self.settle(ledger, "patch", result, effects, |w, l, a| {
            let v: Value = serde_json::from_str(&a.body).map_err(|e| e.to_string())?;
            w.ack(
                l,
                resource_type,
                &id,
                meta_version(&v)?,
                Expect::Body(a.body),
            );
            Ok(())
        })
    }

    /// A transaction: a new Patient and an Observation that refers to it by its
    /// `urn:uuid`, an update of one owned resource and a delete of another.
    fn transaction(&mut self, agent: &ureq::Agent, base: &str, ledger: &Mutex<Ledger>) -> bool {
        let urn = |rng: &mut Rng| {
            let (a, b) = (rng.next(), rng.next());
            format!(
                "urn:uuid:{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                a >> 32,
                a & 0xffff,
                (a >> 16) & 0xfff,
                b & 0xfff,
                (b >> 16) & 0xffff_ffff_ffff
            )
        };
        let (patient_urn, observation_urn) = (urn(&mut self.rng), urn(&mut self.rng));
        let (t0, t1, t2) = (self.token(0), self.token(1), self.token(2));
        let new_patient = patient(None, &t0, self.rng.next());
        let mut entries = vec![
            json!({"fullUrl": patient_urn, "resource": new_patient,
                   "request": {"method": "POST", "url": "Patient"}}),
            json!({"fullUrl": observation_urn,
                   "resource": observation(None, &t1, Some(&patient_urn), self.rng.next()),
                   "request": {"method": "POST", "url": "Observation"}}),
        ];
        let mut effects = vec![
            Effect::Put {
                resource_type: "Patient",
                id: None,
                token: t0,
                content: Some(new_patient),
            },
            // Its subject is rewritten to the new Patient's id: only its token is known.
            Effect::Put {
                resource_type: "Observation",
                id: None,
                token: t1,
                content: None,
            },
        ];
        let mut planned = vec![("Patient", None), ("Observation", None)];
        let updated = self.pick(|_| true, None);
        if let Some(i) = updated {
            let (t, id) = (self.owned[i].resource_type, self.owned[i].id.clone());
            let body = resource(t, Some(&id), &t2, self.rng.next());
            entries.push(json!({"resource": body,
                                "request": {"method": "PUT", "url": format!("{t}/{id}")}}));
            effects.push(Effect::Put {
                resource_type: t,
                id: Some(id.clone()),
                token: t2,
                content: Some(body),
            });
            planned.push((t, Some(id)));
        }
        if let Some(i) = self.pick(|o| o.live, updated) {
            let (t, id) = (self.owned[i].resource_type, self.owned[i].id.clone());
            entries.push(json!({"request": {"method": "DELETE", "url": format!("{t}/{id}")}}));
            effects.push(Effect::Delete {
                resource_type: t,
                id: id.clone(),
            });
            planned.push((t, Some(id)));
        }
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let result = agent
            .post(format!("{base}/fhir"))
            .header("Content-Type", "application/fhir+json")
            .send(bundle.to_string());
        self.settle(ledger, "transaction", result, effects, |w, l, a| {
            let v: Value = serde_json::from_str(&a.body).map_err(|e| e.to_string())?;
            let answers = v["entry"].as_array().ok_or("no entries in the answer")?;
            if answers.len() != planned.len() {
                return Err(format!(
                    "{} entries answered of {}",
                    answers.len(),
                    planned.len()
                ));
            }
            let mut new_patient_id = None;
            for ((t, known_id), e) in planned.iter().zip(answers) {
                let response = &e["response"];
                let version = response["etag"]
                    .as_str()
                    .and_then(parse_etag)
                    .ok_or_else(|| format!("no etag in {e}"))?;
                let id = match known_id {
                    Some(id) => id.clone(),
                    None => response["location"]
                        .as_str()
                        .and_then(|l| l.split('/').nth(1))
                        .ok_or_else(|| format!("no location in {e}"))?
                        .to_string(),
                };
                let expect = match e.get("resource") {
                    Some(r) => Expect::Body(r.to_string()),
                    None => Expect::Deleted,
                };
                if *t == "Patient" && known_id.is_none() {
                    new_patient_id = Some(id.clone());
                }
                if *t == "Observation" && known_id.is_none() {
                    let reference = e["resource"]["subject"]["reference"].as_str();
                    let wanted = new_patient_id.as_ref().map(|p| format!("Patient/{p}"));
                    if reference != wanted.as_deref() {
                        return Err(format!("the new Observation refers to {reference:?}"));
                    }
                }
                w.ack(l, *t, &id, version, expect);
            }
            Ok(())
        })
    }

    /// `/ingest`: two new resources under the writer's ids and up to two owned ones.
    fn ingest(&mut self, agent: &ureq::Agent, base: &str, ledger: &Mutex<Ledger>) -> bool {
        let mut targets: Vec<(&'static str, String)> = (0..2)
            .map(|k| {
                (
                    "Patient",
                    format!("w{}-{}-i{k}", self.number, self.requests),
                )
            })
            .collect();
        let first = self.pick(|_| true, None);
        let second = first.and_then(|f| self.pick(|_| true, Some(f)));
        for i in [first, second].into_iter().flatten() {
            targets.push((self.owned[i].resource_type, self.owned[i].id.clone()));
        }
        let mut lines = Vec::new();
        let mut effects = Vec::new();
        let mut sent: HashMap<Key, (&'static str, Value)> = HashMap::new();
        for (k, (t, id)) in targets.iter().enumerate() {
            let token = self.token(k);
            let body = resource(t, Some(id), &token, self.rng.next());
            lines.push(body.to_string());
            sent.insert((t.to_string(), id.clone()), (*t, body.clone()));
            effects.push(Effect::Put {
                resource_type: *t,
                id: Some(id.clone()),
                token,
                content: Some(body),
            });
        }
        let result = agent
            .post(format!("{base}/ingest"))
            .header("Content-Type", "application/x-ndjson")
            .send(lines.join("\n"));
        self.settle(ledger, "ingest", result, effects, |w, l, a| {
            let v: Value = serde_json::from_str(&a.body).map_err(|e| e.to_string())?;
            let accepted = v["resources"].as_array().ok_or("no resources")?;
            if accepted.len() != targets.len() {
                return Err(format!(
                    "{} of {} accepted: {}",
                    accepted.len(),
                    targets.len(),
                    a.body
                ));
            }
            for r in accepted {
                let t = r["resourceType"].as_str().unwrap_or_default();
                let id = r["id"].as_str().unwrap_or_default();
                let version = r["versionId"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("no versionId in {r}"))?;
                let (t, body) = sent
                    .get(&(t.to_string(), id.to_string()))
                    .cloned()
                    .ok_or_else(|| format!("{r} was not sent"))?;
                w.ack(l, t, id, version, Expect::Content(body));
            }
            Ok(())
        })
    }
}

/// How a round ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Round {
    /// `SIGKILL` at a random moment.
    Random,
    /// `SIGKILL` soon after writes resume on a server that was left alone until it had
    /// flushed what it recovered.
    Quiet,
    /// The server aborts itself at a crash point.
    Aimed(&'static str),
}

/// Rounds in fives: random, aimed, quiet, aimed, random; the aimed ones take the crash
/// points in turn, and each quiet round follows a crash inside a flush.
fn round_kind(round: usize) -> Round {
    match round % 5 {
        1 => Round::Aimed(AIMED[(round / 5 * 2) % AIMED.len()]),
        3 => Round::Aimed(AIMED[(round / 5 * 2 + 1) % AIMED.len()]),
        2 => Round::Quiet,
        _ => Round::Random,
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write_duplicates_none_and_admits_nothing_out_of_place() {
    let kills: usize = std::env::var("MEDLAKE_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("MEDLAKE_KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("kill9: {kills} kills, seed {seed} (MEDLAKE_KILL9_SEED)");
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lake");
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let mut rng = Rng::new(seed);
    let mut writers: Vec<Writer> = (0..WRITERS)
        .map(|number| Writer {
            number,
            rng: Rng::new(
                seed.wrapping_add(number as u64 + 1)
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
            owned: Vec::new(),
            requests: 0,
        })
        .collect();
    let mut killed: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();

    for round in 0..kills {
        let kind = round_kind(round);
        let crash_at = match kind {
            Round::Aimed(p @ "wal-mid-group") => Some(format!("{p}:{}", rng.range(5, 80))),
            Round::Aimed(p @ ("flush-before-commit" | "flush-after-commit")) => {
                Some(format!("{p}:{}", rng.range(1, 4)))
            }
            Round::Aimed(p) => Some(format!("{p}:1")),
            _ => None,
        };
        let env: Vec<(&str, &str)> = crash_at
            .iter()
            .map(|c| ("MEDLAKE_CRASH_AT", c.as_str()))
            .collect();
        // A quiet round flushes once a second so that the kill, soon after the writes
        // resume, lands before the next flush; the others flush at every 100 ms tick.
        let flush_every = if kind == Round::Quiet { "1" } else { "0" };
        let mut server = Server::start_with_env(
            &data,
            &[
                "--flush-interval-secs",
                flush_every,
                "--compact-interval-secs",
                "1",
            ],
            &env,
        );
        let quiet_for = if kind == Round::Quiet {
            Duration::from_millis(1500)
        } else {
            Duration::ZERO
        };
        // Bursts of writes, 100 ms in every 300, before an aimed flush crash: some
        // flushes then rotate the WAL with nothing written behind the rotation.
        let bursts = matches!(
            kind,
            Round::Aimed("flush-before-commit" | "flush-after-commit")
        );
        let round_began = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = writers
            .drain(..)
            .map(|mut w| {
                let (base, stop, ledger) = (server.base.clone(), stop.clone(), ledger.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(quiet_for);
                    let agent = http();
                    while !stop.load(Ordering::Relaxed) {
                        let phase = round_began.elapsed().as_millis() as u64 % 300;
                        if bursts && phase >= 100 {
                            std::thread::sleep(Duration::from_millis(300 - phase));
                            continue;
                        }
                        if !w.step(&agent, &base, &ledger) {
                            break;
                        }
                    }
                    w
                })
            })
            .collect();
        match kind {
            Round::Random | Round::Quiet => {
                let wait = match kind {
                    Round::Quiet => quiet_for + Duration::from_millis(rng.range(150, 500)),
                    _ => Duration::from_millis(rng.range(150, 1200)),
                };
                std::thread::sleep(wait);
                if let Some(status) = server.exited() {
                    problems.push(format!(
                        "round {round}: the server died by itself: {status}"
                    ));
                }
                server.kill9();
                *killed.entry("random").or_default() += 1;
            }
            Round::Aimed(point) => match server.wait_exit(Duration::from_secs(60)) {
                Some(status) if status.signal() == Some(SIGABRT) => {
                    *killed.entry(point).or_default() += 1;
                }
                Some(status) => {
                    problems.push(format!("round {round}: the server died with {status}"));
                }
                None => {
                    problems.push(format!(
                        "round {round}: {} was not reached within 60 s",
                        crash_at.unwrap_or_default()
                    ));
                    server.kill9();
                    *killed.entry("random").or_default() += 1;
                }
            },
        }
        stop.store(true, Ordering::Relaxed);
        writers = threads.into_iter().map(|t| t.join().unwrap()).collect();
    }

    // A last start replays the WAL: every acknowledged version must read back, from the
    // tail or from Delta. A graceful stop then flushes it all for SQL.
    let server = Server::start(&data, &[]);
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    problems.extend(ledger.problems.iter().cloned());
    let checked = verify_by_vread(&server.base, &ledger, &mut problems);
    server.stop();
    let report = verify_stored(&data, &ledger, &mut problems);

    let acked_requests: u64 = ledger.requests.values().sum();
    println!(
        "kill9 report: {kills} kills ({}); {acked_requests} acknowledged requests {:?}; \
         {checked} acknowledged versions checked by vread and by SQL; {} unacknowledged \
         requests, {} of them landed (whole); lost {}, duplicated {}, out of place {}; \
         problems {}; {:.0} s",
        killed
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        ledger.requests,
        ledger.unacked.len(),
        report.landed_requests,
        report.lost,
        report.duplicated,
        report.out_of_place,
        problems.len(),
        began.elapsed().as_secs_f64()
    );
    // The first problems, and the last (those of the final checks).
    for (i, p) in problems.iter().enumerate() {
        if i < 30 || i + 30 >= problems.len() {
            println!("  {p}");
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems (the first are listed above)",
        problems.len()
    );
    // A run that acknowledged little, or missed a window, proves little.
    assert!(checked > 100, "only {checked} acknowledged versions");
    for kind in [
        "create",
        "update",
        "delete",
        "patch",
        "transaction",
        "ingest",
    ] {
        assert!(
            ledger.requests.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} was acknowledged"
        );
    }
    if kills >= 10 {
        for point in AIMED {
            assert!(
                killed.get(point).copied().unwrap_or(0) > 0,
                "no kill at {point}"
            );
        }
    }
}

/// Every acknowledged version by `vread`, four at a time. Returns how many were checked.
fn verify_by_vread(base: &str, ledger: &Ledger, problems: &mut Vec<String>) -> usize {
    let all: Vec<(&Key, i64, &Expect)> = ledger
        .acked
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |(v, e)| (k, *v, e)))
        .collect();
    let chunk = all.len().div_ceil(4).max(1);
    let found: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = all
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let agent = http();
                    let mut found = Vec::new();
                    for ((t, id), v, expect) in part {
                        let a = answer(
                            agent
                                .get(format!("{base}/fhir/{t}/{id}/_history/{v}"))
                                .call(),
                        );
                        let Some(a) = a else {
                            found.push(format!("vread {t}/{id} v{v}: no answer"));
                            continue;
                        };
                        let ok = match expect {
                            Expect::Body(b) => a.status == 200 && a.body == *b,
                            Expect::Content(c) => {
                                a.status == 200
                                    && serde_json::from_str::<Value>(&a.body).is_ok_and(|r| {
                                        meta_version(&r) == Ok(*v) && same_content(&r, c)
                                    })
                            }
                            Expect::Deleted => a.status == 410,
                        };
                        if !ok {
                            found.push(format!(
                                "vread {t}/{id} v{v}: {} {}; acknowledged as {expect:?}",
                                a.status, a.body
                            ));
                        }
                    }
                    found
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    problems.extend(found);
    all.len()
}

struct StoredRow {
    deleted: bool,
    resource: String,
}

#[derive(Default)]
struct Report {
    lost: usize,
    duplicated: usize,
    out_of_place: usize,
    landed_requests: usize,
}

/// The whole history, from Delta by SQL, against the ledger.
fn verify_stored(data: &std::path::Path, ledger: &Ledger, problems: &mut Vec<String>) -> Report {
    let mut report = Report::default();
    let mut stored: HashMap<Key, BTreeMap<i64, Vec<StoredRow>>> = HashMap::new();
    let mut current: HashMap<Key, i64> = HashMap::new();
    for t in TYPES {
        let table = t.to_ascii_lowercase();
        for r in sql_json(
            data,
            &format!("SELECT id, version_id, deleted, resource FROM fhir_history.{table}"),
        ) {
            let key = (t.to_string(), r["id"].as_str().unwrap().to_string());
            stored
                .entry(key)
                .or_default()
                .entry(r["version_id"].as_i64().unwrap())
                .or_default()
                .push(StoredRow {
                    deleted: r["deleted"].as_bool().unwrap_or(false),
                    resource: r["resource"].as_str().unwrap_or_default().to_string(),
                });
        }
        for r in sql_json(data, &format!("SELECT id, version_id FROM fhir.{table}")) {
            let key = (t.to_string(), r["id"].as_str().unwrap().to_string());
            current.insert(key, r["version_id"].as_i64().unwrap());
        }
    }

    // Stored once, gapless, every token once.
    let mut tokens: HashMap<String, usize> = HashMap::new();
    for ((t, id), versions) in &stored {
        for (v, rows) in versions {
            if rows.len() > 1 {
                report.duplicated += rows.len() - 1;
                problems.push(format!("{t}/{id} v{v} is stored {} times", rows.len()));
            }
            for row in rows.iter().filter(|r| !r.deleted) {
                let parsed: Value = serde_json::from_str(&row.resource).unwrap_or(Value::Null);
                match token_of(&parsed) {
                    Some(token) => *tokens.entry(token.to_string()).or_default() += 1,
                    None => problems.push(format!("{t}/{id} v{v} has no token: {}", row.resource)),
                }
                if meta_version(&parsed) != Ok(*v) {
                    problems.push(format!("{t}/{id} v{v} says it is {}", parsed["meta"]));
                }
            }
        }
        let numbers: Vec<i64> = versions.keys().copied().collect();
        if numbers != (1..=numbers.len() as i64).collect::<Vec<_>>() {
            problems.push(format!("{t}/{id} has versions {numbers:?}"));
        }
        let newest = versions.iter().next_back();
        let live = newest.is_some_and(|(_, rows)| !rows[0].deleted);
        let shown = current.get(&(t.clone(), id.clone())).copied();
        if shown != newest.filter(|_| live).map(|(v, _)| *v) {
            problems.push(format!(
                "fhir.{t} shows {id} at {shown:?}; its history ends at {:?}",
                newest.map(|(v, rows)| (*v, rows[0].deleted))
            ));
        }
    }
    for (token, n) in &tokens {
        if *n > 1 {
            report.duplicated += n - 1;
            problems.push(format!("the write {token} is stored {n} times"));
        }
    }

    // Every acknowledged version, as acknowledged.
    for ((t, id), acked) in &ledger.acked {
        for (v, expect) in acked {
            let Some(row) = stored
                .get(&(t.clone(), id.clone()))
                .and_then(|vs| vs.get(v))
                .and_then(|rows| rows.first())
            else {
                report.lost += 1;
                problems.push(format!("acknowledged {t}/{id} v{v} is lost"));
                continue;
            };
            let ok = match expect {
                Expect::Body(b) => !row.deleted && row.resource == *b,
                Expect::Content(c) => {
                    !row.deleted
                        && serde_json::from_str::<Value>(&row.resource)
                            .is_ok_and(|r| same_content(&r, c))
                }
                Expect::Deleted => row.deleted,
            };
            if !ok {
                problems.push(format!(
                    "{t}/{id} v{v} is stored as {} (deleted: {}); acknowledged as {expect:?}",
                    row.resource, row.deleted
                ));
            }
        }
    }

    // Whatever else is stored came from an unacknowledged request: the version right
    // after the resource's acknowledged ones (or the first of a resource the server
    // named), once, with that request's content.
    let mut by_key: HashMap<Key, (usize, usize)> = HashMap::new();
    let mut by_token: HashMap<&str, (usize, usize)> = HashMap::new();
    for (r, u) in ledger.unacked.iter().enumerate() {
        for (e, effect) in u.effects.iter().enumerate() {
            match effect {
                Effect::Put {
                    resource_type,
                    id: Some(id),
                    ..
                }
                | Effect::Delete { resource_type, id } => {
                    by_key.insert((resource_type.to_string(), id.clone()), (r, e));
                }
                Effect::Put {
                    id: None, token, ..
                } => {
                    by_token.insert(token.as_str(), (r, e));
                }
            }
        }
    }
    let made_by = |effect: &Effect, resource_type: &str, row: &StoredRow| match effect {
        Effect::Delete { .. } => row.deleted,
        Effect::Put {
            resource_type: t,
            token,
            content,
            ..
        } => {
            let parsed: Value = serde_json::from_str(&row.resource).unwrap_or(Value::Null);
            *t == resource_type
                && !row.deleted
                && token_of(&parsed) == Some(token.as_str())
                && content.as_ref().is_none_or(|c| same_content(&parsed, c))
        }
    };
    let mut landed: HashSet<(usize, usize)> = HashSet::new();
    for ((t, id), versions) in &stored {
        let acked = ledger.acked.get(&(t.clone(), id.clone()));
        let newest_acked = acked
            .and_then(|a| a.keys().next_back().copied())
            .unwrap_or(0);
        for (v, rows) in versions {
            if acked.is_some_and(|a| a.contains_key(v)) {
                continue;
            }
            let row = &rows[0];
            let parsed: Value = serde_json::from_str(&row.resource).unwrap_or(Value::Null);
            let origin = match by_key.get(&(t.clone(), id.clone())) {
                Some(&(r, e)) if *v == newest_acked + 1 => Some((r, e)),
                Some(_) => None,
                // A resource the ledger does not know: a create whose answer never came.
                None if acked.is_none() && *v == 1 => {
                    token_of(&parsed).and_then(|token| by_token.get(token).copied())
                }
                None => None,
            };
            match origin {
                Some((r, e)) if made_by(&ledger.unacked[r].effects[e], t.as_str(), row) => {
                    if !landed.insert((r, e)) {
                        report.duplicated += 1;
                        problems.push(format!(
                            "{t}/{id} v{v}: an unacknowledged write landed twice"
                        ));
                    }
                }
                _ => {
                    report.out_of_place += 1;
                    problems.push(format!(
                        "{t}/{id} v{v} was never acknowledged and is not the next version an \
                         unacknowledged write would have made: {} (deleted: {})",
                        row.resource, row.deleted
                    ));
                }
            }
        }
    }
    // One request is one WAL record: it lands whole or not at all.
    for (r, u) in ledger.unacked.iter().enumerate() {
        let n = (0..u.effects.len())
            .filter(|e| landed.contains(&(r, *e)))
            .count();
        if n > 0 {
            report.landed_requests += 1;
        }
        if n > 0 && n < u.effects.len() {
            problems.push(format!(
                "an unacknowledged {} landed in part: {n} of {:?}",
                u.kind, u.effects
            ));
        }
    }
    report
}
