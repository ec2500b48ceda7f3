//! The Postgres wire protocol: `medlake serve --pg-listen 127.0.0.1:5433`, for psql,
//! psycopg, pandas through SQLAlchemy, DBeaver (pgJDBC), Power BI (Npgsql) and other
//! Postgres clients. The same read-only SQL as `POST /sql`, over the same lake, in the
//! same process: a write acknowledged by the HTTP API is seen by the next query here.
//!
//! The protocol, the `pg_catalog` tables clients browse, and the mapping of Arrow types
//! to Postgres types come from datafusion-postgres (on pgwire) and its companions
//! datafusion-pg-catalog and arrow-pg. What medlake adds around them:
//!
//! - a session per connection (`session`): datafusion-postgres serves one
//!   `SessionContext` to every client, where one client's `SET` would change every
//!   other's; here each connection has its own context, settings and `pg_catalog`;
//! - `information_schema` with Postgres's columns (`information_schema`), which
//!   clients select by name, in place of DataFusion's;
//! - `pg_catalog` tables where datafusion-pg-catalog departs from Postgres in ways
//!   clients trip on (`pg_catalog`: `pg_type`'s function columns as oids, `pg_index`'s
//!   vectors as arrays, `pg_class`'s `relacl` and `reloptions`, `pg_user`);
//! - rewrites of the Postgres SQL that DataFusion would refuse (`compat`);
//! - read-only (`read_only`): writes are refused with SQLSTATE 25006 before planning;
//! - the settings clients read at connect time (`SHOW`, `current_setting()`,
//!   `ParameterStatus`), from one table per connection (`session`);
//! - queries run on the query runtime (`medlake_query::cpu`), as `/sql`'s do, not on
//!   the threads that answer HTTP requests;
//! - every statement a client sends is logged at debug under this module's target
//!   (`MEDLAKE_LOG=medlake::server::pgwire=debug`), the SQL as a JSON string and the
//!   parameters of the extended protocol beside it: the recorded client sessions under
//!   `tests/pg_sessions/` were taken from these lines.

mod compat;
mod information_schema;
mod pg_catalog;
mod read_only;
mod session;

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use async_trait::async_trait;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::portal::Portal;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, METADATA_APPLICATION_NAME,
    METADATA_USER, PgWireServerHandlers, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::extendedquery::{Bind, Parse};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::process_socket;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::Sink;
use medlake_query::QueryEngine;
use tokio::net::TcpListener;

use self::session::{SessionStatements, Settings};

/// The default address of `--pg-listen`: Postgres's port plus one, so that a local
/// Postgres and medlake do not collide.
pub const DEFAULT_PG_LISTEN: &str = "127.0.0.1:5433";

/// Bind the Postgres listener; the address it got is `local_addr()`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "could not listen for Postgres clients on {addr}; is another server using it? \
             Choose another with --pg-listen, or turn it off with --pg-listen off"
        )
    })
}

/// Serve Postgres clients on `listener` until the task is aborted.
pub fn spawn(listener: TcpListener, engine: QueryEngine) -> tokio::task::JoinHandle<()> {
    let shared = Arc::new(Shared {
        connections: Arc::new(ConnectionManager::new()),
        pids: RandomPidSecretKeyGenerator::default(),
        next_id: AtomicU64::new(1),
    });
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((socket, peer)) => {
                    let engine = engine.clone();
                    let shared = shared.clone();
                    tokio::spawn(
                        async move { serve_connection(socket, peer, engine, shared).await },
                    );
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!("could not accept a Postgres connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// What the connections share: the cancel keys, and connection numbers for the log.
struct Shared {
    connections: Arc<ConnectionManager>,
    pids: RandomPidSecretKeyGenerator,
    next_id: AtomicU64,
}

async fn serve_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    engine: QueryEngine,
    shared: Arc<Shared>,
) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(conn = id, %peer, "Postgres connection");
    let settings = Arc::new(Settings::new());
    let ctx = match session::context(&engine, &settings) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => {
            tracing::error!(conn = id, "could not set up a Postgres session: {e}");
            return;
        }
    };
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(read_only::ReadOnly),
        Arc::new(SessionStatements {
            settings: settings.clone(),
        }),
        Arc::new(compat::Compat),
        Arc::new(CursorStatementHook),
        Arc::new(TransactionStatementHook),
    ];
    let handlers = Arc::new(Connection {
        statements: Arc::new(Statements {
            id,
            inner: Arc::new(DfSessionService::new_with_hooks(ctx, hooks)),
        }),
        startup: Arc::new(Startup {
            settings,
            shared: shared.clone(),
        }),
        cancel: Arc::new(DefaultCancelHandler::new(shared.connections.clone())),
        id,
    });
    // The whole connection runs on the query runtime: its plans are planned and their
    // rows encoded as they are sent, which is CPU work that must not hold up the
    // threads answering HTTP requests.
    match engine.run(process_socket(socket, None, handlers)).await {
        Ok(Ok(())) => tracing::debug!(conn = id, "Postgres connection closed"),
        Ok(Err(e)) => tracing::debug!(conn = id, "Postgres connection ended: {e}"),
        Err(e) => tracing::error!(conn = id, "Postgres connection failed: {e}"),
    }
}

