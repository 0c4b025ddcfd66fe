//! Configuration: a builder with defaults, filled from the environment by
//! [`Config::from_env`], overridden in code.
//!
//! Precedence, highest first (the table of [`Config`] has the service
//! name's):
//!
//! | source | example |
//! |---|---|
//! | code | `Config::from_env()?.slow_query(Duration::from_millis(200))` |
//! | environment | `GLIMPSE_SLOW_QUERY_MS=200` |
//! | default | 500 ms |

use std::{
    collections::{HashMap, HashSet},
    fmt,
    io::Write,
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use tracing_subscriber::EnvFilter;

use crate::Error;

mod otlp_env;

pub(crate) use otlp_env::{
    DEFAULT_OTLP_TIMEOUT, ExportSettings, LOGS_VARS, METRICS_VARS, OTEL_BLRP_EXPORT_TIMEOUT,
    OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, OTEL_BLRP_MAX_QUEUE_SIZE, OTEL_BLRP_SCHEDULE_DELAY, OtlpLayer,
    OtlpVars, SHARED_VARS, TRACES_VARS, percent_decode,
};
pub use otlp_env::{
    GLIMPSE_LOG_STDOUT, OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE,
    OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    OTEL_EXPORTER_OTLP_LOGS_HEADERS, OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    OTEL_EXPORTER_OTLP_LOGS_TIMEOUT, OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE,
    OTEL_EXPORTER_OTLP_METRICS_COMPRESSION, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_HEADERS, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_LOGS_EXPORTER, OTEL_METRIC_EXPORT_INTERVAL,
    OTEL_METRICS_EXPORTER, OTEL_RESOURCE_ATTRIBUTES, OtlpCompression, Temporality,
};

/// Service name (standard OpenTelemetry name). Wins over [`GLIMPSE_SERVICE`].
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// Service name, Glimpse spelling.
pub const GLIMPSE_SERVICE: &str = "GLIMPSE_SERVICE";
/// Service version, reported as `service.version` on traces and `version` on build info.
pub const GLIMPSE_SERVICE_VERSION: &str = "GLIMPSE_SERVICE_VERSION";
/// `production`, `staging` or `development`.
pub const GLIMPSE_ENV: &str = "GLIMPSE_ENV";
/// Level filter in `tracing-subscriber` `EnvFilter` syntax, every directive
/// with its level (`info,sqlx=warn`; a bare word such as `infoo` is an
/// error). Wins over [`RUST_LOG`].
pub const GLIMPSE_LOG: &str = "GLIMPSE_LOG";
/// Level filter, the Rust ecosystem's usual name.
pub const RUST_LOG: &str = "RUST_LOG";
/// `json` (default) or `pretty`.
pub const GLIMPSE_LOG_FORMAT: &str = "GLIMPSE_LOG_FORMAT";
/// Sampler name, as in the OpenTelemetry specification.
pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// Sampler argument (a ratio in `0..=1` for the ratio samplers).
pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// Prometheus scrape listener address, or `off`.
pub const GLIMPSE_METRICS_ADDR: &str = "GLIMPSE_METRICS_ADDR";
/// Slow-query threshold in milliseconds.
pub const GLIMPSE_SLOW_QUERY_MS: &str = "GLIMPSE_SLOW_QUERY_MS";
/// Requests slower than this many milliseconds log their access line at WARN.
pub const GLIMPSE_SLOW_REQUEST_MS: &str = "GLIMPSE_SLOW_REQUEST_MS";
/// Per-route access-log sampling, e.g. `/health=0,/feed=0.1`.
pub const GLIMPSE_LOG_SAMPLE: &str = "GLIMPSE_LOG_SAMPLE";
/// `true` (default) or `false`: sample the tokio runtime into `tokio_*` metrics.
pub const GLIMPSE_RUNTIME_METRICS: &str = "GLIMPSE_RUNTIME_METRICS";
/// Milliseconds the service keeps serving, answering ready with 503, after
/// SIGTERM; `0` turns the drain off.
pub const GLIMPSE_SHUTDOWN_DRAIN_MS: &str = "GLIMPSE_SHUTDOWN_DRAIN_MS";
/// `false` on public edges: an incoming `traceparent` starts a new trace and
/// is kept as a span link only (`true` or `false`; default `true`).
pub const GLIMPSE_TRUST_TRACEPARENT: &str = "GLIMPSE_TRUST_TRACEPARENT";

/// Where the service runs; becomes the `env` label and `deployment.environment.name`.
/// Read from `GLIMPSE_ENV` (`production`, `staging`, `development`).
///
/// ```
/// use glimpse_obs::{Config, Environment};
///
/// let config = Config::default().environment(Environment::Production);
/// assert_eq!(Environment::Production.as_str(), "production");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Environment {
    /// Live traffic.
    Production,
    /// Pre-production.
    Staging,
    /// A developer's machine or CI.
    #[default]
    Development,
}

impl Environment {
    /// The lowercase name used in labels and resources.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Development => "development",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How log lines are written. Read from `GLIMPSE_LOG_FORMAT` (`json`, `pretty`).
///
/// ```
/// use glimpse_obs::{Config, LogFormat};
///
/// let config = Config::default().log_format(LogFormat::Pretty); // local development
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line (production).
    #[default]
    Json,
    /// Human-readable, coloured lines for local development.
    Pretty,
}

/// OTLP transport. Read from `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`,
/// `http/protobuf`).
///
/// ```
/// use glimpse_obs::{Config, OtlpProtocol};
///
/// let config = Config::default()
///     .otlp_endpoint(Some("http://jaeger:4318".into()))
///     .otlp_protocol(OtlpProtocol::HttpProtobuf);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317).
    #[default]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318).
    HttpProtobuf,
}

/// Trace sampling strategy, named as in `OTEL_TRACES_SAMPLER` (the ratio
/// from `OTEL_TRACES_SAMPLER_ARG`).
///
/// ```
/// use glimpse_obs::{Config, Sampler};
///
/// // Keep 10 % of the traces that start here; follow the caller otherwise.
/// let config = Config::default().sampler(Sampler::ParentBasedTraceIdRatio(0.1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Sampler {
    /// Record every trace.
    AlwaysOn,
    /// Record none.
    AlwaysOff,
    /// Record this fraction of new traces.
    TraceIdRatio(f64),
    /// Follow the parent's decision; record every root.
    #[default]
    ParentBasedAlwaysOn,
    /// Follow the parent's decision; record no root.
    ParentBasedAlwaysOff,
    /// Follow the parent's decision; record this fraction of roots.
    ParentBasedTraceIdRatio(f64),
}

/// A writer for log lines, shared with the background thread.
pub(crate) type BoxWriter = Box<dyn Write + Send + 'static>;

