//! The OTLP settings of the three signals (issue 13): where each signal is
//! exported, how (protocol, headers, compression, timeout, TLS), and which
//! exporters the metrics and logs use. Read here as written; the per-signal
//! value winning over the shared one is resolved by `crate::otlp`.

use std::{path::PathBuf, time::Duration};

use super::{BatchSettings, invalid};
use crate::Error;

/// Shared OTLP endpoint of all signals (`http://collector:4317`); for
/// `http/protobuf` the signal's path (`/v1/traces`, `/v1/metrics`,
/// `/v1/logs`) is appended. Unset means no trace export.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Traces-only OTLP endpoint, used as written; wins over [`OTEL_EXPORTER_OTLP_ENDPOINT`].
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Metrics-only OTLP endpoint, used as written; wins over [`OTEL_EXPORTER_OTLP_ENDPOINT`].
pub const OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
/// Logs-only OTLP endpoint, used as written; wins over [`OTEL_EXPORTER_OTLP_ENDPOINT`].
pub const OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";
/// `grpc` (default) or `http/protobuf`, for every signal.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The traces' protocol; wins over [`OTEL_EXPORTER_OTLP_PROTOCOL`].
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// The metrics' protocol; wins over [`OTEL_EXPORTER_OTLP_PROTOCOL`].
pub const OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
/// The logs' protocol; wins over [`OTEL_EXPORTER_OTLP_PROTOCOL`].
pub const OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL";
/// Headers sent with every export, `key=value,key2=value2` (values
/// percent-decoded), such as `authorization=Bearer%20abc`.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// The traces' headers; replace [`OTEL_EXPORTER_OTLP_HEADERS`].
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// The metrics' headers; replace [`OTEL_EXPORTER_OTLP_HEADERS`].
pub const OTEL_EXPORTER_OTLP_METRICS_HEADERS: &str = "OTEL_EXPORTER_OTLP_METRICS_HEADERS";
/// The logs' headers; replace [`OTEL_EXPORTER_OTLP_HEADERS`].
pub const OTEL_EXPORTER_OTLP_LOGS_HEADERS: &str = "OTEL_EXPORTER_OTLP_LOGS_HEADERS";
/// `gzip` or `none` (default).
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// The traces' compression; wins over [`OTEL_EXPORTER_OTLP_COMPRESSION`].
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
/// The metrics' compression; wins over [`OTEL_EXPORTER_OTLP_COMPRESSION`].
pub const OTEL_EXPORTER_OTLP_METRICS_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION";
/// The logs' compression; wins over [`OTEL_EXPORTER_OTLP_COMPRESSION`].
pub const OTEL_EXPORTER_OTLP_LOGS_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION";
/// Longest time one export request may take, in milliseconds (default 10000).
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// The traces' timeout; wins over [`OTEL_EXPORTER_OTLP_TIMEOUT`].
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// The metrics' timeout; wins over [`OTEL_EXPORTER_OTLP_TIMEOUT`].
pub const OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT";
/// The logs' timeout; wins over [`OTEL_EXPORTER_OTLP_TIMEOUT`].
pub const OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT";
/// A PEM file of CA certificates trusted (besides the system's) to verify
/// an `https://` collector.
pub const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// The traces' CA file; wins over [`OTEL_EXPORTER_OTLP_CERTIFICATE`].
pub const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// The metrics' CA file; wins over [`OTEL_EXPORTER_OTLP_CERTIFICATE`].
pub const OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE";
/// The logs' CA file; wins over [`OTEL_EXPORTER_OTLP_CERTIFICATE`].
pub const OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE";
/// `prometheus` (default), `otlp`, `prometheus,otlp` or `none`.
pub const OTEL_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
/// Milliseconds between two OTLP metric exports (default 60000).
pub const OTEL_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// `cumulative` (default) or `delta`.
pub const OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: &str =
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
/// `none` (default: JSON lines on stdout only) or `otlp`.
pub const OTEL_LOGS_EXPORTER: &str = "OTEL_LOGS_EXPORTER";
/// `true` (default) or `false`: write the JSON log lines to stdout (or the
/// configured writer). `false` with `OTEL_LOGS_EXPORTER=otlp` sends logs
/// over OTLP only.
pub const GLIMPSE_LOG_STDOUT: &str = "GLIMPSE_LOG_STDOUT";
/// Extra resource attributes of every signal, `key=value,key2=value2`,
/// values percent-decoded; the configured `service.name`,
/// `service.version` and `deployment.environment.name` win over them.
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// Most log records waiting for OTLP export; more are dropped and counted.
pub(crate) const OTEL_BLRP_MAX_QUEUE_SIZE: &str = "OTEL_BLRP_MAX_QUEUE_SIZE";
/// Delay between two scheduled log exports, in milliseconds.
pub(crate) const OTEL_BLRP_SCHEDULE_DELAY: &str = "OTEL_BLRP_SCHEDULE_DELAY";
/// Most log records in one export.
pub(crate) const OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE";
/// Longest time one log export may take, in milliseconds.
pub(crate) const OTEL_BLRP_EXPORT_TIMEOUT: &str = "OTEL_BLRP_EXPORT_TIMEOUT";

