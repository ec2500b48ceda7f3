//! Crash points: places where the kill -9 test (`tests/tests/durability.rs`) makes the
//! process die on purpose, in the windows a random `SIGKILL` rarely lands in.
//!
//! Armed by the environment, read once: `MEDLAKE_CRASH_AT=<point>[:<nth>]` aborts the
//! process the `nth` time (default the first) execution reaches `<point>`. Abort runs no
//! destructors and flushes nothing, like `kill -9`. Unarmed, a point costs one atomic
//! load. The points:
//!
//! - `flush-before-commit` (`lake/flush.rs`): a flush has rotated the WAL and committed
//!   nothing yet. Recovery must replay the rotated rows, and the segment the rotation
//!   opened (empty, or holding only what came after) must go on being written.
//! - `flush-after-commit` (`lake/flush.rs`): a flush has committed every table to Delta
//!   and has not yet deleted the closed WAL segments. Recovery must not apply those rows
//!   twice.
//! - `flush-before-views` (`lake/flush.rs`): a flush has committed a type's rows and its
//!   materialized views have not taken them yet. Recovery must bring the views up to
//!   the resource table exactly ([`crate::matview`]).
//! - `wal-mid-group` (`wal.rs`): the WAL writer has written the first half of a group's
//!   bytes and neither synced nor acknowledged any of them. Recovery must cut the torn
//!   record and may keep the whole records before it (written, never acknowledged).
//! - `compact-after-commit` (`maintenance.rs`): a compaction has committed its rewrite of
//!   a table and has neither checkpointed, vacuumed, placed the moved rows in the id
//!   index nor installed the new snapshot.
#![doc(hidden)]

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a crash point.
pub const ENV: &str = "MEDLAKE_CRASH_AT";

/// Every crash point there is.
pub const POINTS: &[&str] = &[
    "flush-before-commit",
    "flush-after-commit",
    "flush-before-views",
    "wal-mid-group",
    "compact-after-commit",
];

struct Armed {
    point: String,
    nth: u64,
    reached: AtomicU64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

fn armed() -> Option<&'static Armed> {
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (point, nth) = match spec.split_once(':') {
                Some((p, n)) => (p, n.trim().parse().unwrap_or(1)),
                None => (spec.as_str(), 1),
            };
            if !POINTS.contains(&point) {
                // A misspelt point would never fire and the test would not know why.
                tracing::warn!("{ENV}={spec}: no such crash point; known: {POINTS:?}");
            }
            Some(Armed {
                point: point.to_string(),
                nth: nth.max(1),
                reached: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Whether this pass over `point` is the one that must crash.
fn due(point: &str) -> bool {
    armed()
        .is_some_and(|a| a.point == point && a.reached.fetch_add(1, Ordering::SeqCst) + 1 == a.nth)
}

fn crash(point: &str) -> ! {
    tracing::error!("crash point {point} reached ({ENV}): aborting");
    std::process::abort()
}

/// Abort here if `point` is armed and due.
#[inline]
pub fn point(point: &str) {
    if due(point) {
        crash(point);
    }
}

/// Abort here if `point` is armed and due, after writing the first half of `bytes` to
/// `out`: a group of records torn partway, none of it synced.
#[inline]
pub fn torn_write(point: &str, out: &mut impl Write, bytes: &[u8]) {
    if !bytes.is_empty() && due(point) {
        let _ = out.write_all(&bytes[..bytes.len() / 2]);
        crash(point);
    }
}
