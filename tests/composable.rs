//! `Config::build()` hands out the parts without installing anything: a
//! service stacks the tracing layer with layers of its own, and two
//! telemetries live side by side in one process.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Body, routing::get};
use glimpse_obs::{Config, Telemetry, testing::SharedBuffer};
use http::Request;
use serde_json::Value;
use tower::ServiceExt;
use tracing_subscriber::{Layer, layer::SubscriberExt};

/// A team's own layer: remembers the message of every event it sees.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Seen {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Msg<'a>(&'a mut Vec<String>);
        impl tracing::field::Visit for Msg<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0.push(format!("{v:?}"));
                }
            }
        }
        event.record(&mut Msg(&mut self.0.lock().unwrap()));
    }
}

fn telemetry(service: &str, logs: &SharedBuffer) -> Telemetry {
    Config::default()
        .service(service)
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(logs.clone())
        .build()
        .unwrap()
}

fn lines(buf: &SharedBuffer) -> Vec<Value> {
    buf.contents()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn app(layer: glimpse_obs::ObsLayer) -> Router {
    Router::new()
        .route(
            "/matches/{id}",
            get(|| async {
                glimpse_obs::record_user_id("user-7");
                tracing::info!("match viewed");
                "a match"
            }),
        )
        .layer(layer)
}

async fn get_path(app: &Router, path: &str) {
    let resp = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn a_layer_of_our_own_beside_tracing_layer_sees_the_handlers_event_and_lines_keep_request_ids() {
    let logs = SharedBuffer::new();
    let telemetry = telemetry("composed", &logs);
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry()
        .with(telemetry.tracing_layer())
        .with(seen.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(get_path(&app(glimpse_obs::layer()), "/matches/1"));
    });
    assert!(telemetry.flush(Duration::from_secs(5)));

    assert!(
        seen.0.lock().unwrap().iter().any(|m| m == "match viewed"),
        "our layer saw: {:?}",
        seen.0.lock().unwrap()
    );
    let lines = lines(&logs);
    let event = lines
        .iter()
        .find(|l| l["message"] == "match viewed")
        .expect("the handler's JSON line");
    assert_eq!(event["service"], "composed");
    assert_eq!(event["userId"], "user-7");
    assert_eq!(event["requestId"].as_str().unwrap().len(), 36);
    assert_eq!(event["traceId"].as_str().unwrap().len(), 32);
    let access = lines
        .iter()
        .find(|l| l["message"] == "request completed")
        .expect("the access line");
    assert_eq!(access["route"], "/matches/{id}");
    assert_eq!(access["requestId"], event["requestId"]);
    assert_eq!(access["traceId"], event["traceId"]);
    assert_eq!(access["userId"], "user-7");
}

#[test]
fn two_telemetries_in_one_process_write_lines_and_metrics_under_their_own_names() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut outputs = Vec::new();
    for name in ["payment", "chat"] {
        let logs = SharedBuffer::new();
        let telemetry = telemetry(name, &logs);
        let subscriber = tracing_subscriber::registry().with(telemetry.tracing_layer());
        let recorder = telemetry.recorder();
        let app = app(telemetry.http_layer());
        tracing::subscriber::with_default(subscriber, || {
            metrics::with_local_recorder(&recorder, || {
                rt.block_on(get_path(&app, "/matches/2"));
                metrics::counter!("team_jobs_total").increment(1);
            });
        });
        assert!(telemetry.flush(Duration::from_secs(5)));
        outputs.push((name, logs, telemetry.render_metrics()));
    }
    for (name, logs, metrics) in &outputs {
        let lines = lines(logs);
        assert!(!lines.is_empty());
        assert!(
            lines.iter().all(|l| l["service"] == *name),
            "{name}: {lines:?}"
        );
        let label = format!("service=\"{name}\"");
        let series = metrics
            .lines()
            .find(|l| {
                l.starts_with("http_server_request_duration_seconds_count")
                    && l.contains("route=\"/matches/{id}\"")
            })
            .unwrap_or_else(|| panic!("{name}: no HTTP series in\n{metrics}"));
        assert!(series.contains(&label), "{series}");
        assert!(series.ends_with(" 1"), "one request each: {series}");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("team_jobs_total{") && l.contains(&label)),
            "{metrics}"
        );
        let other = if *name == "payment" {
            "chat"
        } else {
            "payment"
        };
        assert!(
            !metrics.contains(&format!("service=\"{other}\"")),
            "{metrics}"
        );
    }
}

#[test]
fn dropping_a_composed_telemetry_flushes_its_lines() {
    let logs = SharedBuffer::new();
    let telemetry = telemetry("flush-on-drop", &logs);
    let subscriber = tracing_subscriber::registry().with(telemetry.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..100 {
            tracing::info!(i, "queued line");
        }
    });
    drop(telemetry);
    let lines = lines(&logs);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"] == "queued line")
            .count(),
        100
    );
}
