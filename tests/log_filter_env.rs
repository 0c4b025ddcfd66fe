//! A misspelled level in `GLIMPSE_LOG`/`RUST_LOG` is an error naming the
//! variable and the value, not a filter that silences every line.

use std::process::Command;

use glimpse_obs::{Config, Error, GLIMPSE_LOG, RUST_LOG};

/// The environment of the child process that calls `init()`.
const CHILD: &str = "LOG_FILTER_ENV_CHILD";

fn lookup(var: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
    move |name| (name == var).then(|| value.to_owned())
}

#[test]
fn a_misspelled_level_is_an_error_naming_the_variable_and_the_value() {
    for var in [GLIMPSE_LOG, RUST_LOG] {
        let err = Config::from_lookup(lookup(var, "infoo")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid value \"infoo\" for environment variable {var}: \"infoo\" is not a \
                 level: expected off, error, warn, info, debug or trace; to enable a target, \
                 write target=level, such as infoo=debug"
            )
        );
        let err = Config::from_lookup(lookup(var, "warn,foo=infoo")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid value \"warn,foo=infoo\" for environment variable {var}: \"infoo\" in \
                 \"foo=infoo\" is not a level: expected off, error, warn, info, debug or trace"
            )
        );
        let err = Config::from_lookup(lookup(var, "warnn")).unwrap_err();
        assert!(matches!(err, Error::InvalidEnv { name, .. } if name == var));
    }
}

#[test]
fn directives_that_state_their_levels_are_accepted() {
    for value in [
        "info",
        "warn,glimpse_obs::access=info",
        "my_crate::db=debug",
        "[request]=debug",
    ] {
        for var in [GLIMPSE_LOG, RUST_LOG] {
            let config = Config::from_lookup(lookup(var, value));
            assert!(config.is_ok(), "{var}={value}: {:?}", config.err());
        }
    }
}

#[test]
fn init_refuses_a_misspelled_level_in_the_process_environment() {
    if std::env::var_os(CHILD).is_some() {
        // In the child: the real environment, the real `init`.
        match glimpse_obs::init() {
            Ok(_) => println!("init succeeded"),
            Err(e) => println!("init failed: {e}"),
        }
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "init_refuses_a_misspelled_level_in_the_process_environment",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env(GLIMPSE_LOG, "infoo")
        .env("GLIMPSE_METRICS_ADDR", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "init failed: invalid value \"infoo\" for environment variable GLIMPSE_LOG: \
             \"infoo\" is not a level"
        ),
        "{stdout}"
    );
}

#[test]
fn set_filter_refuses_a_misspelled_level_and_keeps_the_filter() {
    let logs = glimpse_obs::testing::SharedBuffer::new();
    let guard = Config::default()
        .metrics_addr(None)
        .log_writer(logs.clone())
        .init()
        .unwrap();
    let err = guard.set_filter("warnn").unwrap_err();
    assert!(matches!(err, Error::InvalidFilter { .. }), "{err:?}");
    assert!(
        err.to_string().contains("\"warnn\" is not a level"),
        "{err}"
    );
    tracing::info!("still logged");
    assert!(guard.flush(std::time::Duration::from_secs(5)));
    assert!(
        logs.lines().iter().any(|l| l["message"] == "still logged"),
        "{}",
        logs.contents()
    );
}
