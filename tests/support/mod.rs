//! Support for the OTLP tests: receivers for spans and logs (gRPC and HTTP) and the
//! axum application the traced requests go through.
#![allow(dead_code)]

pub mod otlp_logs_receiver;
pub mod otlp_metrics_receiver;
pub mod otlp_receiver;
pub mod trace_app;
