//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::{collections::BTreeMap, path::PathBuf, sync::Mutex};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// A JSON object that refuses duplicate keys (serde_json's `Value` keeps the last silently).
pub struct StrictObject(pub BTreeMap<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictObject, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if out.insert(k.clone(), v).is_some() {
                        return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
                    }
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parse every line of `text` as one strict JSON object; panics naming the bad line.
pub fn strict_lines(text: &str) -> Vec<Value> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "output must end with a newline"
    );
    text.lines()
        .map(|l| {
            let obj: StrictObject = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one valid JSON object ({e}): {l:?}"));
            Value::Object(obj.0.into_iter().collect())
        })
        .collect()
}

/// Whether `s` is `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn is_rfc3339_micros_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Sum of the samples of `name` whose labels include all of `labels`, from Prometheus text.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    found
}

/// The example binary `target/<profile>/examples/service`, built with
/// `cargo build --example service` first when `cargo test` did not build it
/// (a filtered run such as `cargo test --test ws`): the tests that drive it
/// never skip.
pub fn example_binary() -> PathBuf {
    example_binary_named("service")
}

/// The binary of the example `name`, built (or brought up to date) first:
/// a stale binary would test yesterday's code.
pub fn example_binary_named(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>/deps/x -> target/<profile>
    let bin = profile_dir.join("examples").join(name);
    let _one_build = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .args([
            "build",
            "--all-features",
            "--example",
            name,
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("running cargo to build the example");
    assert!(status.success(), "cargo build --example {name} failed");
    assert!(bin.is_file(), "{} missing after the build", bin.display());
    bin
}

/// Run `f` under a capture and return the `/metrics` text before and after,
/// and the lines `f` logged.
pub fn around(guard: &glimpse_obs::Guard, f: impl FnOnce()) -> (String, String, Vec<Value>) {
    let before = guard.render_metrics();
    let ((), seen) = glimpse_obs::testing::capture(f);
    (before, guard.render_metrics(), seen.lines().to_vec())
}

/// How much the series `name{labels}` grew from `before` to `after` (a
/// series absent from a text counts as 0).
pub fn delta(before: &str, after: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(after, name, labels).unwrap_or(0.0)
        - metric_value(before, name, labels).unwrap_or(0.0)
}

/// The line's keys, sorted, without the trace IDs (present when tracing is on).
pub fn keys(line: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| !matches!(*k, "traceId" | "spanId"))
        .collect();
    k.sort_unstable();
    k
}