/// The settings of `glimpse_obs`. Build one with [`Config::from_env`] (or
/// [`Config::default`] to ignore the environment), adjust it in code, then
/// call [`Config::init`].
///
/// ```no_run
/// # fn main() -> Result<(), glimpse_obs::Error> {
/// let _guard = glimpse_obs::Config::from_env()?
///     .default_service("payment") // OTEL_SERVICE_NAME still wins
///     .metrics_addr(None)
///     .init()?;
/// # Ok(()) }
/// ```
///
/// A setter called in code wins over the environment, which wins over the
/// defaults. The service name has one more level, so a name written in
/// code can still be changed by the deployment:
///
/// | precedence | service name from | example |
/// |---|---|---|
/// | 1 (wins) | [`Config::service`] | `.service("payment")` |
/// | 2 | `OTEL_SERVICE_NAME`, then `GLIMPSE_SERVICE` | `OTEL_SERVICE_NAME=payment-canary` |
/// | 3 | [`Config::default_service`] | `.default_service("payment")` |
/// | 4 | the executable's file name | `payment` for `target/release/payment` |
///
/// With environment control, use `default_service`: `service` fixes the
/// name whatever `OTEL_SERVICE_NAME` says.
#[must_use]
pub struct Config {
    pub(crate) service: String,
    /// Where `service` came from, so [`Config::default_service`] knows
    /// whether it may replace it.
    service_source: ServiceSource,
    pub(crate) version: String,
    pub(crate) environment: Environment,
    pub(crate) log_filter: String,
    pub(crate) log_format: LogFormat,
    /// The OTLP settings of the three signals and the exporter switches
    /// (issue 13).
    pub(crate) export: ExportSettings,
    /// The span batch settings (`OTEL_BSP_*`).
    pub(crate) batch: BatchSettings,
    pub(crate) sampler: Sampler,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) slow_query: Duration,
    pub(crate) slow_request: Duration,
    pub(crate) log_sample: Vec<(String, f64)>,
    pub(crate) log_queue_bytes: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) label_cap: usize,
    pub(crate) label_value_max_len: usize,
    pub(crate) known_labels: HashMap<String, HashSet<Box<str>>>,
    pub(crate) log_field_max_bytes: usize,
    pub(crate) writer: Option<BoxWriter>,
    pub(crate) process_metrics: bool,
    /// `Some(interval)`: sample the runtime `init` runs in (issue 14).
    pub(crate) runtime_metrics: Option<Duration>,
    /// The drain delay of [`crate::health::Health`] (issue 14).
    pub(crate) shutdown_drain: Duration,
    pub(crate) trust_traceparent: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("service", &self.service)
            .field("version", &self.version)
            .field("environment", &self.environment)
            .field("log_filter", &self.log_filter)
            .field("log_format", &self.log_format)
            .field("export", &self.export)
            .field("batch", &self.batch)
            .field("sampler", &self.sampler)
            .field("metrics_addr", &self.metrics_addr)
            .field("slow_query", &self.slow_query)
            .field("slow_request", &self.slow_request)
            .field("log_sample", &self.log_sample)
            .field("log_queue_bytes", &self.log_queue_bytes)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("label_cap", &self.label_cap)
            .field("runtime_metrics", &self.runtime_metrics)
            .field("shutdown_drain", &self.shutdown_drain)
            .field("label_value_max_len", &self.label_value_max_len)
            .field("known_labels", &self.known_labels)
            .field("log_field_max_bytes", &self.log_field_max_bytes)
            .field("trust_traceparent", &self.trust_traceparent)
            .field("writer", &self.writer.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// The default metrics listener, `0.0.0.0:9464`.
pub const DEFAULT_METRICS_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    9464,
));

impl Default for Config {
    fn default() -> Self {
        Self {
            service: default_service_name(),
            service_source: ServiceSource::Executable,
            version: "unknown".to_owned(),
            environment: Environment::Development,
            log_filter: "info".to_owned(),
            log_format: LogFormat::Json,
            export: ExportSettings::default(),
            batch: BatchSettings::default(),
            sampler: Sampler::ParentBasedAlwaysOn,
            metrics_addr: Some(DEFAULT_METRICS_ADDR),
            slow_query: DEFAULT_SLOW_QUERY,
            slow_request: Duration::from_millis(1000),
            log_sample: vec![("/health".to_owned(), 0.0)],
            log_queue_bytes: 8 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(5),
            label_cap: DEFAULT_LABEL_CAP,
            label_value_max_len: DEFAULT_LABEL_VALUE_MAX_LEN,
            known_labels: HashMap::new(),
            log_field_max_bytes: 4096,
            writer: None,
            process_metrics: true,
            runtime_metrics: Some(DEFAULT_RUNTIME_METRICS_INTERVAL),
            shutdown_drain: DEFAULT_SHUTDOWN_DRAIN,
            trust_traceparent: true,
        }
    }
}

/// The source of the service name, lowest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ServiceSource {
    /// The executable's file name.
    Executable,
    /// [`Config::default_service`].
    CodeDefault,
    /// `OTEL_SERVICE_NAME` or `GLIMPSE_SERVICE`.
    Environment,
    /// [`Config::service`].
    Code,
}

fn default_service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown_service".to_owned())
}

