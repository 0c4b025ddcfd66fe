//! The response of an exported server span, handed from the HTTP layer to
//! the trace layer without a `span.record` per field.
//!
//! Recording a field on a `tracing` span dispatches through every layer and
//! looks the span up in the registry (about a fifth of what exporting a
//! span cost per request). When the crate's trace layer exports a server
//! span, it puts a [`ResponseSlot`] in the span's extensions at creation;
//! the HTTP layer takes it with the span's IDs (one look-up for both),
//! fills it when the response is known, and the trace layer writes the
//! fields into the span when it closes. With the pretty format, or under a
//! subscriber that is not the crate's, the fields are recorded on the span
//! as before, so that other layers see them.

use std::sync::{Arc, OnceLock};

/// What the server span learns of its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseFields {
    /// `http.response.status_code`.
    pub(crate) status: u16,
    /// A panic in the handler made the response (`error.type = "panic"`).
    pub(crate) panicked: bool,
    /// `enduser.id`.
    pub(crate) user: Option<Box<str>>,
}

/// Set once, when the response is known.
#[derive(Debug, Default)]
pub(crate) struct ResponseSlot(OnceLock<ResponseFields>);

impl ResponseSlot {
    /// Fill the slot; a second call keeps the first response.
    pub(crate) fn set(&self, fields: ResponseFields) {
        let _ = self.0.set(fields);
    }

    /// The response, once set.
    pub(crate) fn get(&self) -> Option<&ResponseFields> {
        self.0.get()
    }
}

/// The span extension holding a server span's [`ResponseSlot`].
#[derive(Debug, Default)]
pub(crate) struct ResponseExt(pub(crate) Arc<ResponseSlot>);
