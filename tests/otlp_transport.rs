//! The shared OTLP transport against real receivers: gRPC (tonic, the
//! collector's generated services) and HTTP (axum) each deliver the body to
//! the signal's standard path with the configured headers; gzip arrives
//! compressed and decodes to the body sent; an export to a black-holed
//! collector returns within its timeout; TLS with a self-signed CA works
//! through `OTEL_EXPORTER_OTLP_CERTIFICATE`; a gRPC status other than OK,
//! in the response headers or the trailers, or none at all, is an error
//! with the code and message (an HTTP status without one, with the code it
//! maps to), and a gzip answer to a gzip export (grpc-go's way) is success;
//! binary and reserved headers are refused for gRPC when the exporter is
//! built; the batcher delivers, counts what it drops and shuts down within
//! its bound.

mod support;

use std::{
    io::Read as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::OriginalUri, http::HeaderMap, routing::post};
use glimpse_obs::{__otlp_probe::Probe, Config};
use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
        logs_service_server::{LogsService, LogsServiceServer},
    },
    metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
};
use prost::Message as _;
use support::{
    config,
    otlp_bodies::{logs_body, metrics_body, traces_body},
    otlp_receiver::black_hole,
};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Got {
    /// `traces`, `metrics` or `logs` (gRPC service), or the HTTP path.
    what: String,
    headers: HeaderMap,
    /// The decoded request re-encoded (gRPC), or the raw body (HTTP).
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Store(Arc<Mutex<Vec<Got>>>);

impl Store {
    fn push(&self, got: Got) {
        self.0.lock().unwrap().push(got);
    }
    fn all(&self) -> Vec<Got> {
        self.0.lock().unwrap().clone()
    }
}

struct Grpc(Store);

fn got<T: prost::Message>(what: &str, req: tonic::Request<T>) -> Got {
    let headers = req.metadata().clone().into_headers();
    Got {
        what: what.to_owned(),
        headers,
        body: req.into_inner().encode_to_vec(),
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.push(got("traces", req));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.push(got("metrics", req));
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.push(got("logs", req));
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

fn grpc_router(store: &Store) -> tonic::service::Routes {
    let routes = tonic::service::Routes::new(
        TraceServiceServer::new(Grpc(store.clone())).accept_compressed(CompressionEncoding::Gzip),
    );
    routes
        .add_service(
            MetricsServiceServer::new(Grpc(store.clone()))
                .accept_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            LogsServiceServer::new(Grpc(store.clone()))
                .accept_compressed(CompressionEncoding::Gzip),
        )
}

/// OTLP/gRPC for the three signals on 127.0.0.1.
async fn grpc_receiver(store: &Store) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = grpc_router(store);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    addr
}

fn http_router(store: &Store) -> Router {
    let store = store.clone();
    let handler = move |OriginalUri(uri): OriginalUri, headers: HeaderMap, body: Bytes| {
        let store = store.clone();
        async move {
            store.push(Got {
                what: uri.path().to_owned(),
                headers,
                body: body.to_vec(),
            });
            ExportTraceServiceResponse::default().encode_to_vec()
        }
    };
    Router::new()
        .route("/v1/traces", post(handler.clone()))
        .route("/v1/metrics", post(handler.clone()))
        .route("/v1/logs", post(handler.clone()))
        .route("/custom/logs", post(handler))
}

/// OTLP/HTTP on 127.0.0.1 storing raw bodies and headers.
async fn http_receiver(store: &Store) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = http_router(store);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

fn span_names(body: &[u8]) -> Vec<String> {
    ExportTraceServiceRequest::decode(body)
        .unwrap()
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

fn header<'a>(got: &'a Got, name: &str) -> Option<&'a str> {
    got.headers.get(name).and_then(|v| v.to_str().ok())
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Export on a blocking thread (the probe waits for the export runtime).
async fn export(probe: Arc<Probe>, body: Vec<u8>) -> Result<(), glimpse_obs::Error> {
    tokio::task::spawn_blocking(move || probe.export(body))
        .await
        .unwrap()
}

/// The error of an export that must fail, as its text.
async fn export_error(config: &Config, signal: &str, body: Vec<u8>) -> String {
    export(probe(config, signal), body)
        .await
        .unwrap_err()
        .to_string()
}

fn probe(config: &Config, signal: &str) -> Arc<Probe> {
    Arc::new(Probe::new(config, signal).unwrap().expect("an endpoint"))
}

#[tokio::test]
async fn grpc_delivers_each_signal_to_its_service_with_the_headers() {
    let store = Store::default();
    let addr = grpc_receiver(&store).await;
    let config = config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=secret%20one,x-tenant=a".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            "x-tenant=logs".to_owned(),
        ),
    ]);
    export(probe(&config, "traces"), traces_body("grpc-span"))
        .await
        .unwrap();
    export(probe(&config, "metrics"), metrics_body("grpc_metric"))
        .await
        .unwrap();
    export(probe(&config, "logs"), logs_body("grpc-log"))
        .await
        .unwrap();
    let all = store.all();
    assert_eq!(all.len(), 3, "{all:?}");
    let traces = all.iter().find(|g| g.what == "traces").unwrap();
    assert_eq!(span_names(&traces.body), ["grpc-span"]);
    assert_eq!(header(traces, "api-key"), Some("secret one"));
    assert_eq!(header(traces, "x-tenant"), Some("a"));
    assert_eq!(header(traces, "grpc-encoding"), None, "not compressed");
    let metrics = all.iter().find(|g| g.what == "metrics").unwrap();
    let m = ExportMetricsServiceRequest::decode(&metrics.body[..]).unwrap();
    assert_eq!(
        m.resource_metrics[0].scope_metrics[0].metrics[0].name,
        "grpc_metric"
    );
    let logs = all.iter().find(|g| g.what == "logs").unwrap();
    let l = ExportLogsServiceRequest::decode(&logs.body[..]).unwrap();
    assert_eq!(
        l.resource_logs[0].scope_logs[0].log_records[0].severity_text,
        "grpc-log"
    );
    assert_eq!(
        header(logs, "x-tenant"),
        Some("logs"),
        "per-signal headers win"
    );
    assert_eq!(header(logs, "api-key"), None, "and replace the shared ones");
}