impl Config {
    /// Defaults overridden by every variable of the environment table that is
    /// set (an empty value counts as unset).
    ///
    /// ```
    /// let config = glimpse_obs::Config::from_env()?.default_service("payment");
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidEnv`] naming the first variable whose value is unusable,
    /// including a value that is not valid UTF-8 (shown with the invalid
    /// bytes replaced).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_os_lookup(std::env::var_os)
    }

    /// [`Config::from_lookup`] over raw values: one that is not UTF-8 is an
    /// error naming its variable, never an unset variable.
    fn from_os_lookup(
        lookup: impl Fn(&'static str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, Error> {
        let not_utf8 = std::cell::RefCell::new(None);
        let config = Self::read(|name| match lookup(name)?.into_string() {
            Ok(v) => Some(v),
            Err(raw) => {
                not_utf8.borrow_mut().get_or_insert_with(|| {
                    invalid(name, &raw.to_string_lossy(), "the value is not valid UTF-8")
                });
                None
            }
        });
        // Reading stops at the first error, so a non-UTF-8 value recorded
        // meanwhile came first.
        match not_utf8.into_inner() {
            Some(e) => Err(e),
            None => config,
        }
    }

    /// Like [`Config::from_env`], reading variables through `lookup` instead of
    /// the process environment (for tests and for configuration files mapped
    /// to the same names).
    ///
    /// ```
    /// let config = glimpse_obs::Config::from_lookup(|name| match name {
    ///     "OTEL_SERVICE_NAME" => Some("payment".into()),
    ///     "GLIMPSE_METRICS_ADDR" => Some("off".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(config.service_name(), "payment");
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidEnv`] naming the first variable whose value is unusable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        Self::read(lookup)
    }

    fn read(lookup: impl Fn(&'static str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::default();
        if let Some(v) = get(OTEL_SERVICE_NAME).or_else(|| get(GLIMPSE_SERVICE)) {
            config.service = v.trim().to_owned();
            config.service_source = ServiceSource::Environment;
        }
        if let Some(v) = get(GLIMPSE_SERVICE_VERSION) {
            config.version = v.trim().to_owned();
        }
        if let Some(v) = get(GLIMPSE_ENV) {
            config.environment = match v.trim().to_ascii_lowercase().as_str() {
                "production" | "prod" => Environment::Production,
                "staging" | "stage" => Environment::Staging,
                "development" | "dev" => Environment::Development,
                _ => {
                    return Err(invalid(
                        GLIMPSE_ENV,
                        &v,
                        "expected production, staging or development",
                    ));
                }
            };
        }
        let (filter_var, filter) = match get(GLIMPSE_LOG) {
            Some(v) => (GLIMPSE_LOG, Some(v)),
            None => (RUST_LOG, get(RUST_LOG)),
        };
        if let Some(v) = filter {
            parse_filter(&v).map_err(|reason| invalid(filter_var, &v, &reason))?;
            config.log_filter = v;
        }
        if let Some(v) = get(GLIMPSE_LOG_FORMAT) {
            config.log_format = match v.trim().to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "pretty" => LogFormat::Pretty,
                _ => return Err(invalid(GLIMPSE_LOG_FORMAT, &v, "expected json or pretty")),
            };
        }
        config.export = ExportSettings::read(&get, &lookup)?;
        config.batch = BatchSettings::from_lookup(&lookup)?;
        let arg = get(OTEL_TRACES_SAMPLER_ARG);
        if let Some(v) = get(OTEL_TRACES_SAMPLER) {
            config.sampler = parse_sampler(&v, arg.as_deref())?;
        } else if let Some(a) = arg {
            // A lone argument is only meaningful for a ratio sampler; check it anyway.
            parse_ratio(&a)?;
        }
        if let Some(v) = get(GLIMPSE_METRICS_ADDR) {
            config.metrics_addr = if v.trim().eq_ignore_ascii_case("off") {
                None
            } else {
                Some(v.trim().parse().map_err(|_| {
                    invalid(
                        GLIMPSE_METRICS_ADDR,
                        &v,
                        "expected host:port such as 0.0.0.0:9464, or off",
                    )
                })?)
            };
        }
        if let Some(v) = get(GLIMPSE_SLOW_QUERY_MS) {
            config.slow_query = parse_millis(GLIMPSE_SLOW_QUERY_MS, &v)?;
        }
        if let Some(v) = get(GLIMPSE_SLOW_REQUEST_MS) {
            config.slow_request = parse_millis(GLIMPSE_SLOW_REQUEST_MS, &v)?;
        }
        if let Some(v) = get(GLIMPSE_LOG_SAMPLE) {
            config.log_sample = parse_sample(&v)?;
        }
        read_issue14(&mut config, &get)?;
        if let Some(v) = get(GLIMPSE_TRUST_TRACEPARENT) {
            config.trust_traceparent = match v.trim() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(invalid(
                        GLIMPSE_TRUST_TRACEPARENT,
                        &v,
                        "expected true or false",
                    ));
                }
            };
        }
        Ok(config)
    }

    /// The service name, `service` in logs, metrics and traces, whatever
    /// the environment says: it wins over `OTEL_SERVICE_NAME` and
    /// `GLIMPSE_SERVICE` (see the precedence table of [`Config`]). To let the
    /// deployment rename the service, use [`Config::default_service`].
    /// Defaults to the executable's file name.
    ///
    /// ```
    /// let config = glimpse_obs::Config::from_lookup(|name| {
    ///     (name == "OTEL_SERVICE_NAME").then(|| "from-env".to_owned())
    /// })?
    /// .service("payment");
    /// assert_eq!(config.service_name(), "payment");
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = name.into();
        self.service_source = ServiceSource::Code;
        self
    }

    /// The service name to use unless `OTEL_SERVICE_NAME` or
    /// `GLIMPSE_SERVICE` is set (or [`Config::service`] is called): the name
    /// a service gives itself in code while its deployment keeps the last
    /// word. Order does not matter: it never replaces a name from the
    /// environment or from [`Config::service`], whether called before or
    /// after them. Defaults to the executable's file name.
    ///
    /// ```
    /// use glimpse_obs::Config;
    ///
    /// let unset = Config::from_lookup(|_| None)?.default_service("payment");
    /// assert_eq!(unset.service_name(), "payment");
    ///
    /// let set = Config::from_lookup(|name| {
    ///     (name == "OTEL_SERVICE_NAME").then(|| "payment-canary".to_owned())
    /// })?
    /// .default_service("payment");
    /// assert_eq!(set.service_name(), "payment-canary");
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn default_service(mut self, name: impl Into<String>) -> Self {
        if self.service_source <= ServiceSource::CodeDefault {
            self.service = name.into();
            self.service_source = ServiceSource::CodeDefault;
        }
        self
    }

    /// The service name this configuration will use.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().default_service("payment");
    /// assert_eq!(config.service_name(), "payment");
    /// ```
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// The service version (`service.version`). Defaults to `unknown`; pass
    /// `env!("CARGO_PKG_VERSION")`.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().version(env!("CARGO_PKG_VERSION"));
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The deployment environment. Defaults to [`Environment::Development`].
    ///
    /// ```
    /// use glimpse_obs::{Config, Environment};
    /// let config = Config::default().environment(Environment::Staging);
    /// ```
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    /// The level filter, in `EnvFilter` syntax (`info,sqlx=warn`), every
    /// directive with its level. Defaults to `info`.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] when the directive does not parse, or when a
    /// part of it is not a level: a bare word (`infoo`, a misspelled level
    /// that would otherwise silence every line; write a target with its
    /// level, `sqlx=debug`) or `target=value` with a value that is not a
    /// level (`sqlx=infoo`).
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().log_filter("info,sqlx=warn")?;
    /// assert!(glimpse_obs::Config::default().log_filter("info,[[[").is_err());
    /// let err = glimpse_obs::Config::default().log_filter("infoo").unwrap_err();
    /// assert!(err.to_string().contains("\"infoo\" is not a level"));
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn log_filter(mut self, directive: impl Into<String>) -> Result<Self, Error> {
        let directive = directive.into();
        parse_filter(&directive).map_err(|reason| Error::InvalidFilter {
            directive: directive.clone(),
            reason,
        })?;
        self.log_filter = directive;
        Ok(self)
    }

    /// The log format. Defaults to [`LogFormat::Json`].
    ///
    /// ```
    /// use glimpse_obs::{Config, LogFormat};
    /// let config = Config::default().log_format(LogFormat::Pretty);
    /// ```
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.log_format = format;
        self
    }

    /// The OTLP endpoint of every signal, or `None` for no export (trace
    /// and span IDs are still generated). Replaces `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// and the per-signal endpoints read from the environment; for
    /// `http/protobuf`, `/v1/traces` (`/v1/metrics`, `/v1/logs`) is appended.
    /// Whether metrics and logs use it is decided by
    /// [`Config::metrics_otlp`] and [`Config::logs_otlp`]. Defaults to `None`.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().otlp_endpoint(Some("http://jaeger:4317".into()));
    /// ```
    pub fn otlp_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.export.shared.endpoint = endpoint.map(|e| e.trim().to_owned());
        self.export.traces.endpoint = None;
        self.export.metrics.endpoint = None;
        self.export.logs.endpoint = None;
        self
    }

    /// The OTLP transport of every signal (replacing the per-signal
    /// `OTEL_EXPORTER_OTLP_*_PROTOCOL` too). Defaults to [`OtlpProtocol::Grpc`].
    ///
    /// ```
    /// use glimpse_obs::{Config, OtlpProtocol};
    /// let config = Config::default().otlp_protocol(OtlpProtocol::HttpProtobuf);
    /// ```
    pub fn otlp_protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.export.shared.protocol = Some(protocol);
        self.export.traces.protocol = None;
        self.export.metrics.protocol = None;
        self.export.logs.protocol = None;
        self
    }

    /// Headers sent with every OTLP export of every signal (an API key, a
    /// tenant), replacing `OTEL_EXPORTER_OTLP_HEADERS` and its per-signal
    /// variants. Defaults to none.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a name or value cannot be an HTTP header.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().otlp_headers([("api-key", "secret")])?;
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn otlp_headers<K, V>(
        mut self,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, Error>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut list = Vec::new();
        for (k, v) in headers {
            let (k, v) = (k.into().to_ascii_lowercase(), v.into());
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(&v).is_err()
            {
                return Err(Error::InvalidConfig {
                    name: "otlp_headers",
                    reason: format!("{k:?} with its value is not a valid HTTP header"),
                });
            }
            list.push((k, v));
        }
        self.export.shared.headers = Some(list);
        self.export.traces.headers = None;
        self.export.metrics.headers = None;
        self.export.logs.headers = None;
        Ok(self)
    }

    /// Compression of every signal's OTLP exports, replacing
    /// `OTEL_EXPORTER_OTLP_COMPRESSION` and its per-signal variants.
    /// Defaults to [`OtlpCompression::None`].
    ///
    /// ```
    /// use glimpse_obs::{Config, OtlpCompression};
    /// let config = Config::default().otlp_compression(OtlpCompression::Gzip);
    /// ```
    pub fn otlp_compression(mut self, compression: OtlpCompression) -> Self {
        self.export.shared.compression = Some(compression);
        self.export.traces.compression = None;
        self.export.metrics.compression = None;
        self.export.logs.compression = None;
        self
    }

    /// The longest time one OTLP export request may take, for every signal,
    /// replacing `OTEL_EXPORTER_OTLP_TIMEOUT` and its per-signal variants.
    /// Defaults to 10 s.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().otlp_timeout(std::time::Duration::from_secs(3));
    /// ```
    pub fn otlp_timeout(mut self, timeout: Duration) -> Self {
        self.export.shared.timeout = Some(timeout.max(Duration::from_millis(1)));
        self.export.traces.timeout = None;
        self.export.metrics.timeout = None;
        self.export.logs.timeout = None;
        self
    }

    /// A PEM file of CA certificates trusted, besides the system's roots, to
    /// verify an `https://` collector of every signal, replacing
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE` and its per-signal variants. Read
    /// when the exporters are built. Defaults to none.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().otlp_certificate("/etc/ssl/collector-ca.pem");
    /// ```
    pub fn otlp_certificate(mut self, pem_file: impl Into<std::path::PathBuf>) -> Self {
        self.export.shared.certificate = Some(pem_file.into());
        self.export.traces.certificate = None;
        self.export.metrics.certificate = None;
        self.export.logs.certificate = None;
        self
    }

    /// Whether metrics are exported over OTLP every
    /// [`Config::metric_export_interval`] (`OTEL_METRICS_EXPORTER` includes
    /// `otlp`). Defaults to `false`.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default()
    ///     .otlp_endpoint(Some("http://collector:4317".into()))
    ///     .metrics_otlp(true);
    /// ```
    pub fn metrics_otlp(mut self, enabled: bool) -> Self {
        self.export.metrics_exporters.otlp = enabled;
        self
    }

    /// Whether Prometheus can scrape the metrics listener
    /// (`OTEL_METRICS_EXPORTER` includes `prometheus`); `false` means no
    /// listener whatever [`Config::metrics_addr`] says. Defaults to `true`.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().metrics_prometheus(false).metrics_otlp(true);
    /// ```
    pub fn metrics_prometheus(mut self, enabled: bool) -> Self {
        self.export.metrics_exporters.prometheus = enabled;
        self
    }

    /// Time between two OTLP metric exports (`OTEL_METRIC_EXPORT_INTERVAL`).
    /// Defaults to 60 s.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default()
    ///     .metric_export_interval(std::time::Duration::from_secs(15));
    /// ```
    pub fn metric_export_interval(mut self, interval: Duration) -> Self {
        self.export.metric_export_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The temporality of OTLP metrics
    /// (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`). Defaults to
    /// [`Temporality::Cumulative`].
    ///
    /// ```
    /// use glimpse_obs::{Config, Temporality};
    /// let config = Config::default().metrics_temporality(Temporality::Delta);
    /// ```
    pub fn metrics_temporality(mut self, temporality: Temporality) -> Self {
        self.export.temporality = temporality;
        self
    }

    /// Whether log lines are also exported as OTLP log records
    /// (`OTEL_LOGS_EXPORTER=otlp`). Defaults to `false`.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().logs_otlp(true);
    /// ```
    pub fn logs_otlp(mut self, enabled: bool) -> Self {
        self.export.logs_otlp = enabled;
        self
    }

    /// Whether log lines are written to stdout (or the
    /// [`Config::log_writer`]) (`GLIMPSE_LOG_STDOUT`). Defaults to `true`.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().logs_otlp(true).log_stdout(false);
    /// ```
    pub fn log_stdout(mut self, enabled: bool) -> Self {
        self.export.log_stdout = enabled;
        self
    }

    /// The trace sampler. Defaults to [`Sampler::ParentBasedAlwaysOn`].
    ///
    /// ```
    /// use glimpse_obs::{Config, Sampler};
    /// let config = Config::default().sampler(Sampler::TraceIdRatio(0.25));
    /// ```
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// Where Prometheus scrapes, or `None` for no listener (mount
    /// [`crate::metrics_handler`] on your router instead). Defaults to `0.0.0.0:9464`.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().metrics_addr(Some(([127, 0, 0, 1], 9464).into()));
    /// let no_listener = glimpse_obs::Config::default().metrics_addr(None);
    /// ```
    pub fn metrics_addr(mut self, addr: Option<SocketAddr>) -> Self {
        self.metrics_addr = addr;
        self
    }

    /// Database operations slower than this log a WARN line and count as slow.
    /// Defaults to 500 ms.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().slow_query(std::time::Duration::from_millis(200));
    /// ```
    pub fn slow_query(mut self, threshold: Duration) -> Self {
        self.slow_query = threshold;
        self
    }

    /// Requests slower than this log their access line at WARN. Defaults to 1 s.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().slow_request(std::time::Duration::from_millis(500));
    /// ```
    pub fn slow_request(mut self, threshold: Duration) -> Self {
        self.slow_request = threshold;
        self
    }

    /// Keep this fraction (`0..=1`) of INFO access lines of `route`; ERROR and
    /// WARN lines are always kept. Defaults to `/health` at 0.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `rate` is outside `0..=1`.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().log_sample("/feed", 0.1)?;
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn log_sample(mut self, route: impl Into<String>, rate: f64) -> Result<Self, Error> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(Error::InvalidConfig {
                name: "log_sample",
                reason: format!("rate {rate} is outside 0..=1"),
            });
        }
        let route = route.into();
        self.log_sample.retain(|(r, _)| *r != route);
        self.log_sample.push((route, rate));
        Ok(self)
    }

    /// Send log lines to `writer` instead of stdout (tests, benchmarks, files).
    /// Defaults to stdout.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().log_writer(std::io::stderr());
    /// ```
    pub fn log_writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.writer = Some(Box::new(writer));
        self
    }

    /// How many bytes of INFO/DEBUG lines may wait for a slow stdout before
    /// new ones are dropped and counted. Defaults to 8 MiB.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().log_queue_bytes(32 * 1024 * 1024);
    /// ```
    pub fn log_queue_bytes(mut self, bytes: usize) -> Self {
        self.log_queue_bytes = bytes.max(64 * 1024);
        self
    }

    /// How long [`crate::Guard::shutdown`] (and dropping the guard) may take to
    /// flush logs and spans. Defaults to 5 s.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().shutdown_timeout(std::time::Duration::from_secs(2));
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How many distinct values a caller-fed label may take per metric before
    /// further values become `other`. Defaults to 100.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().label_cap(200);
    /// ```
    pub fn label_cap(mut self, cap: usize) -> Self {
        self.label_cap = cap.max(1);
        self
    }

    /// The longest caller-fed label value, in bytes, a metric keeps (like
    /// Prometheus' `label_value_length_limit`); a longer value is recorded
    /// as `other` without taking one of the `label_cap` slots, and counts
    /// in `glimpse_obs_label_overflow_total`. Defaults to 128.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().label_value_max_len(64);
    /// ```
    pub fn label_value_max_len(mut self, bytes: usize) -> Self {
        self.label_value_max_len = bytes.max(1);
        self
    }

    /// Register `values` of the caller-fed label of `metric` (a name of
    /// [`crate::metrics::names`]) as known: they are always recorded as
    /// themselves, never become `other`, and take none of the `label_cap`
    /// slots, so junk values cannot push them out. For a metric with two
    /// capped labels (`glimpse_payments_total`'s `provider` and `currency`,
    /// `glimpse_conversions_total`'s `funnel` and `step`) list the values of
    /// both. Calls add up. Defaults to none.
    ///
    /// ```
    /// use glimpse_obs::metrics::names;
    ///
    /// let config = glimpse_obs::Config::default()
    ///     .known_label_values(names::API_KEY_REQUESTS, ["partner-acme", "partner-globex"])
    ///     .known_label_values(names::PAYMENTS, ["stripe", "adyen"]);
    /// ```
    pub fn known_label_values<I>(mut self, metric: &str, values: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let known = self.known_labels.entry(metric.to_owned()).or_default();
        known.extend(values.into_iter().map(|v| v.into().into_boxed_str()));
        self
    }

    /// The longest value, in bytes before JSON escaping, of a log line's
    /// message, of a string field and of `userId`'s source; a longer value
    /// is cut at a character boundary and ends with
    /// [`TRUNCATED_SUFFIX`](crate::logging::redact::TRUNCATED_SUFFIX)
    /// (`…[truncated]`), so a 200 KB token cannot make 200 KB lines.
    /// Defaults to 4096 (a line stays under the 16 KiB at which Docker's
    /// log driver splits lines).
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().log_field_max_bytes(16 * 1024);
    /// ```
    pub fn log_field_max_bytes(mut self, bytes: usize) -> Self {
        self.log_field_max_bytes = bytes.max(16);
        self
    }

    /// Whether to export `process_*` metrics (CPU, memory, fds, threads).
    /// Defaults to `true`.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().process_metrics(false);
    /// ```
    pub fn process_metrics(mut self, enabled: bool) -> Self {
        self.process_metrics = enabled;
        self
    }

    /// Whether `init` samples the tokio runtime it is called in into the
    /// `tokio_*` metrics (see [`crate::runtime`]); called outside a runtime,
    /// `init` samples nothing either way. Defaults to `true`
    /// (`GLIMPSE_RUNTIME_METRICS`).
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().runtime_metrics(false);
    /// ```
    pub fn runtime_metrics(mut self, enabled: bool) -> Self {
        self.runtime_metrics = enabled.then(|| {
            self.runtime_metrics
                .unwrap_or(DEFAULT_RUNTIME_METRICS_INTERVAL)
        });
        self
    }

    /// How often the runtime is sampled, when [`Config::runtime_metrics`] is
    /// on. Defaults to 5 s.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default()
    ///     .runtime_metrics_interval(std::time::Duration::from_secs(1));
    /// ```
    pub fn runtime_metrics_interval(mut self, interval: Duration) -> Self {
        if self.runtime_metrics.is_some() {
            self.runtime_metrics = Some(interval);
        }
        self
    }

    /// How long the service keeps serving after SIGTERM, answering
    /// `/health/ready` with 503 so load balancers stop sending traffic, before
    /// it stops accepting; `Duration::ZERO` turns the drain off. Used by
    /// [`crate::Guard::health`]. Defaults to 1 s (`GLIMPSE_SHUTDOWN_DRAIN_MS`).
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().shutdown_drain(std::time::Duration::from_secs(5));
    /// ```
    pub fn shutdown_drain(mut self, delay: Duration) -> Self {
        self.shutdown_drain = delay;
        self
    }

    /// Whether an incoming `traceparent` may become the parent of the
    /// server span. `false` for a service on the public internet: every
    /// request starts a new trace and keeps the caller's context as a span
    /// link only (as [`ObsLayer::public_endpoint`](crate::ObsLayer::public_endpoint)
    /// does for one layer). Defaults to `GLIMPSE_TRUST_TRACEPARENT`, else `true`.
    ///
    /// ```
    /// let config = glimpse_obs::Config::default().trust_traceparent(false);
    /// ```
    pub fn trust_traceparent(mut self, trust: bool) -> Self {
        self.trust_traceparent = trust;
        self
    }

    pub(crate) fn shared_settings(&self) -> Arc<Settings> {
        Arc::new(Settings {
            slow_request: self.slow_request,
            log_sample: self.log_sample.clone(),
            trust_traceparent: self.trust_traceparent,
            exporting: false,
            record_span_fields: true,
            fields_on_span: true,
        })
    }
}

