//! The shutdown drain: after the signal, `/health/ready` answers 503 at once
//! while the listener keeps serving for the drain delay, `/health/live`
//! stays 200, a request in flight completes, and the server then stops.

use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use glimpse_obs::health::Health;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_answers_503_after_the_signal_while_in_flight_requests_complete_and_live_stays_200() {
    let drain = Duration::from_millis(600);
    let health =
        Health::new()
            .drain_delay(drain)
            .check("database", Duration::from_secs(1), || async {
                Ok::<(), String>(())
            });
    let app: Router = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(900)).await;
                "done"
            }),
        )
        .merge(health.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(health.clone().drain_after(async {
                let _ = signal_rx.await;
            }))
            .into_future(),
    );
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");
    assert_eq!(
        client
            .get(url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let in_flight = tokio::spawn({
        let (client, url) = (client.clone(), url("/slow"));
        async move {
            let res = client.get(url).send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = Instant::now();
    signal_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Draining: still serving, ready 503, live 200.
    let ready = client.get(url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "draining", "{body}");
    assert_eq!(
        client
            .get(url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(health.is_draining());

    // The request in flight before the signal completes.
    let (status, text) = in_flight.await.unwrap();
    assert_eq!((status, text.as_str()), (200, "done"));

    // After the drain the server stops.
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops after the drain")
        .unwrap()
        .unwrap();
    assert!(signalled.elapsed() >= drain, "{:?}", signalled.elapsed());
    let refused = reqwest::Client::new()
        .get(url("/health/live"))
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    assert!(refused.is_err(), "no longer accepting: {refused:?}");
}
