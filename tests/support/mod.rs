//! Support for the OTLP tests: receivers for spans and logs (gRPC and HTTP),
//! minimal export requests, the Python peers, and the axum application the
//! traced requests go through.
#![allow(dead_code)]

pub mod otlp_bodies;
pub mod otlp_logs_receiver;
pub mod otlp_metrics_receiver;
pub mod otlp_receiver;
pub mod peers;
pub mod trace_app;

/// A configuration read from `pairs` alone (the process environment is
/// not consulted).
pub fn config(pairs: &[(&str, String)]) -> glimpse_obs::Config {
    let pairs = pairs.to_vec();
    glimpse_obs::Config::from_lookup(|name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
}
