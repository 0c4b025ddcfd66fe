//! The response of an exported server span, handed from the HTTP layer to
//! the trace layer without a `span.record` per field.
//!
//! Recording a field on a `tracing` span dispatches through every layer and
//! looks the span up in the registry (about a fifth of what exporting a
//! span cost per request). When the crate's trace layer exports the server
//! spans and no other layer reads their fields (not the pretty format, not
//! a foreign subscriber), the HTTP layer puts a [`ResponseExt`] (its
//! request's state, no allocation) in the span's extensions when it
//! attaches that state, sets the response there when it is known, and the
//! trace layer writes the fields into the span when it closes.

use std::{sync::Arc, time::Duration};

/// What the server span learns of its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseFields {
    /// `http.response.status_code`.
    pub(crate) status: u16,
    /// A panic in the handler made the response (`error.type = "panic"`).
    pub(crate) panicked: bool,
    /// `enduser.id`.
    pub(crate) user: Option<Arc<str>>,
    /// From the request's start to its end, as the HTTP layer measured it:
    /// the span ends that long after it started (one clock read fewer).
    pub(crate) elapsed: Duration,
}

/// Where the trace layer finds a server span's response.
pub(crate) trait ResponseSource: Send + Sync + std::fmt::Debug {
    /// The response, once the HTTP layer has set it.
    fn response(&self) -> Option<&ResponseFields>;
}

/// The span extension through which the trace layer reads a server span's
/// response.
pub(crate) struct ResponseExt(pub(crate) Arc<dyn ResponseSource>);
