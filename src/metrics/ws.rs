//! WebSocket metrics: one [`Connection`] guard per socket.
//!
//! The guard counts the socket in `websocket_connections_active{channel}`
//! while it lives, records its lifetime in
//! `websocket_connection_duration_seconds` and how it ended in
//! `websocket_closes_total{channel,class}` when it drops, and counts
//! messages and their latency (the guide's KPI: under 100 ms) in between.
//! Dropping it on any path — a return, an error, a panic, a client that
//! vanished — takes the connection out of the gauge.
//!
//! ```no_run
//! use axum::{
//!     Router,
//!     extract::ws::{Message, WebSocket, WebSocketUpgrade},
//!     response::Response,
//!     routing::get,
//! };
//! use glimpse_obs::ws;
//! use tracing::Instrument;
//!
//! async fn chat(upgrade: WebSocketUpgrade) -> Response {
//!     // The socket task runs after the response: hand it the request's
//!     // span so its `ws.connection` span joins the request's trace.
//!     let span = tracing::Span::current();
//!     upgrade.on_upgrade(move |socket| echo(socket).instrument(span))
//! }
//!
//! async fn echo(mut socket: WebSocket) {
//!     let conn = ws::Connection::open("chat");
//!     while let Some(Ok(msg)) = socket.recv().await {
//!         conn.received();
//!         match msg {
//!             Message::Close(frame) => return conn.close(frame.map(|f| f.code)),
//!             Message::Text(text) => {
//!                 let started = std::time::Instant::now();
//!                 if socket.send(Message::Text(text)).await.is_err() {
//!                     return; // dropped without close(): counted as `abnormal`
//!                 }
//!                 conn.sent();
//!                 conn.latency(started.elapsed());
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//!
//! let app: Router = Router::new()
//!     .route("/ws/chat", get(chat))
//!     .layer(glimpse_obs::layer());
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use metrics::{Counter, Gauge, Histogram};

use super::{
    exemplar::{Exemplars, span_ids},
    handles::{Family, Ref},
    names::{self, labels},
};

/// The handles of one channel, resolved once (see `metrics::handles`).
struct Handles {
    active: Gauge,
    sent: Counter,
    received: Counter,
    latency: Histogram,
    /// Exemplar cells of `latency`, once installed.
    latency_exemplars: Option<Arc<Exemplars>>,
    duration: Histogram,
    closes: [Counter; CloseClass::ALL.len()],
}

static CHANNELS: Family<Handles> = Family::new(names::WS_CONNECTIONS_ACTIVE, |channel, _| {
    let ch = || channel.to_owned();
    Handles {
        active: metrics::gauge!(names::WS_CONNECTIONS_ACTIVE, labels::CHANNEL => ch()),
        sent: metrics::counter!(names::WS_MESSAGES, labels::CHANNEL => ch(), labels::DIRECTION => "sent"),
        received: metrics::counter!(names::WS_MESSAGES, labels::CHANNEL => ch(), labels::DIRECTION => "received"),
        latency: metrics::histogram!(names::WS_MESSAGE_LATENCY, labels::CHANNEL => ch()),
        latency_exemplars: super::exporter::installed_exemplars().map(|registry| {
            registry.series(
                names::WS_MESSAGE_LATENCY,
                &[(labels::CHANNEL, channel)],
                super::LATENCY_BUCKETS,
            )
        }),
        duration: metrics::histogram!(names::WS_CONNECTION_DURATION, labels::CHANNEL => ch()),
        closes: CloseClass::ALL.map(
            |c| metrics::counter!(names::WS_CLOSES, labels::CHANNEL => ch(), labels::CLASS => c.as_str()),
        ),
    }
});