/// The part of the configuration that request-time code reads.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) slow_request: Duration,
    pub(crate) log_sample: Vec<(String, f64)>,
    /// `GLIMPSE_TRUST_TRACEPARENT` / [`Config::trust_traceparent`].
    pub(crate) trust_traceparent: bool,
    /// Whether spans are exported over OTLP (the full OpenTelemetry layer)
    /// rather than given IDs only.
    pub(crate) exporting: bool,
    /// Whether anything reads the server span's response fields (the
    /// OpenTelemetry layer, the pretty format, a subscriber not ours).
    pub(crate) record_span_fields: bool,
    /// Whether a layer other than the crate's trace layer reads them (the
    /// pretty format, a subscriber not ours), so they must be recorded on
    /// the span; else the trace layer takes them from the HTTP layer
    /// directly (`ids::response`).
    pub(crate) fields_on_span: bool,
}

impl Settings {
    /// The crate's trace layer exports the server spans and nothing else
    /// reads their response fields: the HTTP layer hands the response to it
    /// directly (`ids::response`) instead of recording it on the span.
    pub(crate) fn response_direct(&self) -> bool {
        self.exporting && !self.fields_on_span
    }
}

impl Default for Settings {
    fn default() -> Self {
        Config::default().shared_settings().as_ref().clone()
    }
}

