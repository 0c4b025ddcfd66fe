//! One signal's resolved OTLP settings: the per-signal variable wins over
//! the shared one, which wins over the default (as the OpenTelemetry
//! specification says).

use std::{path::PathBuf, time::Duration};

use crate::{
    Config, Error, OtlpCompression, OtlpProtocol,
    config::{
        DEFAULT_OTLP_TIMEOUT, LOGS_VARS, METRICS_VARS, OtlpLayer, OtlpVars, SHARED_VARS,
        TRACES_VARS,
    },
};

/// One of the three OpenTelemetry signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Spans.
    Traces,
    /// Metric points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// `traces`, `metrics` or `logs`, as in the HTTP path and variable names.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }

    /// The collector's gRPC method for this signal.
    pub(crate) const fn grpc_path(self) -> &'static str {
        match self {
            Self::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Self::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Self::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }

    /// The OTLP/HTTP path for this signal.
    pub(crate) const fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Metrics => "/v1/metrics",
            Self::Logs => "/v1/logs",
        }
    }

    fn vars(self) -> &'static OtlpVars {
        match self {
            Self::Traces => &TRACES_VARS,
            Self::Metrics => &METRICS_VARS,
            Self::Logs => &LOGS_VARS,
        }
    }

    fn layer(self, config: &Config) -> &OtlpLayer {
        match self {
            Self::Traces => &config.export.traces,
            Self::Metrics => &config.export.metrics,
            Self::Logs => &config.export.logs,
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and how one signal is exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    pub(crate) signal: Signal,
    /// For `http/protobuf` the full URL posted to; for gRPC the endpoint.
    pub(crate) url: String,
    pub(crate) protocol: OtlpProtocol,
    /// Lowercase names, decoded values.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) compression: OtlpCompression,
    /// Bound of one export request.
    pub(crate) timeout: Duration,
    /// A PEM file of extra trusted CAs, with the variable it came from.
    pub(crate) certificate: Option<(&'static str, PathBuf)>,
}

impl Destination {
    /// `signal`'s settings, or `None` when no endpoint is configured for it.
    pub(crate) fn resolve(config: &Config, signal: Signal) -> Option<Self> {
        let own = signal.layer(config);
        let shared = &config.export.shared;
        let protocol = own.protocol.or(shared.protocol).unwrap_or_default();
        let url = match (&own.endpoint, &shared.endpoint) {
            // A per-signal endpoint is used as written.
            (Some(own), _) => own.clone(),
            (None, Some(shared)) => match protocol {
                OtlpProtocol::HttpProtobuf => http_url(shared, signal),
                _ => shared.clone(),
            },
            (None, None) => return None,
        };
        let certificate = match (&own.certificate, &shared.certificate) {
            (Some(p), _) => Some((signal.vars().certificate, p.clone())),
            (None, Some(p)) => Some((SHARED_VARS.certificate, p.clone())),
            (None, None) => None,
        };
        Some(Self {
            signal,
            url,
            protocol,
            headers: own
                .headers
                .clone()
                .or_else(|| shared.headers.clone())
                .unwrap_or_default(),
            compression: own.compression.or(shared.compression).unwrap_or_default(),
            timeout: own
                .timeout
                .or(shared.timeout)
                .unwrap_or(DEFAULT_OTLP_TIMEOUT),
            certificate,
        })
    }

    /// Whether the collector is reached over TLS.
    pub(crate) fn is_https(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// The configured CA file's contents, if any.
    ///
    /// # Errors
    /// [`Error::InvalidEnv`] naming the variable when the file cannot be
    /// read or holds no PEM certificate.
    pub(crate) fn ca_pem(&self) -> Result<Option<Vec<u8>>, Error> {
        let Some((name, path)) = &self.certificate else {
            return Ok(None);
        };
        let bad = |reason: String| Error::InvalidEnv {
            name,
            value: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read the file: {e}")))?;
        if !pem
            .windows(b"-----BEGIN CERTIFICATE-----".len())
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(bad("the file holds no PEM certificate".to_owned()));
        }
        Ok(Some(pem))
    }
}

/// The OTLP/HTTP URL of `signal` for the shared endpoint: the signal's path
/// appended (once), as the specification says for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub(crate) fn http_url(endpoint: &str, signal: Signal) -> String {
    let base = endpoint.trim().trim_end_matches('/');
    if base.ends_with(signal.http_path()) {
        return base.to_owned();
    }
    format!("{base}{}", signal.http_path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::env;

    fn resolve(pairs: &[(&str, &str)], signal: Signal) -> Option<Destination> {
        Destination::resolve(&Config::from_lookup(env(pairs)).unwrap(), signal)
    }

    #[test]
    fn no_endpoint_means_no_destination() {
        for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
            assert_eq!(resolve(&[], signal), None);
        }
        assert_eq!(
            resolve(
                &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4317")],
                Signal::Logs
            ),
            None
        );
    }

    #[test]
    fn the_shared_endpoint_gets_the_signal_path_over_http_only() {
        let shared = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ];
        for (signal, url) in [
            (Signal::Traces, "http://c:4318/v1/traces"),
            (Signal::Metrics, "http://c:4318/v1/metrics"),
            (Signal::Logs, "http://c:4318/v1/logs"),
        ] {
            assert_eq!(resolve(&shared, signal).unwrap().url, url);
        }
        let d = resolve(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")],
            Signal::Metrics,
        )
        .unwrap();
        assert_eq!(d.url, "http://c:4317");
        assert_eq!(d.protocol, OtlpProtocol::Grpc);
        assert_eq!(
            http_url("http://c/v1/logs", Signal::Logs),
            "http://c/v1/logs"
        );
    }

    #[test]
    fn per_signal_settings_win_over_the_shared_ones() {
        let pairs = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://shared:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/shared.pem"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "http://logs:4318/custom",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "c=3"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "250"),
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/logs.pem"),
        ];
        let logs = resolve(&pairs, Signal::Logs).unwrap();
        assert_eq!(logs.url, "http://logs:4318/custom", "used as written");
        assert_eq!(logs.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(logs.headers, vec![("c".to_owned(), "3".to_owned())]);
        assert_eq!(logs.compression, OtlpCompression::Gzip);
        assert_eq!(logs.timeout, Duration::from_millis(250));
        assert_eq!(
            logs.certificate,
            Some(("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/logs.pem".into()))
        );
        let traces = resolve(&pairs, Signal::Traces).unwrap();
        assert_eq!(traces.url, "http://shared:4318");
        assert_eq!(traces.protocol, OtlpProtocol::Grpc);
        assert_eq!(traces.headers.len(), 2);
        assert_eq!(traces.compression, OtlpCompression::None);
        assert_eq!(traces.timeout, Duration::from_secs(5));
        assert_eq!(
            traces.certificate,
            Some(("OTEL_EXPORTER_OTLP_CERTIFICATE", "/shared.pem".into()))
        );
    }

    #[test]
    fn defaults_are_grpc_no_compression_and_ten_seconds() {
        let d = resolve(
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317")],
            Signal::Traces,
        )
        .unwrap();
        assert_eq!(d.protocol, OtlpProtocol::Grpc);
        assert_eq!(d.compression, OtlpCompression::None);
        assert_eq!(d.timeout, Duration::from_secs(10));
        assert!(d.headers.is_empty());
        assert_eq!(d.certificate, None);
        assert!(!d.is_https());
    }

    #[test]
    fn code_replaces_the_environment_for_every_signal() {
        let config = Config::from_lookup(env(&[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4318/x"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "100"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
        ]))
        .unwrap()
        .otlp_endpoint(Some("http://code:4318".into()))
        .otlp_protocol(OtlpProtocol::HttpProtobuf)
        .otlp_timeout(Duration::from_secs(2))
        .otlp_compression(OtlpCompression::Gzip)
        .otlp_headers([("x-tenant", "a")])
        .unwrap();
        let d = Destination::resolve(&config, Signal::Metrics).unwrap();
        assert_eq!(d.url, "http://code:4318/v1/metrics");
        assert_eq!(d.timeout, Duration::from_secs(2));
        assert_eq!(d.compression, OtlpCompression::Gzip);
        assert_eq!(d.headers, vec![("x-tenant".to_owned(), "a".to_owned())]);
        assert!(Config::default().otlp_headers([("bad name", "v")]).is_err());
    }

    #[test]
    fn an_unreadable_certificate_is_an_error_naming_its_variable() {
        let d = resolve(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317"),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
                    "/nonexistent/ca.pem",
                ),
            ],
            Signal::Metrics,
        )
        .unwrap();
        assert!(d.is_https());
        let err = d.ca_pem().unwrap_err().to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE")
                && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }
}
