//! What a collector receives: a handler that passes the raw bearer to
//! `record_user_id` gets no `enduser.id` on its server span (and no
//! `userId`), a verified ID does; card numbers and e-mail addresses in the
//! path are masked in `url.path`.

mod support;

use std::time::Duration;

use axum::{Router, http::HeaderMap, routing::get};
use support::otlp_receiver::{Receiver, Store};

async fn careless(headers: HeaderMap) -> &'static str {
    // What the probe found in the example: the header as the user.
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        glimpse_obs::record_user_id(v);
        glimpse_obs::record_user_id(v.trim_start_matches("Bearer "));
    }
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bearer_in_enduser_id_and_no_card_or_email_in_url_path() {
    let receiver = Receiver::http(Store::default()).await;
    let logs = glimpse_obs::testing::SharedBuffer::new();
    let guard = glimpse_obs::Config::default()
        .otlp_endpoint(Some(receiver.endpoint()))
        .otlp_protocol(glimpse_obs::OtlpProtocol::HttpProtobuf)
        .metrics_addr(None)
        .log_writer(logs.clone())
        .shutdown_timeout(Duration::from_secs(5))
        .init()
        .unwrap();
    let app: Router = Router::new()
        .route("/jwt", get(careless))
        .route("/cards/{n}", get(|| async { "ok" }))
        .route("/users/{email}", get(|| async { "ok" }))
        .route(
            "/verified",
            get(|| async {
                glimpse_obs::record_user_id("u-42");
                "ok"
            }),
        )
        .layer(glimpse_obs::layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTQyIn0.c2lnbmF0dXJl";
    let c = reqwest::Client::new();
    for path in [
        "/jwt",
        "/cards/4111111111111111",
        "/users/bob@example.com",
        "/verified",
    ] {
        let r = c
            .get(format!("http://{addr}{path}"))
            .bearer_auth(jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap()
        .unwrap();

    let server = |route: &str| {
        let found = receiver
            .store
            .find(|s| s.attr("http.route").as_deref() == Some(route));
        assert_eq!(found.len(), 1, "{}", receiver.store.summary());
        found.into_iter().next().unwrap()
    };
    assert_eq!(
        server("/jwt").attr("enduser.id"),
        None,
        "no bearer as enduser.id"
    );
    assert_eq!(
        server("/verified").attr("enduser.id").as_deref(),
        Some("u-42")
    );
    assert_eq!(
        server("/cards/{n}").attr("url.path").as_deref(),
        Some("/cards/[CARD]")
    );
    assert_eq!(
        server("/users/{email}").attr("url.path").as_deref(),
        Some("/users/[EMAIL]")
    );
    let text = logs.contents();
    assert!(!text.contains("eyJ"), "no token in any line");
}