/// Most spans waiting for export; more are dropped and counted.
pub(crate) const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// Delay between two scheduled exports, in milliseconds.
pub(crate) const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// Most spans in one export.
pub(crate) const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// Longest time one export may take, in milliseconds.
pub(crate) const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";

/// How often the tokio runtime is sampled when runtime metrics are on.
pub(crate) const DEFAULT_RUNTIME_METRICS_INTERVAL: Duration = Duration::from_secs(5);
/// The drain delay unless configured (`GLIMPSE_SHUTDOWN_DRAIN_MS`): 1 s.
pub(crate) const DEFAULT_SHUTDOWN_DRAIN: Duration = Duration::from_millis(1000);

/// Longer metric label values become `other`.
pub(crate) const DEFAULT_LABEL_VALUE_MAX_LEN: usize = 128;

/// Distinct values one metric label keeps before the rest become `other`.
pub(crate) const DEFAULT_LABEL_CAP: usize = 100;
/// Queries slower than this count in `db_slow_queries_total` and log WARN.
pub(crate) const DEFAULT_SLOW_QUERY: Duration = Duration::from_millis(500);

/// Batch settings, from the standard `OTEL_BSP_*` (spans) or `OTEL_BLRP_*`
/// (log records) variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchSettings {
    pub(crate) max_queue_size: usize,
    pub(crate) scheduled_delay: Duration,
    pub(crate) max_export_batch_size: usize,
    pub(crate) export_timeout: Duration,
}

