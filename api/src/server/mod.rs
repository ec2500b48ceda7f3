//! The HTTP server: `/sql`, `/ingest`, `/features`, and the FHIR API under `/fhir`; beside it, in the
//! same process and on the same lake, Arrow Flight SQL (`flight`) and the Postgres wire
//! protocol (`pgwire`).

mod features;
mod fhir;
mod flight;
mod ingest;
pub mod pgwire;
mod sql;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::{get, post};
use medlake_lake::Lake;
use medlake_query::QueryEngine;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub lake: Lake,
    pub engine: QueryEngine,
    /// The FHIR base URL, e.g. `http://127.0.0.1:8080/fhir`.
    pub fhir_base: String,
    /// Held by conditional writes between their search and their write, so that two
    /// conditional creates of the same resource cannot both create it.
    pub conditional: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The Ballista cluster `POST /sql` runs on (`--sql-engine`), if not in-process.
    pub cluster: Option<crate::cluster::BallistaEngine>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/sql", post(sql::post_sql))
        .route("/ingest", post(ingest::post_ingest))
        .route("/features", post(features::post_features))
        .nest("/fhir", fhir::routes())
        .with_state(state)
}

async fn index(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "name": "medlake",
        "version": env!("CARGO_PKG_VERSION"),
        "fhir": s.fhir_base,
        "sql": "POST /sql with the query as text or {\"query\": ...}",
        "ingest": "POST /ingest with NDJSON, a Bundle or one resource",
        "features": "POST /features with a feature spec (TOML or JSON)",
        "workspace": s.lake.workspace_url().to_string(),
    }))
}

/// A future that ends at SIGINT (Ctrl-C) or SIGTERM; the handlers are installed when
/// this returns, not when the future is first polled.
fn stop_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("could not handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("could not handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// The server's background work.
pub struct Background {
    pub flush_interval: Duration,
    /// How often to compact small files; `None` for never.
    pub compact_interval: Option<Duration>,
    /// How often to look for Delta commits of other processes; `None` for never.
    pub refresh_interval: Option<Duration>,
}

/// A table is compacted once it has this many small files: a flush makes one per table
/// every few seconds while writes come in, and reads by id pay a footer per file.
const COMPACT_MIN_SMALL_FILES: usize = 16;

/// Files that compaction replaced stay this long, as `medlake optimize`'s default:
/// readers of an older snapshot (and time travel) keep working within it.
const COMPACT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Serve until SIGINT or SIGTERM, flushing the write buffer to Delta in the background,
/// and once more before it exits.
///
/// `pg`: where to serve Postgres clients, if at all; `flight_addr`: where Arrow Flight
/// SQL listens, if at all.
pub async fn serve(
    lake: Lake,
    addr: SocketAddr,
    pg: Option<SocketAddr>,
    flight_addr: Option<SocketAddr>,
    background: Background,
    sql_engine: crate::cluster::SqlEngine,
) -> Result<()> {
    let engine = QueryEngine::new(lake.clone())?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "could not listen on {addr}; is another server using it? Choose another with --listen"
        )
    })?;
    let pg_listener = match pg {
        Some(pg) => Some(pgwire::bind(pg).await?),
        None => None,
    };
    let local = listener.local_addr()?;
    let flight_listener = match flight_addr {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.with_context(|| {
            format!(
                "could not listen on {a} for Flight SQL; is another server using it? Choose \
                 another with --flight-listen, or turn it off with --flight-listen off"
            )
        })?),
        None => None,
    };
    let base = format!("http://{local}");
    let state = AppState {
        lake: lake.clone(),
        engine: engine.clone(),
        fhir_base: format!("{base}/fhir"),
        conditional: Default::default(),
        cluster: match &sql_engine {
            crate::cluster::SqlEngine::Local => None,
            crate::cluster::SqlEngine::Ballista { host, port } => Some(
                crate::cluster::BallistaEngine::new(lake.clone(), host, *port),
            ),
        },
    };
    // Take over SIGINT and SIGTERM before saying "listening": a signal that came between
    // the two would otherwise end the process without flushing (the default action).
    let stop = stop_signal()?;
    let flusher = lake.spawn_flusher(background.flush_interval, 100_000);
    let compactor = background
        .compact_interval
        .map(|every| lake.spawn_compactor(every, COMPACT_MIN_SMALL_FILES, COMPACT_RETENTION));
    let refresher = background
        .refresh_interval
        .map(|every| lake.spawn_refresher(every));
    println!(
        "medlake is serving the workspace at {}",
        lake.workspace_url()
    );
    println!("  FHIR base URL:  {base}/fhir");
    println!("  capabilities:   curl {base}/fhir/metadata");
    if let Some(t) = lake.resource_types().first() {
        println!(
            "  SQL:            curl -X POST {base}/sql -d 'SELECT id, last_updated FROM fhir.{} LIMIT 5'",
            t.to_ascii_lowercase()
        );
    } else {
        println!(
            "  SQL:            curl -X POST {base}/sql -d 'SELECT count(*) FROM fhir.patient'"
        );
    }
    println!("  load data:      curl -X POST {base}/ingest --data-binary @Patient.ndjson");
    if state.cluster.is_some() {
        println!(
            "  POST /sql runs on the Ballista cluster at {sql_engine} (committed data only; \
             Flight SQL and Postgres run here)"
        );
    }
    let pg_server = match pg_listener {
        Some(l) => {
            let pg_local = l.local_addr()?;
            println!(
                "  Postgres:       psql -h {} -p {} -c 'SELECT count(*) FROM fhir.patient'",
                pg_local.ip(),
                pg_local.port()
            );
            println!("postgres listening on {pg_local}");
            Some(pgwire::spawn(l, state.engine.clone()))
        }
        None => None,
    };
    let (flight_stop, flight_stopped) = tokio::sync::oneshot::channel::<()>();
    let flight_task = match flight_listener {
        Some(l) => {
            println!("  Flight SQL:     grpc://{}", l.local_addr()?);
            let stopped = async {
                let _ = flight_stopped.await;
            };
            Some(tokio::spawn(flight::serve(engine, l, stopped)))
        }
        None => None,
    };
    println!("listening on {local}");
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .context("the HTTP server stopped")?;
    let _ = flight_stop.send(());
    if let Some(mut task) = flight_task {
        // A client still reading a large answer would hold the shutdown up: it gets a
        // few seconds to finish before its stream is cut.
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!("the Flight SQL server failed: {e}"),
            Ok(Err(e)) => tracing::error!("the Flight SQL server failed: {e}"),
            Err(_) => {
                task.abort();
                tracing::warn!("Flight SQL streams were cut off at shutdown");
            }
        }
    }
    flusher.abort();
    for task in [compactor, refresher, pg_server].into_iter().flatten() {
        task.abort();
    }
    tracing::info!("shutting down: flushing the write buffer to Delta");
    lake.flush().await?;
    Ok(())
}
