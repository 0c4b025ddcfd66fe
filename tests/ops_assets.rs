//! The ops assets under `deploy/` use only metrics the crate emits, and every
//! alert has a runbook.
//!
//! (a) Every metric name in the Prometheus rules (alerting and recording) and
//!     in the Grafana dashboards' Prometheus queries is one of
//!     `metrics::names::ALL` / `PROCESS` (histograms only with `_bucket`,
//!     `_sum`, `_count`), a recording rule of our own, or a named external
//!     exporter's (node-exporter, cAdvisor, blackbox, redis-exporter,
//!     Prometheus itself).
//! (b) Every alert has a `severity` of `critical`/`warning` and a
//!     `runbook_url` whose anchor is a heading of `docs/runbooks.md`.
//!
//! `.ci/ops-check.sh` runs the same checks (and many more) with Python and the
//! real tools; this test keeps (a) and (b) in `cargo test`. The YAML is read
//! by line scanning, which is enough for the layout of our rule files.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use glimpse_obs::metrics::names;

const RUNBOOK_BASE: &str = "https://github.com/glimpse/glimpse_obs/blob/main/docs/runbooks.md#";

/// Metric-name prefixes of the external exporters, and what they are.
const EXTERNAL_PREFIXES: &[(&str, &str)] = &[
    ("node_", "node-exporter"),
    ("container_", "cAdvisor"),
    ("machine_", "cAdvisor"),
    ("probe_", "blackbox exporter"),
    ("redis_", "redis-exporter"),
    ("alertmanager_", "Alertmanager"),
    ("prometheus_", "Prometheus"),
];
const EXTERNAL_EXACT: &[&str] = &[
    "up",
    "ALERTS",
    "ALERTS_FOR_STATE",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

fn histograms() -> [&'static str; 6] {
    [
        names::HTTP_SERVER_REQUEST_DURATION,
        names::HTTP_CLIENT_REQUEST_DURATION,
        names::WS_CONNECTION_DURATION,
        names::WS_MESSAGE_LATENCY,
        names::DB_QUERY_DURATION,
        names::HEALTH_CHECK_DURATION,
    ]
}

/// Why `name` is not allowed, or `None` when it is.
fn classify(name: &str, recorded: &BTreeSet<String>) -> Option<&'static str> {
    if recorded.contains(name) {
        return None;
    }
    let hist = histograms();
    if hist.contains(&name) {
        return Some("histogram used without _bucket/_sum/_count");
    }
    if names::ALL.contains(&name) || names::PROCESS.contains(&name) {
        return None;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if name
            .strip_suffix(suffix)
            .is_some_and(|base| hist.contains(&base))
        {
            return None;
        }
    }
    if EXTERNAL_EXACT.contains(&name) || EXTERNAL_PREFIXES.iter().any(|(p, _)| name.starts_with(p))
    {
        return None;
    }
    Some("not emitted by the crate (metrics::names) nor by a named exporter")
}

