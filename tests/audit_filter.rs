//! Audit lines pass any level filter, at start and after `set_filter`,
//! unless the directive names the audit target itself.

mod common;

use std::time::Duration;

use glimpse_obs::{Config, audit, business, testing::SharedBuffer};

#[test]
fn audit_lines_pass_a_warn_filter_unless_the_directive_names_the_audit_target() {
    let buf = SharedBuffer::new();
    let guard = Config::default()
        .metrics_addr(None)
        .process_metrics(false)
        .log_filter("warn")
        .unwrap()
        .log_writer(buf.clone())
        .init()
        .unwrap();
    tracing::info!("plain info, filtered out");
    audit::admin_action("admin-7", "user.ban", "user-13");
    // The business payment line is not the audit record: it follows the filter.
    business::payment_processed("stripe", "EUR", 1299, business::PaymentStatus::Succeeded);

    guard.set_filter("error").unwrap();
    audit::config_change(
        "admin-7",
        "matching.max_distance_km",
        Some("50"),
        Some("80"),
    );

    // Named explicitly, the user's directive wins.
    guard.set_filter("warn,glimpse_obs::audit=off").unwrap();
    audit::user_data_access("admin-7", "user-42", "export");

    assert!(guard.flush(Duration::from_secs(5)));
    let lines = common::strict_lines(&buf.contents());
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["admin action", "configuration change"],
        "{lines:?}"
    );
    for l in &lines {
        assert_eq!(l["level"], "INFO");
        assert_eq!(l["audit"], true);
        assert_eq!(l["target"], "glimpse_obs::audit");
    }
}
