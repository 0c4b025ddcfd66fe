//! Every metric name and label key the crate emits, in one place.
//!
//! Dashboards, alert rules and the tests under `tests/` read these names; a
//! metric that is not listed here is not emitted.

// HTTP server (the tower layer).
/// Histogram of request durations in seconds; labels `method`, `route`, `status`.
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Gauge of requests in flight; labels `method`, `route`.
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// Counter of handler panics answered with a `500`; label `route`.
pub const HTTP_SERVER_PANICS: &str = "http_server_panics_total";
/// Histogram of request body sizes in bytes (`Content-Length`); labels
/// `method`, `route`. Recorded with `ObsLayer::body_sizes(true)`.
pub const HTTP_SERVER_REQUEST_BODY_SIZE: &str = "http_server_request_body_size_bytes";
/// Histogram of response body sizes in bytes (bytes sent); labels `method`,
/// `route`. Recorded with `ObsLayer::body_sizes(true)`.
pub const HTTP_SERVER_RESPONSE_BODY_SIZE: &str = "http_server_response_body_size_bytes";

// HTTP client (`client::Middleware`, `client::ClientLayer`).
/// Histogram of outbound call durations in seconds; labels `method`,
/// `server_address` (the peer's host), `status` (the status code, or
/// `timeout`, `error`, `cancelled`).
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http_client_request_duration_seconds";

// WebSocket.
/// Gauge of open WebSocket connections; label `channel`.
pub const WS_CONNECTIONS_ACTIVE: &str = "websocket_connections_active";
/// Counter of WebSocket messages; labels `channel`, `direction` (`sent`/`received`).
pub const WS_MESSAGES: &str = "websocket_messages_total";
/// Histogram of WebSocket connection lifetimes in seconds; label `channel`.
pub const WS_CONNECTION_DURATION: &str = "websocket_connection_duration_seconds";
/// Histogram of WebSocket message latency in seconds; label `channel`.
pub const WS_MESSAGE_LATENCY: &str = "websocket_message_latency_seconds";
/// Counter of closed WebSocket connections; labels `channel`, `class`.
pub const WS_CLOSES: &str = "websocket_closes_total";

// Database.
/// Histogram of database operation durations in seconds; labels `operation`, `outcome`.
pub const DB_QUERY_DURATION: &str = "db_query_duration_seconds";
/// Counter of operations slower than the slow-query threshold; label `operation`.
pub const DB_SLOW_QUERIES: &str = "db_slow_queries_total";
/// Gauge of pool connections; labels `pool`, `state` (`in_use`/`idle`).
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
/// Gauge of the pool's maximum size; label `pool`.
pub const DB_POOL_CONNECTIONS_MAX: &str = "db_pool_connections_max";

// Business.
/// Counter of user registrations; label `method`.
pub const USER_REGISTRATIONS: &str = "glimpse_user_registrations_total";
/// Counter of matches created.
pub const MATCHES_CREATED: &str = "glimpse_matches_created_total";
/// Counter of chat messages sent; label `kind`.
pub const MESSAGES_SENT: &str = "glimpse_messages_sent_total";
/// Counter of payments; labels `status`, `provider`, `currency`.
pub const PAYMENTS: &str = "glimpse_payments_total";
/// Counter of successful payment amounts in major units; label `currency`.
pub const PAYMENT_AMOUNT: &str = "glimpse_payment_amount_total";
/// Counter of successful payments whose amount was not added to
/// [`PAYMENT_AMOUNT`] because the sum would have passed its top.
pub const PAYMENT_AMOUNT_REJECTED: &str = "glimpse_payment_amount_rejected_total";
/// Counter of feature uses; label `feature`.
pub const FEATURE_USAGE: &str = "glimpse_feature_usage_total";
/// Counter of conversion funnel steps; labels `funnel`, `step`.
pub const CONVERSIONS: &str = "glimpse_conversions_total";