/// One connection's handlers.
struct Connection {
    statements: Arc<Statements>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
    id: u64,
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.statements.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.statements.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors { id: self.id })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Errors go to the client; the log keeps them at debug, beside the statement.
struct LogErrors {
    id: u64,
}

impl ErrorHandler for LogErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        tracing::debug!(conn = self.id, "answered with an error: {error}");
    }
}

/// No authentication (the listener is for trusted networks, as `/sql` is), and the
/// startup parameters from the connection's [`Settings`].
struct Startup {
    settings: Arc<Settings>,
    shared: Arc<Shared>,
}

impl ServerParameterProvider for Startup {
    fn server_parameters<C>(&self, _client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        Some(self.settings.reported().into_iter().collect())
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let user = client
                .metadata()
                .get(METADATA_USER)
                .cloned()
                .unwrap_or_default();
            let app = client
                .metadata()
                .get(METADATA_APPLICATION_NAME)
                .cloned()
                .unwrap_or_default();
            self.settings.seed_client(&user, &app);
            let (pid, secret) = self.shared.pids.generate(client);
            client.set_pid_and_secret_key(pid, secret.clone());
            let (handle, guard) = self.shared.connections.register(pid, secret);
            client.session_extensions().insert(handle);
            client.session_extensions().insert(guard);
            finish_authentication(client, self).await?;
        }
        Ok(())
    }
}

/// datafusion-postgres's statement handling, with every statement logged first.
struct Statements {
    id: u64,
    inner: Arc<DfSessionService>,
}

fn json(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[async_trait]
impl SimpleQueryHandler for Statements {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        tracing::debug!(conn = self.id, protocol = "simple", sql = %json(query), "statement");
        SimpleQueryHandler::do_query(self.inner.as_ref(), client, query).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for Statements {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.inner.query_parser()
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        tracing::debug!(
            conn = self.id,
            protocol = "parse",
            name = %json(message.name.as_deref().unwrap_or("")),
            types = ?message.type_oids,
            sql = %json(&message.query),
            "statement"
        );
        self.inner.on_parse(client, message).await
    }

    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                conn = self.id,
                protocol = "bind",
                name = %json(message.statement_name.as_deref().unwrap_or("")),
                params = %bind_parameters(&message),
                "statement"
            );
        }
        self.inner.on_bind(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        ExtendedQueryHandler::do_query(self.inner.as_ref(), client, portal, max_rows).await
    }
}

/// A Bind's parameters as JSON: text ones as strings, binary ones as `{"binary": hex}`,
/// NULL as null.
fn bind_parameters(message: &Bind) -> String {
    let format_of = |i: usize| match message.parameter_format_codes.as_slice() {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    };
    let values: Vec<serde_json::Value> = message
        .parameters
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            None => serde_json::Value::Null,
            Some(bytes) if format_of(i) == 0 => {
                serde_json::Value::from(String::from_utf8_lossy(bytes).into_owned())
            }
            Some(bytes) => {
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                serde_json::json!({ "binary": hex })
            }
        })
        .collect();
    serde_json::Value::from(values).to_string()
}
