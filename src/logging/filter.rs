//! The level filter and its runtime reload handle.

use tracing_subscriber::{EnvFilter, Registry, reload};

/// The target of audit lines, kept at INFO whatever the level filter says.
const AUDIT_TARGET: &str = "glimpse_obs::audit";

/// Parse an `EnvFilter` directive, explaining what is wrong.
///
/// Audit lines are compliance records (DESIGN §3: never dropped): unless
/// the directive names `glimpse_obs::audit` itself, `glimpse_obs::audit=info`
/// is added, so `warn` or `off` still lets them through. The business
/// payment line is not an audit record and follows the filter.
pub(crate) fn parse(directive: &str) -> Result<EnvFilter, String> {
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

/// Whether one of the comma-separated directives has exactly `target` as
/// its target (`target=level`, `target[span]=level` or a bare `target`).
fn names_target(directive: &str, target: &str) -> bool {
    directive.split(',').any(|d| {
        let end = d.find(['[', '=']).unwrap_or(d.len());
        d[..end].trim() == target
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_stays_at_info_unless_the_directive_names_it() {
        for d in ["warn", "off", "error,glimpse_obs=warn", "info"] {
            let f = parse(d).unwrap().to_string();
            assert!(f.contains("glimpse_obs::audit=info"), "{d}: {f}");
        }
        for d in [
            "warn,glimpse_obs::audit=off",
            "glimpse_obs::audit[x]=error",
            " glimpse_obs::audit ",
        ] {
            let f = parse(d).unwrap().to_string();
            assert!(!f.contains("glimpse_obs::audit=info"), "{d}: {f}");
        }
    }
}
