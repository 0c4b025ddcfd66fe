//! Not a Criterion benchmark: a driver for instruction-level profiling of the
//! `request_cpu` stacks of `benches/layer.rs` (same router, request, and
//! body read). It sends N requests through one stack and exits, so that
//! `valgrind --tool=callgrind` counts what they cost, independent of the
//! machine's load (docs/performance.md, "Second session"):
//!
//! ```sh
//! cargo bench --bench request_profile --no-run
//! B=$(ls -t target/release/deps/request_profile-* | grep -v '\.d$' | head -1)
//! for n in 1000 3000; do
//!   valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes \
//!     --callgrind-out-file=cg.ours.$n $B ours $n
//! done   # per request: (total at 3000 - total at 1000) / 2000
//! ```
//!
//! Stacks: `bare`, `ours` (`glimpse_obs::layer()`), `ours_nolog` (the same
//! with the route's access lines sampled out), `anchor` (the anchor stack of
//! `request_cpu`); `traced_off` and `traced_on`, the `tracing` group's
//! `off_ids_only` and `on_sampled_exporting_*` children (OTLP settings from
//! the environment, e.g. `OTEL_EXPORTER_OTLP_ENDPOINT` and
//! `OTEL_EXPORTER_OTLP_PROTOCOL`; the span queue flushed at the end). `FINAL=1` finalizes the router with `with_state(())`, as
//! `axum::serve` does.
use axum::{Router, body::Body, extract::Path, routing::get};
use axum_prometheus::BaseMetricLayer;
use http::Request;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer},
};
use tracing::{Dispatch, Level, dispatcher};

async fn handler(Path(id): Path<u64>) -> String {
    format!("user {id}")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!(
            "usage: request_profile bare|ours|ours_nolog|anchor|traced_off|traced_on <requests>"
        );
        return;
    };
    let traced = mode.starts_with("traced_");
    let _guard = if traced {
        // As the `tracing` group's children: the OTLP settings from the
        // environment, every request sampled.
        let config = glimpse_obs::Config::from_env()
            .expect("config")
            .sampler(glimpse_obs::Sampler::AlwaysOn);
        if mode == "traced_on" {
            config
        } else {
            config.otlp_endpoint(None)
        }
    } else {
        glimpse_obs::Config::default()
    };
    let _guard = _guard
        .service("bench")
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(std::io::sink());
    let _guard = if mode == "ours_nolog" {
        _guard.log_sample("/users/{id}", 0.0).unwrap()
    } else {
        _guard
    };
    let _guard = _guard.init().expect("init");
    let ours_dispatch = dispatcher::get_default(Clone::clone);
    let anchor_dispatch = Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::sink)
            .finish(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare: Router = Router::new().route("/users/{id}", get(handler));
    let (app, dispatch) = match mode.as_str() {
        "bare" => (bare, Dispatch::none()),
        "ours" | "ours_nolog" | "traced_off" | "traced_on" => {
            (bare.layer(glimpse_obs::layer()), ours_dispatch)
        }
        "anchor" => (
            bare.layer(
                ServiceBuilder::new()
                    .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                    .layer(
                        TraceLayer::new_for_http()
                            .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                            .on_response(DefaultOnResponse::new().level(Level::INFO)),
                    )
                    .layer(PropagateRequestIdLayer::x_request_id())
                    .layer(BaseMetricLayer::new()),
            ),
            anchor_dispatch,
        ),
        other => {
            eprintln!("unknown stack {other:?}");
            return;
        }
    };
    let app: Router = if std::env::var_os("FINAL").is_some() {
        app.with_state(())
    } else {
        app
    };
    dispatcher::with_default(&dispatch, || {
        for _ in 0..n {
            rt.block_on(async {
                let req = Request::get("/users/42")
                    .header("user-agent", "bench/1.0")
                    .body(Body::empty())
                    .unwrap();
                let resp = app.clone().oneshot(req).await.unwrap();
                assert!(resp.status().is_success());
                axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap();
            });
        }
    });
    // let the writer thread drain, and the span queue be exported
    std::thread::sleep(std::time::Duration::from_millis(200));
    if traced {
        assert!(_guard.flush(std::time::Duration::from_secs(30)), "flush");
    }
}
