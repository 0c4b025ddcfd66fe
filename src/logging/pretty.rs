//! The pretty format (`GLIMPSE_LOG_FORMAT=pretty`): one readable, coloured
//! line per event for local development.
//!
//! ```text
//! 2026-12-03T08:21:07.412093Z  WARN request > checkout{cart=3}: my_service::cart: card declined amount=12, password=[REDACTED]  traceId=4bf92f3577b34da6a3ce929d0e0e4736 userId=user123 requestId=0193a5b2-…
//! ```
//!
//! Unlike `tracing-subscriber`'s default format, the span prefix is short:
//! the server span of `glimpse_obs::layer()` shows as `request` (its
//! attributes are on the access line already), other spans as
//! `name{fields}` with their fields cut at [`MAX_SPAN_FIELDS`] characters;
//! and the line ends with the request's `traceId`, `userId` and
//! `requestId`, as the JSON lines carry them.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, format::Writer},
    registry::LookupSpan,
};

use super::{scope::ScopeExt, timestamp};
use crate::ids::{SpanIds, is_request_span};

/// Longest run of one span's fields shown in the prefix; longer runs end
/// with `…`.
pub(crate) const MAX_SPAN_FIELDS: usize = 60;

/// The event format of the pretty layer.
pub(crate) struct PrettyFormat;

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

fn level_colour(level: Level) -> &'static str {
    match level {
        Level::ERROR => "\x1b[31m",
        Level::WARN => "\x1b[33m",
        Level::INFO => "\x1b[32m",
        Level::DEBUG => "\x1b[34m",
        Level::TRACE => "\x1b[35m",
    }
}

/// `s` cut to at most `max` characters, on a character boundary.
fn cut(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    }
}

impl<S, N> FormatEvent<S, N> for PrettyFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        let (dim, reset) = if ansi { (DIM, RESET) } else { ("", "") };
        let meta = event.metadata();

        let mut ts = Vec::with_capacity(32);
        timestamp::rfc3339_into(&mut ts, std::time::SystemTime::now());
        write!(writer, "{dim}{}{reset} ", String::from_utf8_lossy(&ts))?;
        let level = super::layer::level_str(*meta.level());
        if ansi {
            write!(writer, "{}{level:>5}{RESET} ", level_colour(*meta.level()))?;
        } else {
            write!(writer, "{level:>5} ")?;
        }

        // The span prefix, root first, and the IDs, innermost first.
        let mut trace_id = None;
        let mut request = None;
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<_> = scope.collect();
            for (i, span) in spans.iter().rev().enumerate() {
                if i > 0 {
                    writer.write_str(" > ")?;
                }
                writer.write_str(span.name())?;
                if is_request_span(span.metadata()) {
                    continue;
                }
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    let (shown, was_cut) = cut(fields.as_str(), MAX_SPAN_FIELDS);
                    write!(writer, "{{{shown}{}}}", if was_cut { "…" } else { "" })?;
                }
            }
            if !spans.is_empty() {
                writer.write_str(": ")?;
            }
            for span in &spans {
                let ext = span.extensions();
                if trace_id.is_none() {
                    trace_id = ext.get::<SpanIds>().map(|ids| ids.trace_id);
                }
                if request.is_none() {
                    request = ext.get::<ScopeExt>().map(|s| s.0.clone());
                }
            }
        }
        write!(writer, "{dim}{}:{reset} ", meta.target())?;
        ctx.format_fields(writer.by_ref(), event)?;

        if trace_id.is_some() || request.is_some() {
            writer.write_str(" ")?;
            writer.write_str(dim)?;
            if let Some(t) = trace_id {
                write!(writer, " traceId={t}")?;
            }
            if let Some(r) = &request {
                if let Some(u) = r.user() {
                    write!(writer, " userId={}", u.raw)?;
                }
                write!(writer, " requestId={}", r.request_id.as_str())?;
            }
            writer.write_str(reset)?;
        }
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn long_span_fields_are_cut_on_a_character_boundary() {
        assert_eq!(cut("abc", 5), ("abc", false));
        assert_eq!(cut("ééééé", 3), ("ééé", true));
    }
}