/// How a WebSocket connection ended: the `class` label of
/// `websocket_closes_total`, from the close code (RFC 6455 §7.4).
///
/// | class | close codes |
/// |---|---|
/// | `normal` | 1000, or a close frame without a code (1005) |
/// | `going_away` | 1001 (page left, server shutting down) |
/// | `protocol_error` | 1002, 1003, 1007, 1009, 1010 |
/// | `policy_violation` | 1008 |
/// | `server_error` | 1011, 1012, 1013, 1014 |
/// | `abnormal` | 1006, 1015, or dropped without [`Connection::close`] |
/// | `app` | 3000–4999 (frameworks and applications) |
/// | `other` | anything else |
///
/// ```
/// use glimpse_obs::ws::CloseClass;
/// assert_eq!(CloseClass::from_code(Some(1000)), CloseClass::Normal);
/// assert_eq!(CloseClass::from_code(Some(4001)).as_str(), "app");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseClass {
    /// A clean close (1000, or no code).
    Normal,
    /// The endpoint is going away (1001).
    GoingAway,
    /// The peer broke the protocol or sent unacceptable data.
    ProtocolError,
    /// The peer violated a policy (1008).
    PolicyViolation,
    /// The server failed or is restarting (1011–1014).
    ServerError,
    /// No closing handshake: the connection dropped.
    Abnormal,
    /// A framework or application code (3000–4999).
    App,
    /// Any other code.
    Other,
}

impl CloseClass {
    const ALL: [CloseClass; 8] = [
        Self::Normal,
        Self::GoingAway,
        Self::ProtocolError,
        Self::PolicyViolation,
        Self::ServerError,
        Self::Abnormal,
        Self::App,
        Self::Other,
    ];

    /// The class of a close code; `None` (a close frame without a code) is
    /// a normal close.
    pub const fn from_code(code: Option<u16>) -> Self {
        match code {
            None | Some(1000 | 1005) => Self::Normal,
            Some(1001) => Self::GoingAway,
            Some(1002 | 1003 | 1007 | 1009 | 1010) => Self::ProtocolError,
            Some(1008) => Self::PolicyViolation,
            Some(1011..=1014) => Self::ServerError,
            Some(1006 | 1015) => Self::Abnormal,
            Some(3000..=4999) => Self::App,
            Some(_) => Self::Other,
        }
    }

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::GoingAway => "going_away",
            Self::ProtocolError => "protocol_error",
            Self::PolicyViolation => "policy_violation",
            Self::ServerError => "server_error",
            Self::Abnormal => "abnormal",
            Self::App => "app",
            Self::Other => "other",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// One open WebSocket connection, counted in the `ws` metrics while it
/// lives. See the [module docs](self) for a complete handler.
///
/// [`open`](Self::open) also opens a `ws.connection` span (a child of the
/// current span); [`span`](Self::span) returns it for instrumenting the
/// socket's work.
///
/// ```
/// use glimpse_obs::ws::Connection;
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// let conn = Connection::open("chat"); // websocket_connections_active{channel="chat"} +1
/// conn.received();
/// conn.sent();
/// conn.close(Some(1000)); // -1, duration recorded, class="normal"
/// # });
/// # assert_eq!(seen.metric_delta("websocket_closes_total", &[("channel", "chat"), ("class", "normal")]), 1.0);
/// ```
#[must_use = "the connection is counted until this guard drops"]
pub struct Connection {
    handles: Ref<Handles>,
    started: Instant,
    class: Option<CloseClass>,
    span: tracing::Span,
    /// The connection span's IDs when sampled and exemplars are kept: the
    /// exemplar of each message latency.
    ids: Option<crate::ids::SpanIds>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("started", &self.started)
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Count a new connection on `channel` in `websocket_connections_active`.
    ///
    /// `channel` is a label: name the kind of socket (`"chat"`,
    /// `"notifications"`), never a user or room ID; distinct values past the
    /// label cap are folded into `other`.
    ///
    /// ```
    /// # let (_, seen) = glimpse_obs::testing::capture(|| {
    /// let conn = glimpse_obs::ws::Connection::open("chat");
    /// # });
    /// ```
    pub fn open(channel: &str) -> Self {
        let handles = CHANNELS.get(channel, "");
        handles.active.increment(1.0);
        let span = tracing::info_span!(
            target: "glimpse_obs::ws",
            "ws.connection",
            channel,
            otel.kind = "server",
            ws.close_class = tracing::field::Empty,
        );
        let ids = handles
            .latency_exemplars
            .is_some()
            .then(|| span_ids(&span))
            .flatten();
        Self {
            handles,
            started: Instant::now(),
            class: None,
            span,
            ids,
        }
    }

