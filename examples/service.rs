//! A small Glimpse API showing every feature of `glimpse_obs`; the ops
//! checks and dashboards run against it.
//!
//! ```text
//! cargo run --example service
//! curl -s localhost:3000/health
//! curl -s localhost:3000/health/ready   # {"status":"up","checks":[{"name":"sqlite",...}]}
//! curl -s -XPOST localhost:3000/users -H 'content-type: application/json' \
//!      -d '{"email":"a@example.com","password":"pw"}'
//! curl -s localhost:9464/metrics
//! ```
//!
//! Listens on `GLIMPSE_ADDR` (default `127.0.0.1:3000`), metrics on
//! `GLIMPSE_METRICS_ADDR` (default `0.0.0.0:9464`). The database is an
//! embedded SQLite file in the temp directory (`GLIMPSE_DATABASE_URL`
//! overrides it). `/health/live` and `/health/ready` (a SQLite check) are
//! served here and on the metrics port. SIGINT/SIGTERM: ready answers 503
//! at once while the service keeps serving for `GLIMPSE_SHUTDOWN_DRAIN_MS`
//! (1000 by default), then it stops accepting, finishes in-flight requests,
//! flushes logs and spans, and exits 0.
//!
//! Callers: `Authorization: Bearer <user id>.<signature>` is the user once
//! the signature checks out: the hex HMAC-SHA256 of the user ID under
//! `GLIMPSE_EXAMPLE_TOKEN_KEY` (a development default when unset). Print a
//! token with `cargo run --example service -- token user123`:
//!
//! ```text
//! curl -s -H "Authorization: Bearer $(cargo run -q --example service -- token user123)" \
//!      localhost:3000/users/1
//! ```
//!
//! A token that does not verify counts as an authentication failure and
//! names nobody: the user is recorded (`userId`, `enduser.id`) only after
//! the check, never as sent. IDs starting with `admin` are support staff,
//! whose profile look-ups count as admin actions. `X-Api-Key: <key
//! id>.<secret>` counts the key by its ID.
//!
//! `POST /payments` asks a stand-in payment provider (this service's own
//! `/health`) through `glimpse_obs::client::Middleware`, so the outbound-call
//! metric, span and "External calls" panels have data.

use std::{
    collections::HashMap,
    net::SocketAddr,
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{
        Path, Query, Request, State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use glimpse_obs::{audit, business, cache, db, security, ws};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use sqlx::{
    Row, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};
use tracing::Instrument;

/// The card number the payment provider always declines.
const DECLINED_CARD: &str = "4000000000000002";
/// Longest sleep `/slow` accepts.
const MAX_SLOW: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct App {
    db: SqlitePool,
    /// A tiny read-through cache of user JSON, to show the cache metrics.
    users: Arc<Mutex<HashMap<i64, serde_json::Value>>>,
    /// Outbound calls, traced and timed by glimpse_obs.
    provider: reqwest_middleware::ClientWithMiddleware,
    /// The stand-in payment provider's URL.
    provider_url: Arc<str>,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("token") {
        let user = args.next().ok_or("usage: service token <user id>")?;
        println!("{}", token_for(&user)?);
        return Ok(());
    }
    let obs = glimpse_obs::Config::from_env()?
        .version(env!("CARGO_PKG_VERSION"))
        .init()?;

    let addr: SocketAddr = match std::env::var("GLIMPSE_ADDR") {
        Ok(v) => v.parse().map_err(|_| {
            format!("invalid value {v:?} for environment variable GLIMPSE_ADDR: expected host:port")
        })?,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 3000)),
    };
    let db = open_database().await?;
    let _pool_monitor = db::monitor_pool("main", db.clone(), Duration::from_secs(1));
    // Readiness: the database answers a ping within 500 ms.
    let health = obs.health().check(
        "sqlite",
        Duration::from_millis(500),
        glimpse_obs::health::sqlx_pool(db.clone()),
    );
    let state = App {
        db,
        users: Arc::default(),
        provider: reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(glimpse_obs::client::Middleware::default())
            .build(),
        provider_url: format!("http://{addr}/health").into(),
    };

    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/users", post(create_user))
        .route("/users/{id}", get(get_user))
        .route("/matches", post(create_match))
        .route("/messages", post(send_message))
        .route("/payments", post(create_payment))
        .route("/slow", get(slow))
        .route("/error", get(fail))
        .route("/ws/chat", get(chat))
        .merge(health.router())
        .with_state(state)
        .layer(middleware::from_fn(bearer_user))
        .layer(glimpse_obs::layer());

    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr}: {e} (set GLIMPSE_ADDR to a free address)")
    })?;
    let metrics_addr = obs
        .metrics_addr()
        .map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(%addr, %metrics_addr, "listening");
    axum::serve(listener, app)
        // SIGINT/SIGTERM, then the drain: ready answers 503 meanwhile.
        .with_graceful_shutdown(health.shutdown_signal())
        .await?;
    tracing::info!("shut down cleanly");
    match obs.shutdown() {
        // A stopped service exits 0 (orchestrators read anything else as a
        // crash); what could not be flushed in time is said on stderr.
        Err(e @ glimpse_obs::Error::ShutdownTimeout(_)) => eprintln!("warning: {e}"),
        other => other?,
    }
    Ok(())
}