// Security.
/// Counter of authentication failures; label `reason`.
pub const AUTH_FAILURES: &str = "glimpse_auth_failures_total";
/// Counter of requests authenticated by API key; label `key_id`.
pub const API_KEY_REQUESTS: &str = "glimpse_api_key_requests_total";
/// Counter of admin actions; label `action`.
pub const ADMIN_ACTIONS: &str = "glimpse_admin_actions_total";

// Cache.
/// Counter of cache look-ups; labels `cache`, `result` (`hit`/`miss`).
pub const CACHE_REQUESTS: &str = "cache_requests_total";

// Logs and self-monitoring.
/// Counter of log events by level; label `level`.
pub const LOG_EVENTS: &str = "log_events_total";
/// Counter of telemetry dropped under overload or lost to a failed export;
/// label `signal` (`logs`/`spans`/`metrics_otlp`: the data points of a
/// failed OTLP metric export).
pub const DROPPED: &str = "glimpse_obs_dropped_total";
/// Counter of caller-fed label values folded into `other`; label `metric`.
pub const LABEL_OVERFLOW: &str = "glimpse_obs_label_overflow_total";
/// Gauge, always 1, carrying `version` and `rustc` labels.
pub const BUILD_INFO: &str = "glimpse_build_info";

// Tokio runtime (metrics::runtime).
/// Gauge of the runtime's worker threads.
pub const TOKIO_WORKERS: &str = "tokio_workers";
/// Gauge of tasks spawned and not yet finished.
pub const TOKIO_ALIVE_TASKS: &str = "tokio_alive_tasks";
/// Gauge of tasks waiting in the runtime's global queue.
pub const TOKIO_GLOBAL_QUEUE_DEPTH: &str = "tokio_global_queue_depth";
/// Gauge (0-1) of the workers' busy share of the last sampling interval, averaged.
pub const TOKIO_BUSY_RATIO: &str = "tokio_busy_ratio";
/// Gauge (0-1) of one worker's busy share of the last sampling interval; label `worker`.
pub const TOKIO_WORKER_BUSY_RATIO: &str = "tokio_worker_busy_ratio";
/// Counter of worker parks, summed over workers.
pub const TOKIO_WORKER_PARKS: &str = "tokio_worker_parks_total";

// Health (crate::health).
/// Gauge of the last run of a readiness check, 1 passed / 0 failed; label `check`.
pub const HEALTH_CHECK_STATUS: &str = "glimpse_health_check_status";
/// Histogram of readiness check durations in seconds; label `check`.
pub const HEALTH_CHECK_DURATION: &str = "glimpse_health_check_duration_seconds";

/// Every metric the crate itself registers (process metrics excluded).
pub const ALL: &[&str] = &[
    HTTP_SERVER_REQUEST_DURATION,
    HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_CLIENT_REQUEST_DURATION,
    HTTP_SERVER_PANICS,
    HTTP_SERVER_REQUEST_BODY_SIZE,
    HTTP_SERVER_RESPONSE_BODY_SIZE,
    WS_CONNECTIONS_ACTIVE,
    WS_MESSAGES,
    WS_CONNECTION_DURATION,
    WS_MESSAGE_LATENCY,
    WS_CLOSES,
    DB_QUERY_DURATION,
    DB_SLOW_QUERIES,
    DB_POOL_CONNECTIONS,
    DB_POOL_CONNECTIONS_MAX,
    USER_REGISTRATIONS,
    MATCHES_CREATED,
    MESSAGES_SENT,
    PAYMENTS,
    PAYMENT_AMOUNT,
    PAYMENT_AMOUNT_REJECTED,
    FEATURE_USAGE,
    CONVERSIONS,
    AUTH_FAILURES,
    API_KEY_REQUESTS,
    ADMIN_ACTIONS,
    CACHE_REQUESTS,
    LOG_EVENTS,
    DROPPED,
    LABEL_OVERFLOW,
    BUILD_INFO,
    TOKIO_WORKERS,
    TOKIO_ALIVE_TASKS,
    TOKIO_GLOBAL_QUEUE_DEPTH,
    TOKIO_BUSY_RATIO,
    TOKIO_WORKER_BUSY_RATIO,
    TOKIO_WORKER_PARKS,
    HEALTH_CHECK_STATUS,
    HEALTH_CHECK_DURATION,
];