#[tokio::test]
async fn grpc_gzip_arrives_compressed_and_decodes() {
    let store = Store::default();
    let addr = grpc_receiver(&store).await;
    let config = config(&[
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("http://{addr}"),
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
    ]);
    export(probe(&config, "traces"), traces_body("zipped"))
        .await
        .unwrap();
    let all = store.all();
    assert_eq!(all.len(), 1);
    assert_eq!(header(&all[0], "grpc-encoding"), Some("gzip"));
    assert_eq!(span_names(&all[0].body), ["zipped"]);
}

#[tokio::test]
async fn http_posts_protobuf_to_each_signal_path_with_headers() {
    let store = Store::default();
    let addr = http_receiver(&store).await;
    let config = config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20t0k".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            format!("http://{addr}/custom/logs"),
        ),
    ]);
    let bodies = [
        ("traces", traces_body("http-span")),
        ("metrics", metrics_body("http_metric")),
        ("logs", logs_body("http-log")),
    ];
    for (signal, body) in &bodies {
        export(probe(&config, signal), body.clone()).await.unwrap();
    }
    let all = store.all();
    assert_eq!(all.len(), 3);
    for ((_, body), (got, path)) in
        bodies.iter().zip(
            all.iter()
                .zip(["/v1/traces", "/v1/metrics", "/custom/logs"]),
        )
    {
        assert_eq!(got.what, path, "the per-signal endpoint is used as written");
        assert_eq!(header(got, "content-type"), Some("application/x-protobuf"));
        assert_eq!(header(got, "authorization"), Some("Bearer t0k"));
        assert_eq!(header(got, "content-encoding"), None);
        assert_eq!(&got.body, body);
    }
}

#[tokio::test]
async fn http_gzip_arrives_compressed_and_decodes() {
    let store = Store::default();
    let addr = http_receiver(&store).await;
    let config = config(&[
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("http://{addr}/v1/metrics"),
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "http/protobuf".to_owned(),
        ),
        ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip".to_owned()),
    ]);
    let body = metrics_body(&"long_metric_name_".repeat(50));
    export(probe(&config, "metrics"), body.clone())
        .await
        .unwrap();
    let all = store.all();
    assert_eq!(all.len(), 1);
    assert_eq!(header(&all[0], "content-encoding"), Some("gzip"));
    assert_eq!(&all[0].body[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(all[0].body.len() < body.len() / 4, "compressed");
    assert_eq!(gunzip(&all[0].body), body);
}

#[tokio::test]
async fn an_http_error_status_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/v1/traces",
        post(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
    ]);
    let err = export_error(&config, "traces", traces_body("x")).await;
    assert!(err.contains("503") && err.contains("busy"), "{err}");
}

