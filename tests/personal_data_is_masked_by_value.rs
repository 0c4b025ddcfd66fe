//! Personal data by value: Luhn-valid card numbers (13–19 digits, also with
//! spaces or dashes) and e-mail addresses are masked in `path` and in string
//! field values, whatever the field's name; digit runs that fail the Luhn
//! check (order numbers) are kept.

mod common;

use axum::{Router, routing::get};
use glimpse_obs::{
    Config,
    logging::redact::{MASKED_CARD, MASKED_EMAIL},
    testing::SharedBuffer,
};
use tower::ServiceExt;

#[tokio::test]
async fn cards_and_emails_are_masked_in_paths_and_field_values() {
    let logs = SharedBuffer::new();
    let _guard = Config::default()
        .metrics_addr(None)
        .log_writer(logs.clone())
        .init()
        .unwrap();
    let app: Router = Router::new()
        .route("/cards/{n}", get(|| async { "ok" }))
        .route("/users/{email}", get(|| async { "ok" }))
        .route(
            "/note",
            get(|| async {
                let note = "from bob.smith+x@example.co.uk: card 4111 1111 1111 1111, order 1234567890123";
                tracing::info!(note, debug_note = ?note, display = %note, "Contact alice@example.com");
                "ok"
            }),
        )
        .layer(glimpse_obs::layer());
    for uri in [
        "/cards/4111111111111111",
        "/users/bob@example.com",
        "/users/carol%40example.org",
        "/note",
    ] {
        let req = axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap();
    }
    _guard.flush(std::time::Duration::from_secs(5));

    let text = logs.contents();
    for secret in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "example.com",
        "example.org",
        "example.co.uk",
    ] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    let lines = common::strict_lines(&text);
    let paths: Vec<&str> = lines.iter().filter_map(|l| l["path"].as_str()).collect();
    assert!(
        paths.contains(&format!("/cards/{MASKED_CARD}").as_str()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&format!("/users/{MASKED_EMAIL}").as_str()),
        "{paths:?}"
    );
    let note = lines.iter().find(|l| l["note"].is_string()).unwrap();
    assert_eq!(
        note["note"],
        format!("from {MASKED_EMAIL}: card {MASKED_CARD}, order 1234567890123")
    );
    assert!(note["display"].as_str().unwrap().contains(MASKED_CARD));
    assert!(note["debug_note"].as_str().unwrap().contains(MASKED_EMAIL));
    assert_eq!(note["message"], format!("Contact {MASKED_EMAIL}"));
}