// Process (read from the operating system at each scrape with
// `metrics-process`; off with `Config::process_metrics(false)`).
/// Counter of user and system CPU time in seconds, with its fraction of a
/// second (clock ticks: 10 ms on Linux).
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
/// Gauge of resident memory in bytes.
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// Gauge of virtual memory in bytes.
pub const PROCESS_VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
/// Gauge of the virtual memory limit in bytes (0: unlimited).
pub const PROCESS_VIRTUAL_MEMORY_MAX: &str = "process_virtual_memory_max_bytes";
/// Gauge of open file descriptors.
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// Gauge of the file descriptor limit (0: unlimited).
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
/// Gauge of the process start time in seconds since the Unix epoch.
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
/// Gauge of OS threads in the process.
pub const PROCESS_THREADS: &str = "process_threads";

/// Process metrics (prefix `process_`).
pub const PROCESS: &[&str] = &[
    PROCESS_CPU_SECONDS,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_VIRTUAL_MEMORY,
    PROCESS_VIRTUAL_MEMORY_MAX,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_START_TIME,
    PROCESS_THREADS,
];

/// Label keys.
pub mod labels {
    /// Service name, on every series.
    pub const SERVICE: &str = "service";
    /// Deployment environment, on every series.
    pub const ENV: &str = "env";
    /// HTTP method (`_OTHER` for unknown methods); the sign-up method on registrations.
    pub const METHOD: &str = "method";
    /// Host of the peer of an outbound call (never its URL).
    pub const SERVER_ADDRESS: &str = "server_address";
    /// Route template (`unmatched` when no route matched).
    pub const ROUTE: &str = "route";
    /// HTTP status code; `succeeded`/`failed` on payments.
    pub const STATUS: &str = "status";
    /// WebSocket channel.
    pub const CHANNEL: &str = "channel";
    /// Message direction.
    pub const DIRECTION: &str = "direction";
    /// WebSocket close-code class.
    pub const CLASS: &str = "class";
    /// Database operation name.
    pub const OPERATION: &str = "operation";
    /// `ok` or `error`.
    pub const OUTCOME: &str = "outcome";
    /// Connection pool name.
    pub const POOL: &str = "pool";
    /// Pool connection state.
    pub const STATE: &str = "state";
    /// Log level.
    pub const LEVEL: &str = "level";
    /// Telemetry signal.
    pub const SIGNAL: &str = "signal";
    /// Metric name, on the overflow counter.
    pub const METRIC: &str = "metric";
    /// Chat message kind.
    pub const KIND: &str = "kind";
    /// Payment provider.
    pub const PROVIDER: &str = "provider";
    /// ISO 4217 currency code.
    pub const CURRENCY: &str = "currency";
    /// Product feature name.
    pub const FEATURE: &str = "feature";
    /// Conversion funnel name.
    pub const FUNNEL: &str = "funnel";
    /// Conversion funnel step.
    pub const STEP: &str = "step";
    /// Authentication failure reason.
    pub const REASON: &str = "reason";
    /// API key ID (never the key).
    pub const KEY_ID: &str = "key_id";
    /// Admin action name.
    pub const ACTION: &str = "action";
    /// Cache name.
    pub const CACHE: &str = "cache";
    /// Cache look-up result (`hit`/`miss`).
    pub const RESULT: &str = "result";
    /// Tokio worker index (`0`..`workers-1`).
    pub const WORKER: &str = "worker";
    /// Readiness check name.
    pub const CHECK: &str = "check";
}