#[tokio::test]
async fn an_export_to_a_black_hole_returns_within_its_timeout() {
    let hole = black_hole();
    for protocol in ["grpc", "http/protobuf"] {
        let config = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{hole}")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300".to_owned()),
        ]);
        let started = Instant::now();
        let err = export_error(&config, "logs", logs_body("lost")).await;
        let took = started.elapsed();
        assert!(err.contains("timed out"), "{protocol}: {err}");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
            "{protocol}: {took:?}"
        );
    }
}

/// A CA, a certificate for `localhost` it signed, and the CA's PEM in a file.
struct Pki {
    ca_file: std::path::PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn pki(tag: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "glimpse test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("glimpse-otlp-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    Pki {
        ca_file,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

async fn grpc_tls_receiver(store: &Store, pki: &Pki) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let identity = tonic::transport::Identity::from_pem(&pki.cert_pem, &pki.key_pem);
    let routes = grpc_router(store);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    addr
}

async fn http_tls_receiver(store: &Store, pki: &Pki) -> SocketAddr {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs = CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let tls = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = http_router(store);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tls_with_a_self_signed_ca_from_otel_exporter_otlp_certificate() {
    let pki = pki("ok");
    let store = Store::default();
    let grpc = grpc_tls_receiver(&store, &pki).await;
    let http = http_tls_receiver(&store, &pki).await;
    let ca = pki.ca_file.to_str().unwrap().to_owned();
    for (endpoint, protocol, name) in [
        (
            format!("https://localhost:{}", grpc.port()),
            "grpc",
            "over-grpc-tls",
        ),
        (
            format!("https://localhost:{}", http.port()),
            "http/protobuf",
            "over-http-tls",
        ),
    ] {
        let with_ca = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.clone()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000".to_owned()),
        ]);
        export(probe(&with_ca, "traces"), traces_body(name))
            .await
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        // Without the CA the server's certificate is not trusted.
        let without = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000".to_owned()),
        ]);
        assert!(
            export(probe(&without, "traces"), traces_body("untrusted"))
                .await
                .is_err(),
            "{protocol} without the CA must fail"
        );
    }
    let names: Vec<String> = store
        .all()
        .iter()
        .flat_map(|g| span_names(&g.body))
        .collect();
    assert_eq!(names, ["over-grpc-tls", "over-http-tls"]);
    let _ = std::fs::remove_dir_all(pki.ca_file.parent().unwrap());
}