/// The default of `OTEL_EXPORTER_OTLP_TIMEOUT`: 10 s.
pub(crate) const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_millis(10_000);
/// The default of `OTEL_METRIC_EXPORT_INTERVAL`: 60 s.
pub(crate) const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_millis(60_000);

/// OTLP payload compression. Read from `OTEL_EXPORTER_OTLP_COMPRESSION`
/// and its per-signal variants (`gzip`, `none`).
///
/// ```
/// use glimpse_obs::{Config, OtlpCompression};
/// let config = Config::default().otlp_compression(OtlpCompression::Gzip);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OtlpCompression {
    /// Bodies sent as they are.
    #[default]
    None,
    /// gzip: `grpc-encoding: gzip` over gRPC, `content-encoding: gzip` over HTTP.
    Gzip,
}

/// How OTLP metric points are aggregated over time. Read from
/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (`cumulative`,
/// `delta`).
///
/// ```
/// use glimpse_obs::{Config, Temporality};
/// let config = Config::default().metrics_temporality(Temporality::Delta);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Temporality {
    /// Every export carries the totals since the process started (as the
    /// Prometheus scrape does).
    #[default]
    Cumulative,
    /// Every export carries what changed since the previous export
    /// (counters and histograms; gauges stay as they are).
    Delta,
}

/// The names of one signal's (or the shared) OTLP variables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OtlpVars {
    pub(crate) endpoint: &'static str,
    pub(crate) protocol: &'static str,
    pub(crate) headers: &'static str,
    pub(crate) compression: &'static str,
    pub(crate) timeout: &'static str,
    pub(crate) certificate: &'static str,
}

/// The shared variables.
pub(crate) const SHARED_VARS: OtlpVars = OtlpVars {
    endpoint: OTEL_EXPORTER_OTLP_ENDPOINT,
    protocol: OTEL_EXPORTER_OTLP_PROTOCOL,
    headers: OTEL_EXPORTER_OTLP_HEADERS,
    compression: OTEL_EXPORTER_OTLP_COMPRESSION,
    timeout: OTEL_EXPORTER_OTLP_TIMEOUT,
    certificate: OTEL_EXPORTER_OTLP_CERTIFICATE,
};
/// The traces' variables.
pub(crate) const TRACES_VARS: OtlpVars = OtlpVars {
    endpoint: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    protocol: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    headers: OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    compression: OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    timeout: OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    certificate: OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
};
/// The metrics' variables.
pub(crate) const METRICS_VARS: OtlpVars = OtlpVars {
    endpoint: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    protocol: OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    headers: OTEL_EXPORTER_OTLP_METRICS_HEADERS,
    compression: OTEL_EXPORTER_OTLP_METRICS_COMPRESSION,
    timeout: OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    certificate: OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE,
};
/// The logs' variables.
pub(crate) const LOGS_VARS: OtlpVars = OtlpVars {
    endpoint: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    protocol: OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    headers: OTEL_EXPORTER_OTLP_LOGS_HEADERS,
    compression: OTEL_EXPORTER_OTLP_LOGS_COMPRESSION,
    timeout: OTEL_EXPORTER_OTLP_LOGS_TIMEOUT,
    certificate: OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE,
};

