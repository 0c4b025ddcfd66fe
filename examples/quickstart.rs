//! The README's quickstart: a production-ready `main` with graceful
//! shutdown. On SIGTERM (or Ctrl-C) readiness answers 503 through the drain
//! delay (`GLIMPSE_SHUTDOWN_DRAIN_MS`), in-flight requests finish, then logs
//! and spans are flushed within the shutdown timeout; a collector that does
//! not answer in time is reported as a WARN line, and the exit code stays 0.
//!
//! `cargo run --example quickstart`, then `curl localhost:3000/matches/1`.
//! `GLIMPSE_ADDR` changes the listening address (default `127.0.0.1:3000`).

use axum::{Router, routing::get};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let obs = glimpse_obs::Config::from_env()?
        .default_service("matches")
        .init()?;
    let health = obs.health(); // `/health/live`, `/health/ready`, the drain
    let app: Router = Router::new()
        .route("/matches/{id}", get(|| async { "a match" }))
        .merge(health.router())
        // Inside `layer()`: what needs the request's IDs (auth that calls
        // `record_user_id`). Outside it: what should not be measured.
        .layer(glimpse_obs::layer());
    let addr = std::env::var("GLIMPSE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(health.shutdown_signal())
        .await?;
    tracing::info!("shut down cleanly");
    // Flushes lines and spans, bounded in time. What could not be flushed
    // (a stuck collector) was reported as a WARN line already: not a reason
    // to fail the exit.
    let _ = obs.shutdown();
    Ok(())
}