#[tokio::test]
async fn the_batcher_delivers_in_batches_and_flushes() {
    let store = Store::default();
    let addr = grpc_receiver(&store).await;
    let config = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))]);
    let batcher = Probe::new(&config, "traces").unwrap().unwrap().batcher(
        100,
        2,
        Duration::from_secs(3600),
        "probe_spans",
    );
    let batcher = Arc::new(batcher);
    for i in 0..5 {
        assert!(batcher.push(traces_body(&format!("s{i}"))));
    }
    let b = Arc::clone(&batcher);
    tokio::task::spawn_blocking(move || b.force_flush(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
    let all = store.all();
    let names: Vec<String> = all.iter().flat_map(|g| span_names(&g.body)).collect();
    assert_eq!(names, ["s0", "s1", "s2", "s3", "s4"]);
    assert!(
        all.len() >= 3,
        "at most two items per export: {}",
        all.len()
    );
    assert_eq!(batcher.dropped(), 0);
    let b = Arc::clone(&batcher);
    tokio::task::spawn_blocking(move || b.shutdown(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
    assert!(!batcher.push(traces_body("late")), "closed after shutdown");
    assert_eq!(batcher.dropped(), 1);
}

#[tokio::test]
async fn a_full_batch_is_sent_before_the_delay() {
    let store = Store::default();
    let addr = http_receiver(&store).await;
    let config = config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
    ]);
    let batcher = Probe::new(&config, "logs").unwrap().unwrap().batcher(
        100,
        3,
        Duration::from_secs(3600),
        "probe_logs",
    );
    for i in 0..3 {
        assert!(batcher.push(logs_body(&format!("l{i}"))));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.all().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = store.all();
    assert_eq!(all.len(), 1, "one full batch, long before the hour");
    let req = ExportLogsServiceRequest::decode(&all[0].body[..]).unwrap();
    assert_eq!(req.resource_logs.len(), 3);
}

#[tokio::test]
async fn a_black_holed_collector_drops_and_counts_and_shutdown_is_bounded() {
    let hole = black_hole();
    let config = config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{hole}")),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000".to_owned()),
    ]);
    let batcher = Probe::new(&config, "logs").unwrap().unwrap().batcher(
        4,
        2,
        Duration::from_millis(10),
        "probe_black_hole",
    );
    let started = Instant::now();
    let mut accepted = 0;
    for _ in 0..1000 {
        if batcher.push(logs_body("x")) {
            accepted += 1;
        }
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "push never waits: {:?}",
        started.elapsed()
    );
    assert!(accepted <= 4 + 2, "bounded queue: {accepted} accepted");
    assert!(batcher.dropped() >= 1000 - 6);
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let r = batcher.shutdown(Duration::from_millis(300));
        (r, batcher)
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(result.0, Err(glimpse_obs::Error::ShutdownTimeout(_))),
        "{:?}",
        result.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_tls_collector_with_the_same_headers_gzip_and_ca() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let pki = pki("spans");
    let store = Store::default();
    let grpc = grpc_tls_receiver(&store, &pki).await;
    let http = http_tls_receiver(&store, &pki).await;
    let ca = pki.ca_file.to_str().unwrap().to_owned();
    for (port, protocol, name) in [
        (grpc.port(), "grpc", "span-over-grpc-tls"),
        (http.port(), "http/protobuf", "span-over-http-tls"),
    ] {
        let telemetry = config(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("https://localhost:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca.clone()),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "x-tenant=t%201".to_owned(),
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
        ])
        .metrics_addr(None)
        .log_writer(std::io::sink())
        .build()
        .unwrap();
        let subscriber = tracing_subscriber::registry().with(telemetry.tracing_layer());
        tracing::subscriber::with_default(subscriber, || {
            let _span = tracing::info_span!("work", otel.name = name).entered();
        });
        let t = Arc::new(telemetry);
        let flushed = tokio::task::spawn_blocking({
            let t = Arc::clone(&t);
            move || t.flush(Duration::from_secs(10))
        })
        .await
        .unwrap();
        assert!(flushed, "{protocol}: spans flushed");
    }
    let all = store.all();
    let mut names = Vec::new();
    for got in &all {
        assert_eq!(header(got, "x-tenant"), Some("t 1"), "{got:?}");
        let body = if got.what == "traces" {
            assert_eq!(header(got, "grpc-encoding"), Some("gzip"));
            got.body.clone()
        } else {
            assert_eq!(got.what, "/v1/traces");
            assert_eq!(header(got, "content-encoding"), Some("gzip"));
            gunzip(&got.body)
        };
        names.extend(span_names(&body));
    }
    names.sort();
    assert_eq!(names, ["span-over-grpc-tls", "span-over-http-tls"]);
    let _ = std::fs::remove_dir_all(pki.ca_file.parent().unwrap());
}

/// Serve `routes` over gRPC (HTTP/2 without TLS) on 127.0.0.1.
async fn serve_grpc(routes: tonic::service::Routes) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    addr
}

/// A logs service that refuses every export.
struct Refuse;

#[tonic::async_trait]
impl LogsService for Refuse {
    async fn export(
        &self,
        _: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        Err(tonic::Status::resource_exhausted(
            "file pleine, réessayez: 100%",
        ))
    }
}

#[tokio::test]
async fn a_grpc_error_status_is_an_error_with_its_code_and_message() {
    let addr = serve_grpc(tonic::service::Routes::new(LogsServiceServer::new(Refuse))).await;
    let config = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))]);
    // tonic answers an error with the status in the response headers
    // (trailers-only), its message percent-encoded.
    let err = export_error(&config, "logs", logs_body("x")).await;
    assert!(
        err.contains("gRPC status ResourceExhausted: file pleine, réessayez: 100%"),
        "{err}"
    );
    // The same collector has no trace service: `Unimplemented`, as a
    // collector without a receiver for the signal answers.
    let err = export_error(&config, "traces", traces_body("x")).await;
    assert!(err.contains("gRPC status Unimplemented"), "{err}");
}

/// A response of `200 OK` carrying an empty gRPC message and then
/// `trailers` (a completed call's shape).
fn grpc_response(trailers: &[(&'static str, &'static str)]) -> axum::response::Response {
    let mut map = HeaderMap::new();
    for (k, v) in trailers {
        map.insert(*k, v.parse().unwrap());
    }
    let frames = vec![
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(&[0; 5]))),
        Ok(http_body::Frame::trailers(map)),
    ];
    axum::response::Response::builder()
        .header("content-type", "application/grpc")
        .body(axum::body::Body::new(http_body_util::StreamBody::new(
            futures_util::stream::iter(frames),
        )))
        .unwrap()
}