/// Metric names used in a PromQL expression (Grafana variables allowed).
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Grafana variables ($service, ${service:lucene}, $__rate_interval) -> a duration.
    let mut e = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            if chars.peek() == Some(&'{') {
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                }
            } else {
                while chars
                    .peek()
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
                {
                    chars.next();
                }
            }
            e.push_str("1m");
        } else {
            e.push(c);
        }
    }
    let b: Vec<char> = e.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < b.len() {
        let c = b[i];
        match c {
            '"' | '\'' | '`' => {
                // string literal
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == '\\' && c != '`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                // label matchers / range: skip to the closing bracket (strings inside are simple)
                let close = if c == '{' { '}' } else { ']' };
                let mut in_str: Option<char> = None;
                i += 1;
                while i < b.len() {
                    match in_str {
                        Some(_) if b[i] == '\\' => i += 1,
                        Some(q) if b[i] == q => in_str = None,
                        Some(_) => {}
                        None if b[i] == '"' || b[i] == '\'' => in_str = Some(b[i]),
                        None if b[i] == close => break,
                        None => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            c if c.is_ascii_digit()
                || (c == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                // number or duration (0.95, 1e3, 5m, 1d)
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.' || b[i] == '_') {
                    i += 1;
                }
            }
            c if ident_start(c) => {
                let start = i;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                let tok: String = b[start..i].iter().collect();
                let mut j = i;
                while j < b.len() && b[j].is_whitespace() {
                    j += 1;
                }
                let lower = tok.to_ascii_lowercase();
                let grouping = matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
                if grouping {
                    if b.get(j) == Some(&'(') {
                        // label list: skip it
                        while j < b.len() && b[j] != ')' {
                            j += 1;
                        }
                        i = j + 1;
                    }
                    continue;
                }
                // `sum by (le) (...)`: look past a grouping clause.
                loop {
                    let rest: String = b[j..].iter().take(12).collect();
                    let kw = ["by", "without"]
                        .into_iter()
                        .find(|k| rest.starts_with(k) && !rest[k.len()..].starts_with(ident_char));
                    let Some(kw) = kw else { break };
                    let mut k = j + kw.len();
                    while k < b.len() && b[k].is_whitespace() {
                        k += 1;
                    }
                    if b.get(k) != Some(&'(') {
                        break;
                    }
                    while k < b.len() && b[k] != ')' {
                        k += 1;
                    }
                    j = k + 1;
                    while j < b.len() && b[j].is_whitespace() {
                        j += 1;
                    }
                }
                if b.get(j) == Some(&'(') {
                    continue; // function or aggregation
                }
                if matches!(
                    lower.as_str(),
                    "and" | "or" | "unless" | "bool" | "offset" | "inf" | "nan"
                ) {
                    continue;
                }
                out.insert(tok);
            }
            _ => i += 1,
        }
    }
    out
}

/// A rule of a rules file, from line scanning.
#[derive(Debug, Default)]
struct Rule {
    file: String,
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    severity: Option<String>,
    runbook_url: Option<String>,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

fn load_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for path in files(&root().join("deploy/prometheus/rules"), "yml") {
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut cur: Option<Rule> = None;
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            let t = line.trim_start();
            let item = t.strip_prefix("- ").unwrap_or(t);
            if let Some(v) = item
                .strip_prefix("alert:")
                .or_else(|| item.strip_prefix("record:"))
            {
                if let Some(r) = cur.take() {
                    rules.push(r);
                }
                let mut r = Rule {
                    file: path.file_name().unwrap().to_string_lossy().into_owned(),
                    ..Rule::default()
                };
                if item.starts_with("alert:") {
                    r.alert = Some(unquote(v));
                } else {
                    r.record = Some(unquote(v));
                }
                cur = Some(r);
            } else if let (Some(v), Some(r)) = (t.strip_prefix("expr:"), cur.as_mut()) {
                let v = v.trim();
                if v.starts_with('|') || v.starts_with('>') {
                    let base = indent_of(line);
                    let mut body = Vec::new();
                    while i + 1 < lines.len()
                        && (lines[i + 1].trim().is_empty() || indent_of(lines[i + 1]) > base)
                    {
                        i += 1;
                        body.push(lines[i].trim());
                    }
                    r.expr = body.join("\n");
                } else {
                    r.expr = unquote(v);
                }
            } else if let (Some(v), Some(r)) = (t.strip_prefix("severity:"), cur.as_mut()) {
                r.severity = Some(unquote(v));
            } else if let (Some(v), Some(r)) = (t.strip_prefix("runbook_url:"), cur.as_mut()) {
                r.runbook_url = Some(unquote(v));
            } else if t.starts_with("- name:")
                && let Some(r) = cur.take()
            {
                rules.push(r);
            }
            i += 1;
        }
        if let Some(r) = cur.take() {
            rules.push(r);
        }
    }
    rules
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn runbook_anchors() -> BTreeSet<String> {
    let text = fs::read_to_string(root().join("docs/runbooks.md")).expect("docs/runbooks.md");
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            out.insert(anchor(line[hashes..].trim().trim_end_matches('#')));
        }
    }
    out
}

fn panels(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for q in p["panels"].as_array().into_iter().flatten() {
            out.push(q);
        }
    }
    out
}

