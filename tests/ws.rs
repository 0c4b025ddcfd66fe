//! `ws::Connection` against a real WebSocket client over TCP: the active
//! gauge follows open sockets and returns to 0 after a clean close and after
//! an abrupt drop; messages, latency, lifetimes and close classes are counted.
//!
//! The server is an axum echo route built like the example's `GET /ws/chat`;
//! `example_service_counts_websocket_traffic` drives the example binary
//! itself (built first when `cargo test` did not build it).

mod common;

use std::{
    net::SocketAddr,
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::ws::{Message, WebSocket, WebSocketUpgrade},
    response::Response,
    routing::get,
};
use common::{metric_value, strict_lines};
use futures_util::{SinkExt, StreamExt};
use glimpse_obs::{Config, Guard, testing::SharedBuffer, ws};
use tokio_tungstenite::tungstenite::{
    self,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

struct Obs {
    guard: Guard,
    logs: SharedBuffer,
    addr: SocketAddr,
}

/// One process-wide init and one server, on a runtime of its own so every
/// test (each with its own runtime) can reach it.
fn obs() -> &'static Obs {
    static OBS: OnceLock<Obs> = OnceLock::new();
    OBS.get_or_init(|| {
        let logs = SharedBuffer::new();
        let guard = Config::default()
            .service("ws-test")
            .metrics_addr(None)
            .process_metrics(false)
            .log_writer(logs.clone())
            .init()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let app = Router::new()
                    .route("/ws/{channel}", get(upgrade))
                    .layer(glimpse_obs::layer());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Obs { guard, logs, addr }
    })
}

async fn upgrade(
    axum::extract::Path(channel): axum::extract::Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| echo(socket, channel))
}

/// The example's echo handler; a text `panic` panics inside the handler.
async fn echo(mut socket: WebSocket, channel: String) {
    let conn = ws::Connection::open(&channel);
    while let Some(msg) = socket.recv().await {
        let started = Instant::now();
        let reply = match msg {
            Ok(Message::Text(t)) if t.as_str() == "panic" => panic!("handler bug"),
            Ok(Message::Text(t)) => Message::Text(t),
            Ok(Message::Close(frame)) => return conn.close(frame.map(|f| f.code)),
            Ok(_) => continue,
            Err(_) => break,
        };
        conn.received();
        if socket.send(reply).await.is_err() {
            break;
        }
        conn.sent();
        conn.latency(started.elapsed());
    }
}

fn value(name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&obs().guard.render_metrics(), name, labels).unwrap_or(0.0)
}

/// Poll the metrics until `name{labels}` equals `want` (the server side
/// notices a close asynchronously); panics after 5 s.
async fn wait_for(name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = value(name, labels);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} is {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, path: &str) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .unwrap();
    client
}

async fn echo_round_trip(client: &mut Client, text: &str) {
    client.send(tungstenite::Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), text);
}

