//! The level filter changes while the service runs.

mod common;

use std::time::Duration;

use glimpse_obs::{Config, testing::SharedBuffer};

#[test]
fn set_filter_turns_on_debug_for_one_module_or_span_and_rejects_bad_directives() {
    let buf = SharedBuffer::new();
    let guard = Config::default()
        .metrics_addr(None)
        .log_writer(buf.clone())
        .init()
        .unwrap();
    // The messages written since the last call.
    let messages = || -> Vec<String> {
        assert!(guard.flush(Duration::from_secs(5)));
        let msgs = common::strict_lines(&buf.contents())
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_owned())
            .collect();
        buf.clear();
        msgs
    };
    tracing::debug!("hidden");
    guard.set_filter("info,filter_reload=debug").unwrap();
    tracing::debug!("shown");
    tracing::debug!(target: "other_module", "still hidden");
    let err = guard.set_filter("info,[[[").unwrap_err();
    assert!(
        err.to_string().contains("invalid log filter \"info,[[[\""),
        "{err}"
    );
    tracing::debug!("filter unchanged after a bad directive");
    assert_eq!(
        messages(),
        ["shown", "filter unchanged after a bad directive"]
    );

    // A span directive applies inside its span only, and goes away with
    // the next filter (the filter follows spans only while it has one).
    guard.set_filter("info,[job]=debug").unwrap();
    tracing::info_span!("job", id = 1).in_scope(|| tracing::debug!("debug inside the job span"));
    tracing::debug!("debug outside any span");
    guard.set_filter("info").unwrap();
    tracing::info_span!("job", id = 2)
        .in_scope(|| tracing::debug!("debug after the directive is gone"));
    tracing::info!("info still shown");
    assert_eq!(
        messages(),
        ["debug inside the job span", "info still shown"]
    );

    // With a span directive, an event every filter disabled does not take
    // the next lines with it.
    guard.set_filter("info,[job]=debug").unwrap();
    tracing::debug!("disabled everywhere");
    tracing::error!("error after a disabled event");
    tracing::warn!("warn after");
    assert_eq!(messages(), ["error after a disabled event", "warn after"]);
}