impl Default for BatchSettings {
    /// The OpenTelemetry specification's defaults.
    fn default() -> Self {
        Self {
            max_queue_size: 2048,
            scheduled_delay: Duration::from_millis(5000),
            max_export_batch_size: 512,
            export_timeout: Duration::from_millis(30_000),
        }
    }
}

impl BatchSettings {
    /// Defaults overridden by each `OTEL_BSP_*` variable that `lookup` finds
    /// (empty counts as unset). A value that is not a positive whole number is
    /// an error naming the variable, not a silent fallback.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, Error> {
        Self::read(
            &lookup,
            [
                OTEL_BSP_MAX_QUEUE_SIZE,
                OTEL_BSP_SCHEDULE_DELAY,
                OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
                OTEL_BSP_EXPORT_TIMEOUT,
            ],
            Self::default(),
        )
    }

    /// The specification's defaults of the batch log record processor
    /// (2048 records, 1 s, 512 per export, 30 s).
    pub(crate) fn logs_default() -> Self {
        Self {
            scheduled_delay: Duration::from_millis(1000),
            ..Self::default()
        }
    }

    /// [`BatchSettings::logs_default`] overridden by each `OTEL_BLRP_*`
    /// variable `lookup` finds, with the same checks as the span's.
    pub(crate) fn logs_from_lookup(
        lookup: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, Error> {
        Self::read(
            &lookup,
            [
                OTEL_BLRP_MAX_QUEUE_SIZE,
                OTEL_BLRP_SCHEDULE_DELAY,
                OTEL_BLRP_MAX_EXPORT_BATCH_SIZE,
                OTEL_BLRP_EXPORT_TIMEOUT,
            ],
            Self::logs_default(),
        )
    }

    /// `names`: queue size, delay, batch size, timeout.
    fn read(
        lookup: &impl Fn(&'static str) -> Option<String>,
        names: [&'static str; 4],
        defaults: Self,
    ) -> Result<Self, Error> {
        let get = |name: &'static str| -> Result<Option<u64>, Error> {
            let Some(raw) = lookup(name).filter(|v| !v.trim().is_empty()) else {
                return Ok(None);
            };
            match raw.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(Error::InvalidEnv {
                    name,
                    value: raw,
                    reason: "expected a positive whole number".to_owned(),
                }),
            }
        };
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let mut s = defaults;
        if let Some(n) = get(names[0])? {
            s.max_queue_size = to_usize(n);
        }
        if let Some(n) = get(names[1])? {
            s.scheduled_delay = Duration::from_millis(n);
        }
        if let Some(n) = get(names[2])? {
            s.max_export_batch_size = to_usize(n);
        }
        if let Some(n) = get(names[3])? {
            s.export_timeout = Duration::from_millis(n);
        }
        // As the specification says: a batch never exceeds the queue.
        s.max_export_batch_size = s.max_export_batch_size.min(s.max_queue_size);
        Ok(s)
    }
}

/// The target of audit lines, kept at INFO whatever the level filter says.
const AUDIT_TARGET: &str = "glimpse_obs::audit";

/// Parse an `EnvFilter` directive, explaining what is wrong.
///
/// Every comma-separated part must state a level ([`check_levels`]).
///
/// Audit lines are compliance records (DESIGN §3: never dropped): unless
/// the directive names `glimpse_obs::audit` itself, `glimpse_obs::audit=info`
/// is added, so `warn` or `off` still lets them through. The business
/// payment line is not an audit record and follows the filter.
pub(crate) fn parse_filter(directive: &str) -> Result<EnvFilter, String> {
    check_levels(directive)?;
    let filter = EnvFilter::builder()
        .parse(directive)
        .map_err(|e| e.to_string())?;
    if names_target(directive, AUDIT_TARGET) {
        return Ok(filter);
    }
    let audit = format!("{AUDIT_TARGET}=info")
        .parse()
        .map_err(|e: tracing_subscriber::filter::ParseError| e.to_string())?;
    Ok(filter.add_directive(audit))
}

/// Refuses a part that states no level. `EnvFilter` reads a bare word as
/// a target with every level on and everything else off, so a misspelled
/// level (`infoo`, `warnn`) would silence every line, ERROR included; in
/// practice a bare word is such a typo far more often than a target, so a
/// target must be written with its level (`sqlx=debug`). A span directive
/// without a level (`[request]`) stays accepted: it cannot be a typo of a
/// level. `target=value` whose value is not a level is refused too, with
/// this message rather than `EnvFilter`'s generic one.
fn check_levels(directive: &str) -> Result<(), String> {
    const LEVELS: &str = "expected off, error, warn, info, debug or trace";
    // Split as `EnvFilter` splits: on every comma, empty parts skipped.
    for part in directive.split(',').filter(|p| !p.is_empty()) {
        // The `=` before the level is outside `[span{field=value}]`.
        let mut depth = 0i32;
        let eq = part.char_indices().find_map(|(i, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                '=' if depth == 0 => return Some(i),
                _ => {}
            }
            None
        });
        match eq {
            Some(i) => {
                let level = part[i + 1..].trim();
                if !is_level(level) {
                    return Err(format!("{level:?} in {part:?} is not a level: {LEVELS}"));
                }
            }
            None if part.contains('[') || is_level(part) => {}
            None => {
                return Err(format!(
                    "{part:?} is not a level: {LEVELS}; to enable a target, \
                     write target=level, such as {part}=debug"
                ));
            }
        }
    }
    Ok(())
}

