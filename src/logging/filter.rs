//! The level filter and its runtime reload handle.

use tracing_subscriber::{EnvFilter, Registry, reload};

/// Parse an `EnvFilter` directive, explaining what is wrong.
pub(crate) fn parse(directive: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(directive)
        .map_err(|e| e.to_string())
}

/// Changes the level filter of the JSON log while the service runs.
#[derive(Clone)]
pub(crate) struct FilterHandle(pub(crate) reload::Handle<EnvFilter, Registry>);

impl FilterHandle {
    pub(crate) fn set(&self, directive: &str) -> Result<(), crate::Error> {
        let filter = parse(directive).map_err(|reason| crate::Error::InvalidFilter {
            directive: directive.to_owned(),
            reason,
        })?;
        self.0
            .reload(filter)
            .map_err(|e| crate::Error::InvalidFilter {
                directive: directive.to_owned(),
                reason: e.to_string(),
            })
    }
}