async fn close_with(client: &mut Client, code: CloseCode) {
    client
        .close(Some(CloseFrame {
            code,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    // Finish the closing handshake: the server echoes the close frame.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), client.next()).await {}
}

#[tokio::test]
async fn active_gauge_counts_open_sockets_and_drops_to_zero_after_a_clean_close() {
    let addr = obs().addr;
    let ch = [("channel", "clean")];
    let mut a = connect(addr, "/ws/clean").await;
    let mut b = connect(addr, "/ws/clean").await;
    wait_for("websocket_connections_active", &ch, 2.0).await;

    for i in 0..3 {
        echo_round_trip(&mut a, &format!("hello {i}")).await;
    }
    echo_round_trip(&mut b, "hi").await;
    close_with(&mut a, CloseCode::Normal).await;
    wait_for("websocket_connections_active", &ch, 1.0).await;
    close_with(&mut b, CloseCode::Away).await;
    wait_for("websocket_connections_active", &ch, 0.0).await;

    let text = obs().guard.render_metrics();
    let m = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("channel", "clean")];
        labels.extend_from_slice(extra);
        metric_value(&text, name, &labels)
    };
    assert_eq!(
        m("websocket_messages_total", &[("direction", "received")]),
        Some(4.0)
    );
    assert_eq!(
        m("websocket_messages_total", &[("direction", "sent")]),
        Some(4.0)
    );
    assert_eq!(m("websocket_message_latency_seconds_count", &[]), Some(4.0));
    // The KPI bucket: a local echo is far under 100 ms.
    assert_eq!(
        m("websocket_message_latency_seconds_bucket", &[("le", "0.1")]),
        Some(4.0)
    );
    assert_eq!(
        m("websocket_connection_duration_seconds_count", &[]),
        Some(2.0)
    );
    assert_eq!(
        m("websocket_closes_total", &[("class", "normal")]),
        Some(1.0)
    );
    assert_eq!(
        m("websocket_closes_total", &[("class", "going_away")]),
        Some(1.0)
    );
    assert_eq!(
        m("websocket_closes_total", &[("class", "abnormal")]),
        Some(0.0)
    );
    // Global labels on every series.
    assert!(
        text.lines()
            .any(|l| l.starts_with("websocket_connections_active{")
                && l.contains("service=\"ws-test\"")
                && l.contains("channel=\"clean\"")),
        "{text}"
    );
    assert!(text.contains("# TYPE websocket_connections_active gauge"));
    assert!(text.contains("# TYPE websocket_message_latency_seconds histogram"));
}

#[tokio::test]
async fn a_client_that_drops_its_tcp_connection_is_closed_as_abnormal() {
    let addr = obs().addr;
    let ch = [("channel", "abrupt")];
    let mut client = connect(addr, "/ws/abrupt").await;
    echo_round_trip(&mut client, "still here").await;
    wait_for("websocket_connections_active", &ch, 1.0).await;

    // No close frame: the TCP connection just goes away.
    drop(client);
    wait_for("websocket_connections_active", &ch, 0.0).await;
    wait_for(
        "websocket_closes_total",
        &[("channel", "abrupt"), ("class", "abnormal")],
        1.0,
    )
    .await;
    assert_eq!(
        value(
            "websocket_closes_total",
            &[("channel", "abrupt"), ("class", "normal")]
        ),
        0.0
    );
    assert_eq!(
        value("websocket_connection_duration_seconds_count", &ch),
        1.0
    );
}

#[tokio::test]
async fn a_handler_that_panics_still_takes_its_socket_out_of_the_gauge() {
    let addr = obs().addr;
    let ch = [("channel", "panicky")];
    let mut client = connect(addr, "/ws/panicky").await;
    echo_round_trip(&mut client, "ok").await;
    wait_for("websocket_connections_active", &ch, 1.0).await;
    client
        .send(tungstenite::Message::text("panic"))
        .await
        .unwrap();
    wait_for("websocket_connections_active", &ch, 0.0).await;
    wait_for(
        "websocket_closes_total",
        &[("channel", "panicky"), ("class", "abnormal")],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn application_close_codes_are_counted_by_class() {
    let addr = obs().addr;
    let mut client = connect(addr, "/ws/codes").await;
    close_with(&mut client, CloseCode::Library(4001)).await;
    let mut client = connect(addr, "/ws/codes").await;
    close_with(&mut client, CloseCode::Policy).await;
    wait_for(
        "websocket_closes_total",
        &[("channel", "codes"), ("class", "app")],
        1.0,
    )
    .await;
    wait_for(
        "websocket_closes_total",
        &[("channel", "codes"), ("class", "policy_violation")],
        1.0,
    )
    .await;
    wait_for("websocket_connections_active", &[("channel", "codes")], 0.0).await;
}

#[tokio::test]
async fn lines_logged_inside_the_connection_span_carry_the_channel() {
    let o = obs();
    let conn = ws::Connection::open("spanned");
    conn.span()
        .in_scope(|| tracing::info!(tag = "ws-span", "joined"));
    conn.close(Some(1000));
    assert!(o.guard.flush(Duration::from_secs(5)));
    let lines = strict_lines(&o.logs.contents());
    let line = lines.iter().find(|l| l["tag"] == "ws-span").unwrap();
    assert_eq!(line["channel"], "spanned");
    assert_eq!(line["message"], "joined");
}

/// The example binary, when `cargo test` built it (it builds examples
/// before running tests); `None` under `cargo test --test ws`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn example_service_counts_websocket_traffic() {
    let bin = common::example_binary();
    let (app_port, metrics_port) = (free_port(), free_port());
    let db = std::env::temp_dir().join(format!("glimpse-ws-test-{}.db", std::process::id()));
    let _child = Child(
        std::process::Command::new(bin)
            .env("GLIMPSE_ADDR", format!("127.0.0.1:{app_port}"))
            .env("GLIMPSE_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("GLIMPSE_DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("OTEL_SERVICE_NAME", "example-ws")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let scrape = || async {
        let url = format!("http://127.0.0.1:{metrics_port}/metrics");
        match reqwest::get(url).await {
            Ok(r) => r.text().await.ok(),
            Err(_) => None,
        }
    };
    let gauge =
        |text: &str| metric_value(text, "websocket_connections_active", &[("channel", "chat")]);
    let wait_gauge = |want: f64| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(text) = scrape().await
                && gauge(&text).unwrap_or(0.0) == want
            {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "active chat sockets never reached {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // Wait until the service accepts connections.
    let app: SocketAddr = format!("127.0.0.1:{app_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(app).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the example service did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut a = connect(app, "/ws/chat").await;
    let mut b = connect(app, "/ws/chat").await;
    echo_round_trip(&mut a, "one").await;
    echo_round_trip(&mut a, "two").await;
    echo_round_trip(&mut b, "three").await;
    wait_gauge(2.0).await;
    close_with(&mut a, CloseCode::Normal).await;
    wait_gauge(1.0).await;
    drop(b);
    let text = wait_gauge(0.0).await;
    fn chat<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut labels = vec![("channel", "chat")];
        labels.extend_from_slice(extra);
        labels
    }
    assert_eq!(
        metric_value(
            &text,
            "websocket_messages_total",
            &chat(&[("direction", "received")])
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "websocket_messages_total",
            &chat(&[("direction", "sent")])
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(&text, "websocket_message_latency_seconds_count", &chat(&[])),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "websocket_closes_total",
            &chat(&[("class", "normal")])
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "websocket_closes_total",
            &chat(&[("class", "abnormal")])
        ),
        Some(1.0)
    );
    let _ = std::fs::remove_file(db);
}