/// The variables of issue 14 (runtime metrics, shutdown drain), kept
/// together so they move as one piece.
fn read_issue14(
    config: &mut Config,
    get: &impl Fn(&'static str) -> Option<String>,
) -> Result<(), Error> {
    if let Some(v) = get(GLIMPSE_RUNTIME_METRICS) {
        let on = match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "on" | "yes" => true,
            "false" | "0" | "off" | "no" => false,
            _ => {
                return Err(invalid(
                    GLIMPSE_RUNTIME_METRICS,
                    &v,
                    "expected true or false",
                ));
            }
        };
        config.runtime_metrics = on.then_some(DEFAULT_RUNTIME_METRICS_INTERVAL);
    }
    if let Some(v) = get(GLIMPSE_SHUTDOWN_DRAIN_MS) {
        config.shutdown_drain = parse_millis(GLIMPSE_SHUTDOWN_DRAIN_MS, &v)?;
    }
    Ok(())
}

/// A level as `EnvFilter` reads one: a name in any case, or `0` to `5`.
fn is_level(s: &str) -> bool {
    // `LevelFilter` reads an empty string as ERROR; a directive does not.
    !s.is_empty() && s.parse::<tracing::level_filters::LevelFilter>().is_ok()
}

/// Whether one of the comma-separated directives has exactly `target` as
/// its target (`target=level`, `target[span]=level` or a bare `target`).
fn names_target(directive: &str, target: &str) -> bool {
    directive.split(',').any(|d| {
        let end = d.find(['[', '=']).unwrap_or(d.len());
        d[..end].trim() == target
    })
}

fn invalid(name: &'static str, value: &str, reason: &str) -> Error {
    Error::InvalidEnv {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_millis(name: &'static str, value: &str) -> Result<Duration, Error> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| invalid(name, value, "expected a whole number of milliseconds"))
}

fn parse_ratio(value: &str) -> Result<f64, Error> {
    match value.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(invalid(
            OTEL_TRACES_SAMPLER_ARG,
            value,
            "expected a ratio between 0 and 1",
        )),
    }
}

fn parse_sampler(name: &str, arg: Option<&str>) -> Result<Sampler, Error> {
    let ratio = || arg.map(parse_ratio).transpose().map(|r| r.unwrap_or(1.0));
    Ok(match name.trim() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatio(ratio()?),
        "parentbased_always_on" => Sampler::ParentBasedAlwaysOn,
        "parentbased_always_off" => Sampler::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => Sampler::ParentBasedTraceIdRatio(ratio()?),
        _ => {
            return Err(invalid(
                OTEL_TRACES_SAMPLER,
                name,
                "expected always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
            ));
        }
    })
}