#[tokio::test]
async fn the_grpc_status_in_the_trailers_decides_the_outcome() {
    let app = Router::new()
        .route(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            post(|| async { grpc_response(&[("grpc-status", "0")]) }),
        )
        .route(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            post(|| async {
                // Details that are not base64: tonic's own status parser
                // panics on them; the exporter reads code and message only.
                grpc_response(&[
                    ("grpc-status", "14"),
                    ("grpc-message", "draining"),
                    ("grpc-status-details-bin", "%%% not base64"),
                ])
            }),
        )
        .route(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            post(|| async { grpc_response(&[]) }),
        );
    let addr = serve_grpc(tonic::service::Routes::from(app)).await;
    let config = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))]);
    export(probe(&config, "traces"), traces_body("x"))
        .await
        .expect("grpc-status 0 in the trailers is success");
    let err = export_error(&config, "logs", logs_body("x")).await;
    assert!(err.contains("gRPC status Unavailable: draining"), "{err}");
    let err = export_error(&config, "metrics", metrics_body("x")).await;
    assert!(
        err.contains("HTTP status 200 OK without a gRPC status"),
        "{err}"
    );
}

#[tokio::test]
async fn a_compressed_answer_to_a_compressed_export_is_success() {
    // grpc-go servers (the OpenTelemetry Collector's, Jaeger's) answer in
    // the compression the request used; tonic's client, without
    // `accept_compressed`, turned that answer into `Unimplemented`.
    let app = Router::new().route(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        post(|headers: HeaderMap| async move {
            assert_eq!(headers.get("grpc-encoding").unwrap(), "gzip");
            let mut zipped = Vec::new();
            flate2::write::GzEncoder::new(&mut zipped, flate2::Compression::fast())
                .finish()
                .unwrap();
            let mut message = vec![1];
            message.extend_from_slice(&(zipped.len() as u32).to_be_bytes());
            message.extend_from_slice(&zipped);
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let frames = vec![
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(message))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            axum::response::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-encoding", "gzip")
                .body(axum::body::Body::new(http_body_util::StreamBody::new(
                    futures_util::stream::iter(frames),
                )))
                .unwrap()
        }),
    );
    let addr = serve_grpc(tonic::service::Routes::from(app)).await;
    let config = config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
    ]);
    export(probe(&config, "logs"), logs_body("zipped"))
        .await
        .expect("a gzip answer with grpc-status 0 is success");
}

#[tokio::test]
async fn an_http_status_without_a_grpc_status_fails_with_the_code_it_maps_to() {
    let app = Router::new()
        .route(
            // A trailers-only success: `grpc-status: 0` in the headers.
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            post(|| async {
                axum::response::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "0")
                    .body(axum::body::Body::empty())
                    .unwrap()
            }),
        )
        .route(
            // A proxy in front of a collector that is down.
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            post(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "no upstream") }),
        )
        .route(
            // A status that is not a number, and a message with a line
            // break that must not reach the error as one.
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            post(|| async {
                axum::response::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "fourteen")
                    .header("grpc-message", "line one%0Aforged line")
                    .body(axum::body::Body::empty())
                    .unwrap()
            }),
        );
    let addr = serve_grpc(tonic::service::Routes::from(app)).await;
    let config = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))]);
    export(probe(&config, "traces"), traces_body("x"))
        .await
        .expect("grpc-status 0 in the headers is success");
    let err = export_error(&config, "logs", logs_body("x")).await;
    assert!(
        err.contains(
            "HTTP status 503 Service Unavailable without a gRPC status (as gRPC Unavailable)"
        ),
        "{err}"
    );
    let err = export_error(&config, "metrics", metrics_body("x")).await;
    assert!(
        err.contains(r#"gRPC status Unknown ("fourteen"): line one\nforged line"#),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err:?}");
}

#[test]
fn binary_and_reserved_headers_are_refused_for_grpc_at_build() {
    for (headers, says) in [
        (
            "x-token-bin=AAAA",
            "binary (-bin) headers are not supported over gRPC",
        ),
        ("grpc-status=0", "reserved for gRPC responses"),
    ] {
        let config = config(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://127.0.0.1:4317".to_owned(),
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", headers.to_owned()),
        ]);
        let err = Probe::new(&config, "logs").unwrap_err().to_string();
        assert!(err.contains(says), "{headers}: {err}");
    }
}