/// (where, PromQL) of every Prometheus query of every dashboard, incl. variables.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in files(&root().join("deploy/grafana/dashboards"), "json") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let d: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let q = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .unwrap_or("");
            if let Some(inner) = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
            {
                let metric = inner.rsplit_once(',').map_or(inner, |(m, _)| m);
                out.push((format!("{name} variable {}", v["name"]), metric.to_string()));
            }
        }
        for p in panels(&d) {
            let pds = p["datasource"]["type"].as_str().unwrap_or("");
            for t in p["targets"].as_array().into_iter().flatten() {
                let tds = t["datasource"]["type"].as_str().unwrap_or(pds);
                if let (true, Some(expr)) = (tds == "prometheus", t["expr"].as_str()) {
                    out.push((
                        format!("{name} panel {:?}", p["title"].as_str().unwrap_or("")),
                        expr.to_string(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn promql_scanner_finds_metric_names() {
    let e = r#"histogram_quantile(0.95, sum by (le, route) (rate(http_server_request_duration_seconds_bucket{service=~"$service",le="0.5"}[$__rate_interval])))
        > 3 * sum(rate(x_total[1d] offset 1d)) and on (instance) up == bool 0 or foo:bar:rate5m / 1e3"#;
    let got: Vec<String> = metric_names(e).into_iter().collect();
    assert_eq!(
        got,
        [
            "foo:bar:rate5m",
            "http_server_request_duration_seconds_bucket",
            "up",
            "x_total"
        ]
    );
    let recorded = BTreeSet::new();
    assert!(classify("x_total", &recorded).is_some());
    assert!(classify("http_server_request_duration_seconds", &recorded).is_some());
    assert!(classify("http_server_request_duration_seconds_bucket", &recorded).is_none());
    assert!(classify("process_resident_memory_bytes", &recorded).is_none());
    assert!(classify("node_memory_MemTotal_bytes", &recorded).is_none());
}

#[test]
fn every_metric_in_rules_and_dashboards_is_emitted_or_external() {
    let rules = load_rules();
    assert!(rules.len() > 20, "found only {} rules", rules.len());
    let recorded: BTreeSet<String> = rules.iter().filter_map(|r| r.record.clone()).collect();
    let mut bad = Vec::new();
    let mut seen = BTreeSet::new();
    for r in &rules {
        assert!(
            !r.expr.trim().is_empty(),
            "{} {:?}: no expr",
            r.file,
            r.alert.as_ref().or(r.record.as_ref())
        );
        for n in metric_names(&r.expr) {
            if let Some(why) = classify(&n, &recorded) {
                bad.push(format!(
                    "{} {:?}: {n} ({why})",
                    r.file,
                    r.alert.as_ref().or(r.record.as_ref())
                ));
            }
            seen.insert(n);
        }
    }
    let queries = dashboard_queries();
    assert!(
        queries.len() > 40,
        "found only {} dashboard queries",
        queries.len()
    );
    for (place, expr) in &queries {
        for n in metric_names(expr) {
            if let Some(why) = classify(&n, &recorded) {
                bad.push(format!("{place}: {n} ({why})"));
            }
            seen.insert(n);
        }
    }
    assert!(
        bad.is_empty(),
        "metric names not emitted:\n{}",
        bad.join("\n")
    );
    // The scan is not vacuous: the central metrics are found.
    for n in [
        "http_server_request_duration_seconds_bucket",
        "log_events_total",
        "glimpse_payments_total",
    ] {
        assert!(seen.contains(n), "{n} not found in any asset");
    }
}

#[test]
fn every_alert_has_severity_and_a_runbook_section() {
    let anchors = runbook_anchors();
    let rules = load_rules();
    let alerts: Vec<&Rule> = rules.iter().filter(|r| r.alert.is_some()).collect();
    assert!(alerts.len() >= 14, "found only {} alerts", alerts.len());
    let mut bad = Vec::new();
    for r in &alerts {
        let name = r.alert.as_deref().unwrap();
        match r.severity.as_deref() {
            Some("critical" | "warning") => {}
            other => bad.push(format!("{name}: severity {other:?}")),
        }
        match r
            .runbook_url
            .as_deref()
            .and_then(|u| u.strip_prefix(RUNBOOK_BASE))
        {
            Some(a) if anchors.contains(a) => {}
            Some(a) => bad.push(format!(
                "{name}: no heading with anchor #{a} in docs/runbooks.md"
            )),
            None => bad.push(format!(
                "{name}: runbook_url {:?} not under {RUNBOOK_BASE}",
                r.runbook_url
            )),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_infrastructure_dashboard_has_a_runtime_row_and_runtime_saturated_is_a_tested_warning() {
    let path = root().join("deploy/grafana/dashboards/infrastructure.json");
    let d: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let all = panels(&d);
    let row = all
        .iter()
        .position(|p| p["type"] == "row" && p["title"] == "Runtime")
        .expect("a Runtime row");
    // The panels after the row, up to the next row.
    let exprs: Vec<String> = all[row + 1..]
        .iter()
        .take_while(|p| p["type"] != "row")
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    for metric in [
        names::TOKIO_BUSY_RATIO,
        names::TOKIO_WORKER_BUSY_RATIO,
        names::TOKIO_GLOBAL_QUEUE_DEPTH,
        names::TOKIO_ALIVE_TASKS,
    ] {
        assert!(
            exprs
                .iter()
                .any(|e| e.contains(metric) && e.contains("$service")),
            "no Runtime panel queries {metric}: {exprs:#?}"
        );
    }

    let rules = load_rules();
    let alert = rules
        .iter()
        .find(|r| r.alert.as_deref() == Some("RuntimeSaturated"))
        .expect("a RuntimeSaturated alert");
    assert_eq!(alert.severity.as_deref(), Some("warning"));
    assert!(
        alert.expr.contains(names::TOKIO_BUSY_RATIO) && alert.expr.contains("> 0.9"),
        "{}",
        alert.expr
    );
    let rules_text =
        fs::read_to_string(root().join("deploy/prometheus/rules/glimpse-warning.yml")).unwrap();
    let after = &rules_text[rules_text.find("alert: RuntimeSaturated").unwrap()..];
    assert!(
        after.lines().take(8).any(|l| l.trim() == "for: 5m"),
        "{after}"
    );
    let tests =
        fs::read_to_string(root().join("deploy/prometheus/tests/warning_test.yml")).unwrap();
    assert!(
        tests.contains("alertname: RuntimeSaturated")
            && tests.contains("0.95x10")
            && tests.contains("0.89x10"),
        "promtool-tested above (0.95) and below (0.89) the threshold"
    );
}

/// The latency panels show exemplars, and the stack keeps and links them:
/// every dashboard quantile over a histogram with exemplars queries with
/// `"exemplar": true`, the compose Prometheus stores exemplars, and the
/// Prometheus datasource links their `trace_id` to the Jaeger datasource.
#[test]
fn latency_panels_show_exemplars_that_prometheus_keeps_and_grafana_links_to_jaeger() {
    let with_exemplars = [
        names::HTTP_SERVER_REQUEST_DURATION,
        names::DB_QUERY_DURATION,
        names::WS_MESSAGE_LATENCY,
    ];
    let mut seen = BTreeSet::new();
    for path in files(&root().join("deploy/grafana/dashboards"), "json") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let d: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or("");
                let Some(m) = with_exemplars.iter().find(|m| {
                    expr.contains("histogram_quantile") && expr.contains(&format!("{m}_bucket"))
                }) else {
                    continue;
                };
                assert_eq!(
                    t["exemplar"],
                    serde_json::Value::Bool(true),
                    "{name} panel {:?} shows no exemplars",
                    p["title"]
                );
                seen.insert(((*m).to_string(), name.clone()));
            }
        }
    }
    for (metric, dashboard) in [
        (
            names::HTTP_SERVER_REQUEST_DURATION,
            "application-overview.json",
        ),
        (names::WS_MESSAGE_LATENCY, "application-overview.json"),
        (names::DB_QUERY_DURATION, "infrastructure.json"),
    ] {
        assert!(
            seen.contains(&(metric.to_string(), dashboard.to_string())),
            "{dashboard} has no latency panel of {metric} with exemplars"
        );
    }
    let compose = fs::read_to_string(root().join("deploy/docker-compose.yml")).unwrap();
    assert!(compose.contains("--enable-feature=exemplar-storage"));
    let sources =
        fs::read_to_string(root().join("deploy/grafana/provisioning/datasources/datasources.yml"))
            .unwrap();
    let links = sources
        .split("exemplarTraceIdDestinations:")
        .nth(1)
        .expect("the Prometheus datasource links exemplars");
    assert!(links.contains("name: trace_id") && links.contains("datasourceUid: jaeger"));
}