fn parse_sample(value: &str) -> Result<Vec<(String, f64)>, Error> {
    let mut rules = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((route, rate)) = part.rsplit_once('=') else {
            return Err(invalid(
                GLIMPSE_LOG_SAMPLE,
                value,
                "expected route=rate pairs such as /health=0,/feed=0.1",
            ));
        };
        let route = route.trim();
        if !route.starts_with('/') {
            return Err(invalid(
                GLIMPSE_LOG_SAMPLE,
                value,
                "each route must start with /",
            ));
        }
        let rate = match rate.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                return Err(invalid(
                    GLIMPSE_LOG_SAMPLE,
                    value,
                    "each rate must be a number between 0 and 1",
                ));
            }
        };
        rules.retain(|(r, _): &(String, f64)| r != route);
        rules.push((route.to_owned(), rate));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::env;

    #[test]
    fn defaults_apply_when_the_environment_is_empty() {
        let c = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(c.environment, Environment::Development);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.metrics_addr, Some(DEFAULT_METRICS_ADDR));
        assert_eq!(c.slow_query, Duration::from_millis(500));
        assert_eq!(c.slow_request, Duration::from_millis(1000));
        assert_eq!(c.sampler, Sampler::ParentBasedAlwaysOn);
        assert_eq!(c.export.shared.endpoint, None);
        assert_eq!(c.log_sample, vec![("/health".to_owned(), 0.0)]);
        assert!(!c.service.is_empty());
    }

    #[test]
    fn environment_overrides_defaults_and_code_overrides_environment() {
        let c = Config::from_lookup(env(&[
            ("OTEL_SERVICE_NAME", "matches"),
            ("GLIMPSE_ENV", "production"),
            ("GLIMPSE_SLOW_QUERY_MS", "250"),
            ("GLIMPSE_METRICS_ADDR", "127.0.0.1:9999"),
        ]))
        .unwrap();
        assert_eq!(c.service, "matches");
        assert_eq!(c.environment, Environment::Production);
        assert_eq!(c.slow_query, Duration::from_millis(250));
        let c = c
            .service("payment")
            .slow_query(Duration::from_millis(10))
            .metrics_addr(None);
        assert_eq!(c.service, "payment");
        assert_eq!(c.slow_query, Duration::from_millis(10));
        assert_eq!(c.metrics_addr, None);
    }

    #[test]
    fn otel_service_name_wins_over_glimpse_service_and_glimpse_log_over_rust_log() {
        let c = Config::from_lookup(env(&[
            ("OTEL_SERVICE_NAME", "a"),
            ("GLIMPSE_SERVICE", "b"),
            ("RUST_LOG", "debug"),
            ("GLIMPSE_LOG", "warn,sqlx=error"),
        ]))
        .unwrap();
        assert_eq!(c.service, "a");
        assert_eq!(c.log_filter, "warn,sqlx=error");
        let c = Config::from_lookup(env(&[("GLIMPSE_SERVICE", "b")])).unwrap();
        assert_eq!(c.service, "b");
    }

    #[test]
    fn every_invalid_variable_is_an_error_naming_it_and_its_value() {
        let cases = [
            ("GLIMPSE_ENV", "prodution"),
            ("GLIMPSE_LOG_FORMAT", "xml"),
            ("GLIMPSE_METRICS_ADDR", "localhost"),
            ("GLIMPSE_SLOW_QUERY_MS", "-5"),
            ("GLIMPSE_SLOW_REQUEST_MS", "1s"),
            ("GLIMPSE_LOG_SAMPLE", "/health=2"),
            ("GLIMPSE_RUNTIME_METRICS", "maybe"),
            ("GLIMPSE_SHUTDOWN_DRAIN_MS", "1s"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4317"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
            ("RUST_LOG", "info,[[["),
            ("GLIMPSE_LOG", "infoo"),
        ];
        for (name, value) in cases {
            let err = Config::from_lookup(env(&[(name, value)])).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(name), "{msg} should name {name}");
            assert!(msg.contains(value), "{msg} should name {value}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_an_error_naming_the_variable() {
        use std::{ffi::OsString, os::unix::ffi::OsStringExt};
        let err = Config::from_os_lookup(|name| {
            (name == GLIMPSE_ENV).then(|| OsString::from_vec(b"prod\xffuction".to_vec()))
        })
        .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidEnv {
                name: GLIMPSE_ENV,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "invalid value \"prod\u{fffd}uction\" for environment variable GLIMPSE_ENV: \
             the value is not valid UTF-8"
        );
        // Not mistaken for unset: a later valid fallback does not hide it.
        let err = Config::from_os_lookup(|name| match name {
            OTEL_SERVICE_NAME => Some(OsString::from_vec(vec![0x80])),
            GLIMPSE_SERVICE => Some("fallback".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(err.to_string().contains(OTEL_SERVICE_NAME), "{err}");
        let c =
            Config::from_os_lookup(|name| (name == GLIMPSE_ENV).then(|| "staging".into())).unwrap();
        assert_eq!(c.environment, Environment::Staging);
    }

    #[test]
    fn batch_settings_and_the_traces_endpoint_come_from_the_lookup() {
        let c = Config::from_lookup(env(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_SCHEDULE_DELAY", " 250 "),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "2000"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                " http://c:4318/custom ",
            ),
        ]))
        .unwrap();
        assert_eq!(c.batch.max_queue_size, 100);
        assert_eq!(c.batch.scheduled_delay, Duration::from_millis(250));
        assert_eq!(c.batch.max_export_batch_size, 64);
        assert_eq!(c.batch.export_timeout, Duration::from_secs(2));
        // A batch never exceeds the queue (the specification's rule).
        let capped = Config::from_lookup(env(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1000"),
        ]))
        .unwrap();
        assert_eq!(capped.batch.max_export_batch_size, 100);
        // The span batch is not touched by the log batch's variables.
        let logs_only = Config::from_lookup(env(&[("OTEL_BLRP_SCHEDULE_DELAY", "7")])).unwrap();
        assert_eq!(logs_only.batch.scheduled_delay, Duration::from_millis(5000));
        assert_eq!(
            c.export.traces.endpoint.as_deref(),
            Some("http://c:4318/custom")
        );
        assert_eq!(c.export.shared.endpoint, None);
        let c =
            Config::from_lookup(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])).unwrap();
        assert_eq!(c.export.traces.endpoint, None);
        assert_eq!(c.export.shared.endpoint.as_deref(), Some("http://c:4318"));
        assert_eq!(c.batch, BatchSettings::default());
    }

    #[test]
    fn glimpse_trust_traceparent_is_true_or_false_and_code_wins() {
        assert!(Config::from_lookup(env(&[])).unwrap().trust_traceparent);
        let c = Config::from_lookup(env(&[(GLIMPSE_TRUST_TRACEPARENT, "false")])).unwrap();
        assert!(!c.trust_traceparent);
        assert!(!c.shared_settings().trust_traceparent);
        assert!(c.trust_traceparent(true).trust_traceparent, "code wins");
        let err = Config::from_lookup(env(&[(GLIMPSE_TRUST_TRACEPARENT, "no")])).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidEnv { name, .. } if *name == GLIMPSE_TRUST_TRACEPARENT),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("GLIMPSE_TRUST_TRACEPARENT"),
            "{err}"
        );
        assert!(err.to_string().contains("\"no\""), "{err}");
    }

    #[test]
    fn service_name_precedence_is_code_then_env_then_default_service_then_executable() {
        let c = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(c.service, default_service_name());
        let c = Config::from_lookup(env(&[]))
            .unwrap()
            .default_service("payment");
        assert_eq!(c.service, "payment");
        for var in [OTEL_SERVICE_NAME, GLIMPSE_SERVICE] {
            let c = Config::from_lookup(env(&[(var, "payment-canary")]))
                .unwrap()
                .default_service("payment");
            assert_eq!(c.service, "payment-canary", "{var}");
        }
        // `service` wins over the environment and `default_service`, in
        // either order.
        let from_env = || Config::from_lookup(env(&[(OTEL_SERVICE_NAME, "canary")])).unwrap();
        let c = from_env().service("billing").default_service("payment");
        assert_eq!(c.service, "billing");
        let c = from_env().default_service("payment").service("billing");
        assert_eq!(c.service, "billing");
        let c = Config::default()
            .service("billing")
            .default_service("payment");
        assert_eq!(c.service, "billing");
        let c = Config::default().default_service("a").default_service("b");
        assert_eq!(c.service, "b");
    }

    #[test]
    fn a_part_of_glimpse_log_or_rust_log_that_is_not_a_level_is_an_error_naming_both() {
        for var in [GLIMPSE_LOG, RUST_LOG] {
            for value in ["infoo", "warnn", "foo=infoo", "info,my_crate", "sqlx="] {
                let err = Config::from_lookup(env(&[(var, value)])).unwrap_err();
                assert!(
                    matches!(err, Error::InvalidEnv { name, .. } if name == var),
                    "{err:?}"
                );
                let msg = err.to_string();
                assert!(msg.contains(var) && msg.contains(value), "{msg}");
            }
            for value in [
                "info",
                "warn,glimpse_obs::access=info",
                "my_crate::db=debug",
                "[request]=debug",
            ] {
                let c = Config::from_lookup(env(&[(var, value)])).unwrap();
                assert_eq!(c.log_filter, value);
            }
        }
        // GLIMPSE_LOG wins, so it is the one checked and named.
        let err =
            Config::from_lookup(env(&[(GLIMPSE_LOG, "infoo"), (RUST_LOG, "info")])).unwrap_err();
        assert!(err.to_string().contains(GLIMPSE_LOG), "{err}");
    }

    #[test]
    fn log_filter_in_code_refuses_what_the_environment_refuses() {
        let err = Config::default().log_filter("infoo").unwrap_err();
        assert!(matches!(err, Error::InvalidFilter { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "invalid log filter \"infoo\": \"infoo\" is not a level: expected off, error, \
             warn, info, debug or trace; to enable a target, write target=level, such as \
             infoo=debug"
        );
        assert!(Config::default().log_filter("my_crate::db=debug").is_ok());
    }

    #[test]
    fn metrics_addr_off_disables_the_listener() {
        let c = Config::from_lookup(env(&[("GLIMPSE_METRICS_ADDR", "OFF")])).unwrap();
        assert_eq!(c.metrics_addr, None);
    }

    #[test]
    fn sampler_and_ratio_parse_together() {
        let c = Config::from_lookup(env(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]))
        .unwrap();
        assert_eq!(c.sampler, Sampler::ParentBasedTraceIdRatio(0.25));
    }

    #[test]
    fn log_sample_rules_replace_the_default_list() {
        let c =
            Config::from_lookup(env(&[("GLIMPSE_LOG_SAMPLE", "/feed=0.1, /health=1")])).unwrap();
        assert_eq!(
            c.log_sample,
            vec![("/feed".to_owned(), 0.1), ("/health".to_owned(), 1.0)]
        );
    }

    #[test]
    fn runtime_metrics_and_the_drain_delay_come_from_the_environment() {
        let c = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(c.runtime_metrics, Some(Duration::from_secs(5)));
        assert_eq!(c.shutdown_drain, Duration::from_millis(1000));
        let c = Config::from_lookup(env(&[
            ("GLIMPSE_RUNTIME_METRICS", "false"),
            ("GLIMPSE_SHUTDOWN_DRAIN_MS", "0"),
        ]))
        .unwrap();
        assert_eq!(c.runtime_metrics, None);
        assert_eq!(c.shutdown_drain, Duration::ZERO);
        let c = c
            .runtime_metrics(true)
            .runtime_metrics_interval(Duration::from_secs(1));
        assert_eq!(c.runtime_metrics, Some(Duration::from_secs(1)));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c =
            Config::from_lookup(env(&[("GLIMPSE_ENV", " "), ("OTEL_SERVICE_NAME", "")])).unwrap();
        assert_eq!(c.environment, Environment::Development);
        assert_ne!(c.service, "");
    }
}