async fn open_database() -> Result<SqlitePool, Box<dyn std::error::Error>> {
    let url = std::env::var("GLIMPSE_DATABASE_URL").unwrap_or_else(|_| {
        let file = std::env::temp_dir().join(format!("glimpse-example-{}.db", std::process::id()));
        format!("sqlite://{}", file.display())
    });
    let options = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(5)
        .connect_with(options)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS matches (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, other_id TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, match_id TEXT NOT NULL, body TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS payments (id INTEGER PRIMARY KEY, amount_minor INTEGER NOT NULL, currency TEXT NOT NULL, status TEXT NOT NULL);",
    )
    .execute(&pool)
    .await?;
    Ok(pool)
}

/// The key tokens are signed with: `GLIMPSE_EXAMPLE_TOKEN_KEY`, or a
/// development default (a real service loads a secret, and fails without it).
fn token_key() -> Vec<u8> {
    std::env::var("GLIMPSE_EXAMPLE_TOKEN_KEY")
        .unwrap_or_else(|_| "glimpse-example-development-key".to_owned())
        .into_bytes()
}

fn token_mac() -> Result<Hmac<Sha256>, String> {
    Hmac::<Sha256>::new_from_slice(&token_key()).map_err(|e| format!("token key: {e}"))
}

/// `<user>.<hex HMAC-SHA256 of user>`: the bearer token of `user`.
fn token_for(user: &str) -> Result<String, String> {
    let mut mac = token_mac()?;
    mac.update(user.as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("{user}.{sig}"))
}

/// The user a bearer token names, if its signature verifies (in constant
/// time, by the MAC's own comparison).
fn verified_user(token: &str) -> Option<&str> {
    let (user, sig) = token.rsplit_once('.')?;
    if user.is_empty() || user.len() > 64 || sig.len() != 64 {
        return None;
    }
    let sig: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(sig.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let mut mac = token_mac().ok()?;
    mac.update(user.as_bytes());
    mac.verify_slice(&sig).ok().map(|()| user)
}

/// `Authorization: Bearer <token>` records the user it names for every
/// later line, once its signature verifies; users whose ID starts with
/// `admin` are administrators. `X-Api-Key: <key id>.<secret>` counts the
/// key's usage by its ID (never the secret).
async fn bearer_user(req: Request, next: Next) -> Response {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token.map(verified_user) {
            // Only a verified identity is recorded: `userId` lands in
            // 7-year payment audit lines.
            Some(Some(user)) => {
                glimpse_obs::record_user_id(user);
            }
            Some(None) => security::auth_failed("invalid_token"),
            None => security::auth_failed("malformed_authorization"),
        }
    }
    if let Some(value) = req.headers().get("x-api-key") {
        match value.to_str().ok().and_then(|v| v.split_once('.')) {
            Some((key_id, secret)) if !key_id.is_empty() && !secret.is_empty() => {
                security::api_key_used(key_id);
            }
            _ => security::auth_failed("malformed_api_key"),
        }
    }
    next.run(req).await
}