/// One level of OTLP settings as written (shared or one signal's); `None`
/// is "not set here". Its `Debug` shows header names, never their values
/// (API keys).
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct OtlpLayer {
    /// An `http://` or `https://` URL, trimmed.
    pub(crate) endpoint: Option<String>,
    pub(crate) protocol: Option<super::OtlpProtocol>,
    /// Decoded `(name, value)` pairs, names lowercase.
    pub(crate) headers: Option<Vec<(String, String)>>,
    pub(crate) compression: Option<OtlpCompression>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) certificate: Option<PathBuf>,
}

impl std::fmt::Debug for OtlpLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpLayer")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self
                    .headers
                    .as_ref()
                    .map(|h| h.iter().map(|(k, _)| format!("{k}=…")).collect::<Vec<_>>()),
            )
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .field("certificate", &self.certificate)
            .finish()
    }
}

impl OtlpLayer {
    /// Read the variables `vars` through `get` (empty values already unset).
    pub(crate) fn read(
        vars: &OtlpVars,
        get: &impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, Error> {
        let mut layer = Self::default();
        if let Some(v) = get(vars.endpoint) {
            let t = v.trim();
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                return Err(invalid(
                    vars.endpoint,
                    &v,
                    "expected a URL such as http://jaeger:4317",
                ));
            }
            layer.endpoint = Some(t.to_owned());
        }
        if let Some(v) = get(vars.protocol) {
            layer.protocol = Some(match v.trim() {
                "grpc" => super::OtlpProtocol::Grpc,
                "http/protobuf" => super::OtlpProtocol::HttpProtobuf,
                _ => {
                    return Err(invalid(vars.protocol, &v, "expected grpc or http/protobuf"));
                }
            });
        }
        if let Some(v) = get(vars.headers) {
            layer.headers =
                Some(parse_headers(&v).map_err(|reason| invalid(vars.headers, &v, &reason))?);
        }
        if let Some(v) = get(vars.compression) {
            layer.compression = Some(
                parse_compression(&v)
                    .ok_or_else(|| invalid(vars.compression, &v, "expected gzip or none"))?,
            );
        }
        if let Some(v) = get(vars.timeout) {
            layer.timeout = Some(positive_millis(vars.timeout, &v)?);
        }
        if let Some(v) = get(vars.certificate) {
            layer.certificate = Some(PathBuf::from(v.trim()));
        }
        Ok(layer)
    }
}

/// Which metric exporters run (`OTEL_METRICS_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetricsExporters {
    /// The Prometheus scrape listener.
    pub(crate) prometheus: bool,
    /// The periodic OTLP export.
    pub(crate) otlp: bool,
}

impl Default for MetricsExporters {
    fn default() -> Self {
        Self {
            prometheus: true,
            otlp: false,
        }
    }
}

