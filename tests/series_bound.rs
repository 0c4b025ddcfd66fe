//! The capacity model's series bound (`deploy/tools/capacity.py`), proven
//! exact for every capped family of the crate: every caller-fed label is fed
//! more distinct values than a small cap, random methods and paths go through
//! the layer, then the series of the scrape text are counted per family and
//! compared with the tool's bound for the profile
//! `deploy/tools/capacity/crate-flood.json` at the same cap. No family may
//! exceed its bound, and every family whose bound comes from the cap (and
//! every fixed one) must reach it exactly. `.ci/series-bound.sh` does the
//! same against the running example service, over HTTP.

use std::{collections::BTreeMap, path::PathBuf, process::Command};

use axum::{Router, body::Body, http::Request, routing::get};
use glimpse_obs::{
    Config, business, business::PaymentStatus, cache, db, security, testing::SharedBuffer, ws,
};
use tower::ServiceExt;

/// A small cap keeps the flood short; the formulas do not depend on its size.
const CAP: usize = 7;
/// Distinct values fed to each label: well past the cap.
const DISTINCT: usize = 20;

/// Families whose bound depends on what the application does rather than on
/// the cap: the (method, status) pairs a route really answers, and the
/// `spans` drop counter, which exists only once a span was dropped.
const AT_MOST: &[&str] = &[
    "http_server_request_duration_seconds",
    "glimpse_obs_dropped_total",
    // Counts only payments whose amount would pass the sum's top.
    "glimpse_payment_amount_rejected_total",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Series per family in a Prometheus text exposition (histogram
/// `_bucket`/`_sum`/`_count` lines count for their family).
fn families(text: &str) -> BTreeMap<String, u64> {
    let mut hist = std::collections::BTreeSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some("histogram")) = (it.next(), it.next()) {
                hist.insert(name.to_owned());
            }
        }
    }
    let mut out = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = l.split(['{', ' ']).next().unwrap();
        let fam = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| hist.contains(*base))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| name.to_owned());
        *out.entry(fam).or_insert(0) += 1;
    }
    out
}

/// The bound per family from `capacity.py series --json`.
fn bound() -> (u64, BTreeMap<String, u64>) {
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("python3");
    let out = Command::new(python)
        .arg(root().join("deploy/tools/capacity.py"))
        .args([
            "series",
            "--json",
            "--label-cap",
            &CAP.to_string(),
            "--profile",
        ])
        .arg(root().join("deploy/tools/capacity/crate-flood.json"))
        .output()
        .expect("run deploy/tools/capacity.py");
    assert!(
        out.status.success(),
        "capacity.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let metrics = v["metrics"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect();
    (v["total"].as_u64().unwrap(), metrics)
}

/// The `i`-th of a list of real ISO 4217 codes: only those take a slot of
/// the currency label (anything else is `other` at once).
fn currency(i: usize) -> String {
    const CODES: &[&str] = &[
        "EUR", "USD", "GBP", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "CAD", "AUD",
        "NZD", "SGD", "HKD", "KRW", "INR", "BRL", "MXN", "ZAR", "TRY", "ILS", "AED", "SAR", "THB",
        "IDR", "MYR", "PHP", "VND", "CNY", "TWD", "CLP", "COP", "PEN", "ARS", "EGP", "NGN", "KES",
        "MAD",
    ];
    CODES[i % CODES.len()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_stay_within_the_capacity_bound_and_reach_it_for_every_capped_family() {
    let guard = Config::default()
        .service("series-bound")
        .metrics_addr(None)
        .process_metrics(true)
        .label_cap(CAP)
        .log_writer(SharedBuffer::new())
        .init()
        .unwrap();

    // Every caller-fed label, past the cap.
    for i in 0..DISTINCT {
        let v = format!("v{i}");
        business::user_registered(&v);
        business::message_sent(&v);
        business::feature_used(&v);
        business::conversion(&format!("funnel{i}"), &format!("step{i}"));
        security::auth_failed(&v);
        security::api_key_used(&v);
        security::admin_action(&v);
        cache::lookup(&v, i % 2 == 0);
        db::record_pool(&v, 1, 1, 2);
        db::query(&v, async { Ok::<_, std::io::Error>(()) })
            .await
            .unwrap();
        let conn = ws::Connection::open(&v);
        conn.sent();
        conn.received();
        conn.close(Some(1000));
        // Providers and currencies are capped separately: every pair.
        for j in 0..DISTINCT {
            let status = if (i + j) % 2 == 0 {
                PaymentStatus::Succeeded
            } else {
                PaymentStatus::Failed
            };
            business::payment_processed(&format!("psp{i}"), &currency(j), 1299, status);
        }
    }
    business::match_created();

    // Every method label on a route and on unmatched paths.
    let app: Router = Router::new()
        .route("/r", get(|| async { "ok" }))
        .layer(glimpse_obs::layer());
    let methods = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE",
        "BREW",
    ];
    for (i, m) in methods.iter().enumerate() {
        for path in ["/r".to_owned(), format!("/random/{i}"), format!("/x{i}/y")] {
            let req = Request::builder()
                .method(*m)
                .uri(&path)
                .body(Body::empty())
                .unwrap();
            let _ = app.clone().oneshot(req).await.unwrap();
        }
    }

    let text = guard.render_metrics();
    let got = families(&text);
    let (total_bound, b) = bound();
    let unknown: Vec<_> = got.keys().filter(|k| !b.contains_key(*k)).collect();
    assert!(
        unknown.is_empty(),
        "families missing from capacity.py's catalogue: {unknown:?}"
    );
    let mut report = String::new();
    for (fam, &max) in &b {
        let n = got.get(fam).copied().unwrap_or(0);
        assert!(n <= max, "{fam}: {n} series > bound {max}\n{report}");
        if !AT_MOST.contains(&fam.as_str()) {
            assert_eq!(n, max, "{fam}: {n} series, bound {max} not reached exactly");
        }
        report.push_str(&format!("{fam}: {n}/{max}\n"));
    }
    let total: u64 = got.values().sum();
    assert!(total <= total_bound, "{total} series > bound {total_bound}");
    eprintln!("{total} series of a bound of {total_bound} (label_cap {CAP})\n{report}");
}