fn is_admin(user: Option<&str>) -> bool {
    user.is_some_and(|u| u.starts_with("admin"))
}

#[derive(Deserialize)]
struct NewUser {
    email: String,
    password: String,
}

async fn create_user(State(app): State<App>, Json(body): Json<NewUser>) -> Response {
    if !body.email.contains('@') || body.password.is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "email and password required"})),
        )
            .into_response();
    }
    // Not a real password hash: the example only needs something stored.
    let hash = format!(
        "{:x}",
        body.password
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64)
                .wrapping_mul(0x100000001b3))
    );
    let inserted = db::query(
        "insert_user",
        sqlx::query("INSERT INTO users (email, password_hash) VALUES (?, ?)")
            .bind(&body.email)
            .bind(&hash)
            .execute(&app.db),
    )
    .await;
    match inserted {
        Ok(done) => {
            let id = done.last_insert_rowid();
            business::user_registered("email");
            business::conversion("signup", "registered");
            tracing::info!(user_id = id, log_type = "user_activity", "user registered");
            (StatusCode::CREATED, Json(json!({"id": id.to_string()}))).into_response()
        }
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => (
            StatusCode::CONFLICT,
            Json(json!({"error": "email already registered"})),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn get_user(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such user"})),
        )
            .into_response();
    };
    let actor = glimpse_obs::current_user_id();
    if is_admin(actor.as_deref()) {
        // Support staff looking a member up: an admin action.
        security::admin_action("user.lookup");
        audit::admin_action(
            actor.as_deref().unwrap_or_default(),
            "user.lookup",
            &format!("user:{id}"),
        );
    }
    if let Some(user) = app.users.lock().map(|c| c.get(&id).cloned()).ok().flatten() {
        cache::hit("users");
        return Json(user).into_response();
    }
    cache::miss("users");
    let row = db::query(
        "get_user",
        sqlx::query("SELECT id, email FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&app.db),
    )
    .await;
    match row {
        Ok(Some(row)) => {
            let user = json!({"id": row.get::<i64, _>("id").to_string(), "email": row.get::<String, _>("email")});
            if let Ok(mut c) = app.users.lock() {
                c.insert(id, user.clone());
            }
            let actor = glimpse_obs::current_user_id();
            let actor = actor.as_deref().unwrap_or("anonymous");
            audit::user_data_access(actor, &format!("user:{id}"), "read_profile");
            Json(user).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such user"})),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Deserialize)]
struct NewMatch {
    user_id: String,
    other_id: String,
}

async fn create_match(State(app): State<App>, Json(body): Json<NewMatch>) -> Response {
    let res = db::query(
        "insert_match",
        sqlx::query("INSERT INTO matches (user_id, other_id) VALUES (?, ?)")
            .bind(&body.user_id)
            .bind(&body.other_id)
            .execute(&app.db),
    )
    .await;
    match res {
        Ok(done) => {
            business::match_created();
            business::feature_used("matching");
            business::conversion("signup", "first_match");
            tracing::info!(log_type = "user_activity", other_id = %body.other_id, "match created");
            (
                StatusCode::CREATED,
                Json(json!({"id": done.last_insert_rowid().to_string()})),
            )
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Deserialize)]
struct NewMessage {
    match_id: String,
    text: String,
}

async fn send_message(State(app): State<App>, Json(body): Json<NewMessage>) -> Response {
    let res = db::query(
        "insert_message",
        sqlx::query("INSERT INTO messages (match_id, body) VALUES (?, ?)")
            .bind(&body.match_id)
            .bind(&body.text)
            .execute(&app.db),
    )
    .await;
    match res {
        Ok(done) => {
            business::message_sent("text");
            business::feature_used("chat");
            (
                StatusCode::CREATED,
                Json(json!({"id": done.last_insert_rowid().to_string()})),
            )
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Deserialize)]
struct NewPayment {
    amount_minor: u64,
    currency: String,
    card: String,
}

async fn create_payment(State(app): State<App>, Json(body): Json<NewPayment>) -> Response {
    let currency = body.currency.to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "currency must be an ISO 4217 code"})),
        )
            .into_response();
    }
    let declined = body.card.replace(' ', "") == DECLINED_CARD;
    let status = if declined {
        business::PaymentStatus::Failed
    } else {
        business::PaymentStatus::Succeeded
    };
    let label = if declined { "failed" } else { "succeeded" };
    // The provider's answer does not change the outcome here: the call is
    // for its span, its `http_client_request_duration_seconds` and, when
    // it fails, its WARN line.
    let _ = app
        .provider
        .get(&*app.provider_url)
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    let res = db::query(
        "insert_payment",
        sqlx::query("INSERT INTO payments (amount_minor, currency, status) VALUES (?, ?, ?)")
            .bind(body.amount_minor as i64)
            .bind(&currency)
            .bind(label)
            .execute(&app.db),
    )
    .await;
    let Ok(done) = res else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let id = done.last_insert_rowid().to_string();
    business::payment_processed("example-psp", &currency, body.amount_minor, status);
    if !declined {
        business::conversion("premium", "paid");
    }
    audit::payment_transaction(
        glimpse_obs::current_user_id()
            .as_deref()
            .unwrap_or("anonymous"),
        &id,
        body.amount_minor,
        &currency,
        status,
    );
    let code = if declined {
        StatusCode::PAYMENT_REQUIRED
    } else {
        StatusCode::CREATED
    };
    (code, Json(json!({"id": id, "status": label}))).into_response()
}

#[derive(Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

async fn slow(Query(p): Query<SlowParams>) -> String {
    let wait = Duration::from_millis(p.ms.unwrap_or(1000)).min(MAX_SLOW);
    tokio::time::sleep(wait).await;
    format!("slept {} ms\n", wait.as_millis())
}

async fn fail() -> Response {
    tracing::error!(
        error.kind = "simulated",
        "simulated failure for alert testing"
    );
    (StatusCode::INTERNAL_SERVER_ERROR, "simulated failure\n").into_response()
}

async fn chat(upgrade: WebSocketUpgrade) -> Response {
    // The socket task runs after the response: hand it the request's span so
    // the `ws.connection` span and its lines join the request's trace.
    let span = tracing::Span::current();
    upgrade.on_upgrade(move |socket| echo(socket).instrument(span))
}

/// Echo every text or binary message; the `ws` helpers count them.
async fn echo(mut socket: WebSocket) {
    let conn = ws::Connection::open("chat");
    business::feature_used("realtime_chat");
    let mut close_code = None;
    while let Some(msg) = socket.recv().await {
        let started = Instant::now();
        let reply = match msg {
            Ok(Message::Text(t)) => Message::Text(t),
            Ok(Message::Binary(b)) => Message::Binary(b),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(frame)) => {
                close_code = Some(frame.map_or(1005, |f| f.code));
                break;
            }
            Err(_) => break,
        };
        conn.received();
        if socket.send(reply).await.is_err() {
            break;
        }
        conn.sent();
        conn.latency(started.elapsed());
    }
    match close_code {
        Some(code) => conn.close(Some(code)),
        None => drop(conn), // abrupt disconnect: counted as abnormal
    }
}
