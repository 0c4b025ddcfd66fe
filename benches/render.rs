//! Scrape render cost of 1,000 histogram series
//! (`http_server_request_duration_seconds`, 100 routes × 10 statuses, each
//! with a sampled request's exemplar), in one run:
//! - today's Prometheus text (`render_metrics`);
//! - the OpenMetrics text with exemplars (`render_openmetrics`): the same
//!   text transformed, exemplars attached to bucket lines;
//! - metrics-exporter-prometheus's own `render()` of the same 1,000 series
//!   (same names, labels and buckets) on a bare recorder: the floor.
//!
//! `cargo bench --bench render`; results in `docs/performance.md`.

use std::{hint::black_box, time::Duration};

use axum::{Router, body::Body, extract::Path, http::StatusCode, routing::get};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tower::ServiceExt;

const ROUTES: usize = 100;
const STATUSES: [u16; 10] = [200, 201, 202, 203, 206, 400, 401, 403, 404, 500];

async fn answer(Path(status): Path<u16>) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

fn render(c: &mut Criterion) {
    let obs = glimpse_obs::Config::default()
        .service("bench")
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(std::io::sink())
        .init()
        .expect("init");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut app = Router::new();
    for r in 0..ROUTES {
        app = app.route(&format!("/r{r}/{{status}}"), get(answer));
    }
    let app = app.layer(glimpse_obs::layer());
    // The same series on a bare metrics-exporter-prometheus recorder.
    let bare = PrometheusBuilder::new()
        .add_global_label("service", "bench")
        .add_global_label("env", "development")
        .set_buckets_for_metric(
            Matcher::Full("http_server_request_duration_seconds".into()),
            glimpse_obs::metrics::HTTP_BUCKETS,
        )
        .expect("buckets")
        .build_recorder();
    let bare_handle = bare.handle();
    rt.block_on(async {
        for r in 0..ROUTES {
            for status in STATUSES {
                let req = Request::get(format!("/r{r}/{status}"))
                    .body(Body::empty())
                    .expect("request");
                let _ = app.clone().oneshot(req).await;
                metrics::with_local_recorder(&bare, || {
                    metrics::histogram!("http_server_request_duration_seconds",
                        "method" => "GET", "route" => format!("/r{r}/{{status}}"),
                        "status" => status.to_string())
                    .record(0.0004);
                });
            }
        }
    });
    let om = obs.render_openmetrics();
    let exemplars = om.matches(" # {trace_id=").count();
    assert!(
        exemplars >= ROUTES * STATUSES.len(),
        "{exemplars} exemplars"
    );
    eprintln!(
        "render: {} bytes classic, {} bytes OpenMetrics, {exemplars} exemplars, {} bytes bare",
        obs.render_metrics().len(),
        om.len(),
        bare_handle.render().len()
    );

    let mut g = c.benchmark_group("render_1000_histograms");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    g.bench_function("metrics-exporter-prometheus render()", |b| {
        b.iter(|| black_box(bare_handle.render()))
    });
    g.bench_function("glimpse_obs Prometheus text", |b| {
        b.iter(|| black_box(obs.render_metrics()))
    });
    g.bench_function("glimpse_obs OpenMetrics with exemplars", |b| {
        b.iter(|| black_box(obs.render_openmetrics()))
    });
    g.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