/// Every export setting of issue 13, kept together so it moves as one piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportSettings {
    /// `OTEL_EXPORTER_OTLP_*` (no signal in the name).
    pub(crate) shared: OtlpLayer,
    /// `OTEL_EXPORTER_OTLP_TRACES_*`.
    pub(crate) traces: OtlpLayer,
    /// `OTEL_EXPORTER_OTLP_METRICS_*`.
    pub(crate) metrics: OtlpLayer,
    /// `OTEL_EXPORTER_OTLP_LOGS_*`.
    pub(crate) logs: OtlpLayer,
    pub(crate) metrics_exporters: MetricsExporters,
    pub(crate) metric_export_interval: Duration,
    pub(crate) temporality: Temporality,
    /// `OTEL_LOGS_EXPORTER=otlp`.
    pub(crate) logs_otlp: bool,
    /// `OTEL_BLRP_*`.
    pub(crate) logs_batch: BatchSettings,
    /// `GLIMPSE_LOG_STDOUT`.
    pub(crate) log_stdout: bool,
    /// `OTEL_RESOURCE_ATTRIBUTES`, in order, values decoded.
    pub(crate) resource_attributes: Vec<(String, String)>,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            shared: OtlpLayer::default(),
            traces: OtlpLayer::default(),
            metrics: OtlpLayer::default(),
            logs: OtlpLayer::default(),
            metrics_exporters: MetricsExporters::default(),
            metric_export_interval: DEFAULT_METRIC_EXPORT_INTERVAL,
            temporality: Temporality::Cumulative,
            logs_otlp: false,
            logs_batch: BatchSettings::logs_default(),
            log_stdout: true,
            resource_attributes: Vec::new(),
        }
    }
}

impl ExportSettings {
    /// Read every variable of issue 13 through `get` (empty values already
    /// unset) and `lookup` (raw, for the batch settings).
    pub(crate) fn read(
        get: &impl Fn(&'static str) -> Option<String>,
        lookup: &impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, Error> {
        let mut s = Self {
            shared: OtlpLayer::read(&SHARED_VARS, get)?,
            traces: OtlpLayer::read(&TRACES_VARS, get)?,
            metrics: OtlpLayer::read(&METRICS_VARS, get)?,
            logs: OtlpLayer::read(&LOGS_VARS, get)?,
            ..Self::default()
        };
        if let Some(v) = get(OTEL_METRICS_EXPORTER) {
            s.metrics_exporters = parse_metrics_exporter(&v)?;
        }
        if let Some(v) = get(OTEL_METRIC_EXPORT_INTERVAL) {
            s.metric_export_interval = positive_millis(OTEL_METRIC_EXPORT_INTERVAL, &v)?;
        }
        if let Some(v) = get(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE) {
            s.temporality = match v.trim().to_ascii_lowercase().as_str() {
                "cumulative" => Temporality::Cumulative,
                "delta" => Temporality::Delta,
                _ => {
                    return Err(invalid(
                        OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
                        &v,
                        "expected cumulative or delta",
                    ));
                }
            };
        }
        if let Some(v) = get(OTEL_LOGS_EXPORTER) {
            s.logs_otlp = match v.trim().to_ascii_lowercase().as_str() {
                "none" => false,
                "otlp" => true,
                _ => return Err(invalid(OTEL_LOGS_EXPORTER, &v, "expected none or otlp")),
            };
        }
        s.logs_batch = BatchSettings::logs_from_lookup(lookup)?;
        if let Some(v) = get(GLIMPSE_LOG_STDOUT) {
            s.log_stdout = match v.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid(GLIMPSE_LOG_STDOUT, &v, "expected true or false")),
            };
        }
        if let Some(v) = get(OTEL_RESOURCE_ATTRIBUTES) {
            s.resource_attributes = parse_resource_attributes(&v)
                .map_err(|reason| invalid(OTEL_RESOURCE_ATTRIBUTES, &v, &reason))?;
        }
        Ok(s)
    }
}

fn parse_compression(v: &str) -> Option<OtlpCompression> {
    match v.trim().to_ascii_lowercase().as_str() {
        "gzip" => Some(OtlpCompression::Gzip),
        "none" => Some(OtlpCompression::None),
        _ => None,
    }
}

fn positive_millis(name: &'static str, v: &str) -> Result<Duration, Error> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
        _ => Err(invalid(
            name,
            v,
            "expected a positive whole number of milliseconds",
        )),
    }
}