    /// Count one message sent to the client
    /// (`websocket_messages_total{direction="sent"}`).
    ///
    /// ```
    /// # glimpse_obs::testing::capture(|| {
    /// let conn = glimpse_obs::ws::Connection::open("chat");
    /// conn.sent();
    /// # });
    /// ```
    #[inline]
    pub fn sent(&self) {
        self.handles.sent.increment(1);
    }

    /// Count one message received from the client
    /// (`websocket_messages_total{direction="received"}`).
    ///
    /// ```
    /// # glimpse_obs::testing::capture(|| {
    /// let conn = glimpse_obs::ws::Connection::open("chat");
    /// conn.received();
    /// # });
    /// ```
    #[inline]
    pub fn received(&self) {
        self.handles.received.increment(1);
    }

    /// Record one message latency in `websocket_message_latency_seconds`
    /// (the guide's KPI: under 100 ms). What "latency" spans is the
    /// service's choice: receive-to-echo, or send-to-acknowledgement.
    ///
    /// ```
    /// # glimpse_obs::testing::capture(|| {
    /// let conn = glimpse_obs::ws::Connection::open("chat");
    /// conn.latency(std::time::Duration::from_millis(12));
    /// # });
    /// ```
    #[inline]
    pub fn latency(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        self.handles.latency.record(secs);
        // The exemplar carries the connection's IDs, resolved once at
        // open: an unsampled connection pays one branch per message. No
        // clock read (it would cost more than the exemplar): the exemplar
        // has no timestamp, and Prometheus stamps it with the scrape's.
        if let (Some(cells), Some(ids)) = (&self.handles.latency_exemplars, self.ids) {
            cells.record_ids(secs, Some(ids), None);
        }
    }

    /// The connection's `ws.connection` span, to instrument the socket's
    /// work so its log lines and child spans belong to the connection.
    ///
    /// ```
    /// # glimpse_obs::testing::capture(|| {
    /// let conn = glimpse_obs::ws::Connection::open("chat");
    /// conn.span().in_scope(|| tracing::info!("joined"));
    /// # });
    /// ```
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// End the connection after a closing handshake with `code` (the code
    /// the peer sent, or the one the server sends; `None` for a close frame
    /// without a code): counts `websocket_closes_total{class}` by
    /// [`CloseClass`], then drops the guard.
    ///
    /// ```
    /// # glimpse_obs::testing::capture(|| {
    /// let conn = glimpse_obs::ws::Connection::open("chat");
    /// conn.close(Some(1000)); // class="normal"
    /// # });
    /// ```
    pub fn close(mut self, code: Option<u16>) {
        self.class = Some(CloseClass::from_code(code));
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let class = self.class.unwrap_or(CloseClass::Abnormal);
        let h = &*self.handles;
        h.active.decrement(1.0);
        h.duration.record(self.started.elapsed().as_secs_f64());
        h.closes[class.index()].increment(1);
        self.span.record("ws.close_class", class.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::CloseClass;

    #[test]
    fn close_codes_map_to_their_class() {
        let cases = [
            (None, "normal"),
            (Some(1000), "normal"),
            (Some(1001), "going_away"),
            (Some(1002), "protocol_error"),
            (Some(1009), "protocol_error"),
            (Some(1008), "policy_violation"),
            (Some(1011), "server_error"),
            (Some(1006), "abnormal"),
            (Some(3001), "app"),
            (Some(4999), "app"),
            (Some(2000), "other"),
            (Some(0), "other"),
        ];
        for (code, class) in cases {
            assert_eq!(CloseClass::from_code(code).as_str(), class, "{code:?}");
        }
        for (i, c) in CloseClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