fn parse_metrics_exporter(v: &str) -> Result<MetricsExporters, Error> {
    let mut e = MetricsExporters {
        prometheus: false,
        otlp: false,
    };
    let mut none = false;
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.to_ascii_lowercase().as_str() {
            "prometheus" => e.prometheus = true,
            "otlp" => e.otlp = true,
            "none" => none = true,
            _ => {
                return Err(invalid(
                    OTEL_METRICS_EXPORTER,
                    v,
                    "expected prometheus, otlp, prometheus,otlp or none",
                ));
            }
        }
    }
    if none && (e.prometheus || e.otlp) {
        return Err(invalid(
            OTEL_METRICS_EXPORTER,
            v,
            "none cannot be combined with another exporter",
        ));
    }
    Ok(e)
}

/// Parse `OTEL_EXPORTER_OTLP_HEADERS`: comma-separated `key=value` pairs
/// (W3C Baggage's format without properties), keys and values
/// percent-decoded and trimmed; each must make a valid HTTP header.
pub(crate) fn parse_headers(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (k, val) in members(v, "key=value pairs such as api-key=secret,tenant=a")? {
        let key = percent_decode(k)?.to_ascii_lowercase();
        let value = percent_decode(val)?;
        if http::HeaderName::from_bytes(key.as_bytes()).is_err() || key.is_empty() {
            return Err(format!("{key:?} is not a valid header name"));
        }
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(format!("the value of {key:?} is not a valid header value"));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// The `key=value` members of a comma-separated list, key and value
/// trimmed, empty members skipped; a member without `=` is an error that
/// shows `expected`.
fn members<'a>(v: &'a str, expected: &str) -> Result<Vec<(&'a str, &'a str)>, String> {
    v.split(',')
        .filter(|member| !member.trim().is_empty())
        .map(|member| match member.split_once('=') {
            Some((k, val)) => Ok((k.trim(), val.trim())),
            None => Err(format!(
                "{:?} is not key=value (expected {expected})",
                member.trim()
            )),
        })
        .collect()
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` members, comma-separated,
/// values percent-encoded (W3C Baggage octets, as the specification says).
/// The specification discards the whole value on a malformed member; here
/// it is an error instead, so a typo is seen at start rather than a
/// resource that silently lacks what the deployment set.
pub(crate) fn parse_resource_attributes(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (key, val) in members(v, "pairs such as team=matching,k8s.pod.name=payment-1")? {
        if key.is_empty() {
            return Err(format!("{:?} has an empty key", format!("={val}")));
        }
        out.push((key.to_owned(), percent_decode(val)?));
    }
    Ok(out)
}

/// `%XX` sequences decoded; the result must be UTF-8.
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return Err(format!("{s:?} has a % not followed by two hex digits")),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, OtlpProtocol, test_util::env};

    #[test]
    fn defaults_follow_the_specification() {
        let c = Config::from_lookup(env(&[])).unwrap();
        let e = &c.export;
        assert_eq!(e.shared, OtlpLayer::default());
        assert!(e.metrics_exporters.prometheus && !e.metrics_exporters.otlp);
        assert_eq!(e.metric_export_interval, Duration::from_secs(60));
        assert_eq!(e.temporality, Temporality::Cumulative);
        assert!(!e.logs_otlp);
        assert!(e.log_stdout);
        assert_eq!(e.logs_batch.max_queue_size, 2048);
        assert_eq!(e.logs_batch.scheduled_delay, Duration::from_millis(1000));
        assert_eq!(e.logs_batch.max_export_batch_size, 512);
        assert_eq!(e.logs_batch.export_timeout, Duration::from_millis(30_000));
        // The span batch: the batch span processor's defaults.
        assert_eq!(c.batch.max_queue_size, 2048);
        assert_eq!(c.batch.scheduled_delay, Duration::from_millis(5000));
        assert_eq!(c.batch.max_export_batch_size, 512);
        assert_eq!(c.batch.export_timeout, Duration::from_millis(30_000));
    }

    #[test]
    fn code_replaces_the_environment_for_the_metrics_and_logs_switches() {
        let from_env = || {
            Config::from_lookup(env(&[
                ("OTEL_METRICS_EXPORTER", "otlp"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
                ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
                ("OTEL_LOGS_EXPORTER", "otlp"),
                ("GLIMPSE_LOG_STDOUT", "false"),
            ]))
            .unwrap()
        };
        let e = from_env().export;
        assert!(!e.metrics_exporters.prometheus && e.metrics_exporters.otlp);
        assert_eq!(e.metric_export_interval, Duration::from_millis(1500));
        assert_eq!(e.temporality, Temporality::Delta);
        assert!(e.logs_otlp && !e.log_stdout);

        let c = from_env()
            .metrics_prometheus(true)
            .metrics_otlp(false)
            .metric_export_interval(Duration::from_secs(15))
            .metrics_temporality(Temporality::Cumulative)
            .logs_otlp(false)
            .log_stdout(true);
        let e = &c.export;
        assert_eq!(
            e.metrics_exporters,
            MetricsExporters {
                prometheus: true,
                otlp: false
            }
        );
        assert_eq!(e.metric_export_interval, Duration::from_secs(15));
        assert_eq!(e.temporality, Temporality::Cumulative);
        assert!(!e.logs_otlp);
        assert!(e.log_stdout);

        // And the other way: the environment's defaults, turned on in code.
        let c = Config::from_lookup(env(&[]))
            .unwrap()
            .metrics_otlp(true)
            .metrics_temporality(Temporality::Delta)
            .logs_otlp(true)
            .log_stdout(false);
        let e = &c.export;
        assert!(e.metrics_exporters.prometheus && e.metrics_exporters.otlp);
        assert_eq!(e.temporality, Temporality::Delta);
        assert!(e.logs_otlp && !e.log_stdout);
        // An interval of zero would spin the exporter: the least is 1 ms.
        let c = Config::default().metric_export_interval(Duration::ZERO);
        assert_eq!(c.export.metric_export_interval, Duration::from_millis(1));
    }

    #[test]
    fn every_signal_reads_its_own_variables_and_the_shared_ones() {
        let c = Config::from_lookup(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://shared:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://m:4318/x"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "b=2"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "700"),
            ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/m.pem"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:4318/v1/logs"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "900"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "c=3"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]))
        .unwrap();
        let e = &c.export;
        assert_eq!(e.shared.endpoint.as_deref(), Some("http://shared:4317"));
        assert_eq!(e.shared.protocol, Some(OtlpProtocol::Grpc));
        assert_eq!(e.shared.headers, Some(vec![("a".into(), "1".into())]));
        assert_eq!(e.shared.compression, Some(OtlpCompression::None));
        assert_eq!(e.shared.timeout, Some(Duration::from_secs(5)));
        assert_eq!(e.shared.certificate, Some(PathBuf::from("/ca.pem")));
        assert_eq!(e.metrics.endpoint.as_deref(), Some("https://m:4318/x"));
        assert_eq!(e.metrics.protocol, Some(OtlpProtocol::HttpProtobuf));
        assert_eq!(e.metrics.headers, Some(vec![("b".into(), "2".into())]));
        assert_eq!(e.metrics.compression, Some(OtlpCompression::Gzip));
        assert_eq!(e.metrics.timeout, Some(Duration::from_millis(700)));
        assert_eq!(e.metrics.certificate, Some(PathBuf::from("/m.pem")));
        assert_eq!(e.logs.endpoint.as_deref(), Some("http://l:4318/v1/logs"));
        assert_eq!(e.logs.timeout, Some(Duration::from_millis(900)));
        assert_eq!(e.logs.protocol, None);
        assert_eq!(e.traces.headers, Some(vec![("c".into(), "3".into())]));
        assert_eq!(e.traces.protocol, Some(OtlpProtocol::HttpProtobuf));
        assert_eq!(e.traces.endpoint, None);
    }

    #[test]
    fn the_exporter_switches_and_the_log_batch_parse() {
        let c = Config::from_lookup(env(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("GLIMPSE_LOG_STDOUT", "false"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "50"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_BLRP_EXPORT_TIMEOUT", "2000"),
        ]))
        .unwrap();
        let e = &c.export;
        assert_eq!(
            e.metrics_exporters,
            MetricsExporters {
                prometheus: false,
                otlp: true
            }
        );
        assert_eq!(e.metric_export_interval, Duration::from_millis(1500));
        assert_eq!(e.temporality, Temporality::Delta);
        assert!(e.logs_otlp);
        assert!(!e.log_stdout);
        assert_eq!(e.logs_batch.max_queue_size, 100);
        assert_eq!(e.logs_batch.scheduled_delay, Duration::from_millis(50));
        assert_eq!(
            e.logs_batch.max_export_batch_size, 100,
            "capped by the queue"
        );
        assert_eq!(e.logs_batch.export_timeout, Duration::from_secs(2));
        // The span batch is not touched by the log batch's variables.
        assert_eq!(c.batch, BatchSettings::default());
        for (v, prometheus, otlp) in [
            ("prometheus", true, false),
            ("prometheus,otlp", true, true),
            (" otlp , prometheus ", true, true),
            ("none", false, false),
        ] {
            let c = Config::from_lookup(env(&[("OTEL_METRICS_EXPORTER", v)])).unwrap();
            assert_eq!(
                c.export.metrics_exporters,
                MetricsExporters { prometheus, otlp },
                "{v}"
            );
        }
    }

    #[test]
    fn every_bad_value_is_an_error_naming_the_variable_and_the_value() {
        let cases = [
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "ftp://c"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "c:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "udp"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "HTTP"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=%zz"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "bad key=1"),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "a=%0A"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "br"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "deflate"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "yes"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "-1"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "1.5"),
            ("OTEL_METRICS_EXPORTER", "statsd"),
            ("OTEL_METRICS_EXPORTER", "none,otlp"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1m"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "lowmemory",
            ),
            ("OTEL_LOGS_EXPORTER", "console"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "many"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "0"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "-3"),
            ("OTEL_BLRP_EXPORT_TIMEOUT", "30s"),
            ("GLIMPSE_LOG_STDOUT", "maybe"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "5s"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "-1"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1.5"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=core,region"),
            ("OTEL_RESOURCE_ATTRIBUTES", "=orphan"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=%zz"),
        ];
        for (name, value) in cases {
            let err = Config::from_lookup(env(&[(name, value)])).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidEnv { name: n, .. } if *n == name),
                "{name}={value}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(name) && msg.contains(value), "{msg}");
        }
    }

    #[test]
    fn resource_attributes_are_percent_decoded_pairs_in_order() {
        let c = Config::from_lookup(env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            " team=core, region=eu%2Dwest ,,k8s.pod.name=payment-7d9f ",
        )]))
        .unwrap();
        assert_eq!(
            c.export.resource_attributes,
            vec![
                ("team".to_owned(), "core".to_owned()),
                ("region".to_owned(), "eu-west".to_owned()),
                ("k8s.pod.name".to_owned(), "payment-7d9f".to_owned()),
            ]
        );
        let c = Config::from_lookup(env(&[])).unwrap();
        assert!(c.export.resource_attributes.is_empty());
    }

    #[test]
    fn debug_shows_header_names_not_their_values() {
        let c =
            Config::from_lookup(env(&[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret")])).unwrap();
        let text = format!("{c:?}");
        assert!(
            text.contains("api-key") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn headers_are_percent_decoded_pairs() {
        assert_eq!(
            parse_headers("api-key=secret, Authorization=Bearer%20abc%3D%3D,,x=a%2Cb").unwrap(),
            vec![
                ("api-key".to_owned(), "secret".to_owned()),
                ("authorization".to_owned(), "Bearer abc==".to_owned()),
                ("x".to_owned(), "a,b".to_owned()),
            ]
        );
        assert_eq!(parse_headers("k=").unwrap(), vec![("k".into(), "".into())]);
        assert!(parse_headers("=v").is_err());
        assert!(parse_headers("k=%4").is_err());
        assert!(parse_headers("k=%ff").is_err(), "not UTF-8");
    }
}
