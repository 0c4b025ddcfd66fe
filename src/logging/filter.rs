//! The level filter and its runtime handle.

use std::sync::{
    Arc, Mutex, RwLock,
    atomic::{AtomicBool, AtomicU8, Ordering},
};

use tracing::{Level, Metadata, Subscriber, span, subscriber::Interest};
use tracing_core::{Callsite, Kind, field::FieldSet};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    layer::{Context, Filter},
};

pub(crate) use crate::config::parse_filter as parse;

/// The JSON log's level filter, replaceable while the service runs: what
/// `tracing_subscriber::reload` does, without its lock on every span
/// callback. An `EnvFilter` only follows spans (enter, exit, new, record,
/// close) for its span and field directives; without any (nearly always),
/// those callbacks are skipped, which saves a lock and a look-up on each of
/// them (several per request: `benches/layer.rs`).
#[derive(Clone)]
pub(crate) struct LevelFilter(Arc<Current>);

struct Current {
    filter: RwLock<EnvFilter>,
    /// Whether `filter` has span or field directives.
    dynamic: AtomicBool,
    /// Serialises replacements, so the filter, `dynamic` and the access
    /// gate always come from the same directive.
    replacing: Mutex<()>,
}

impl LevelFilter {
    /// `filter`, parsed from `directive`.
    pub(crate) fn new(filter: EnvFilter, directive: &str) -> Self {
        Self(Arc::new(Current {
            filter: RwLock::new(filter),
            dynamic: AtomicBool::new(is_dynamic(directive)),
            replacing: Mutex::new(()),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, EnvFilter> {
        self.0.filter.read().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn dynamic(&self) -> bool {
        self.0.dynamic.load(Ordering::Acquire)
    }

    /// Put `filter` (parsed from `directive`) in place, and its access gate
    /// into `gates`.
    fn replace(&self, filter: EnvFilter, directive: &str, gates: &AccessGate) {
        let gate = AccessGate::decide(&filter);
        let dynamic = is_dynamic(directive);
        let _one_at_a_time = self.0.replacing.lock().unwrap_or_else(|e| e.into_inner());
        // A filter with span directives sees span callbacks from before it
        // is in place (it ignores spans it does not know, as a reloaded
        // filter would); a static one stops seeing them only after.
        if dynamic {
            self.0.dynamic.store(true, Ordering::Release);
        }
        *self.0.filter.write().unwrap_or_else(|e| e.into_inner()) = filter;
        if !dynamic {
            self.0.dynamic.store(false, Ordering::Release);
        }
        gates.store(gate);
        // Outside the filter's lock: rebuilding asks it about every callsite.
        tracing_core::callsite::rebuild_interest_cache();
    }
}

/// Whether `directive` has span or field directives (`target[span{field}]`):
/// every such directive has a `[`.
fn is_dynamic(directive: &str) -> bool {
    directive.contains('[')
}

impl<S: Subscriber> Filter<S> for LevelFilter {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        Filter::<S>::enabled(&*self.read(), meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        Filter::<S>::callsite_enabled(&*self.read(), meta)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Filter::<S>::max_level_hint(&*self.read())
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        if self.dynamic() {
            Filter::<S>::on_new_span(&*self.read(), attrs, id, cx);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        if self.dynamic() {
            Filter::<S>::on_record(&*self.read(), id, values, cx);
        }
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        if self.dynamic() {
            Filter::<S>::on_enter(&*self.read(), id, cx);
        }
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        if self.dynamic() {
            Filter::<S>::on_exit(&*self.read(), id, cx);
        }
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        if self.dynamic() {
            Filter::<S>::on_close(&*self.read(), id, cx);
        }
    }
}

/// Changes the level filter of the JSON log while the service runs.
#[derive(Clone)]
pub(crate) struct FilterHandle {
    pub(crate) filter: LevelFilter,
    /// Kept in step with the filter (see [`AccessGate`]).
    pub(crate) gate: Arc<AccessGate>,
}

impl FilterHandle {
    pub(crate) fn set(&self, directive: &str) -> Result<(), crate::Error> {
        let filter = parse(directive).map_err(|reason| crate::Error::InvalidFilter {
            directive: directive.to_owned(),
            reason,
        })?;
        self.filter.replace(filter, directive, &self.gate);
        Ok(())
    }
}

/// What the level filter decides for the access line at INFO and at WARN,
/// so the tower layer can write the line without dispatching a `tracing`
/// event (`JsonLayer::write_access_line`): the filter's answer for the
/// access target depends only on the target and level unless the filter has
/// span or field directives, and it changes only when the filter is
/// replaced. Event dispatch (per-layer filter state, the value set, the
/// field visitor) was a third of the access line's cost in
/// `benches/layer.rs`.
#[derive(Debug)]
pub(crate) struct AccessGate([AtomicU8; 2]);

/// The filter drops the access line at this level.
pub(crate) const GATE_OFF: u8 = 0;
/// The filter passes it.
pub(crate) const GATE_ON: u8 = 1;
/// The answer depends on the span context (dynamic directives): dispatch
/// the event and let the filter decide.
pub(crate) const GATE_DISPATCH: u8 = 2;

impl AccessGate {
    /// The gate of `filter`.
    pub(crate) fn new(filter: &EnvFilter) -> Self {
        Self(Self::decide(filter).map(AtomicU8::new))
    }

    fn decide(filter: &EnvFilter) -> [u8; 2] {
        [&ACCESS_INFO, &ACCESS_WARN].map(|meta| {
            let interest = <EnvFilter as Layer<Registry>>::register_callsite(filter, meta);
            if interest.is_always() {
                GATE_ON
            } else if interest.is_never() {
                GATE_OFF
            } else {
                GATE_DISPATCH
            }
        })
    }

    fn store(&self, gate: [u8; 2]) {
        for (slot, g) in self.0.iter().zip(gate) {
            slot.store(g, Ordering::Relaxed);
        }
    }

    /// The decision for an access line at `level` (INFO or WARN; ERROR
    /// lines are always dispatched, so OpenTelemetry records them on the
    /// span).
    #[inline]
    pub(crate) fn get(&self, level: Level) -> u8 {
        match level {
            Level::INFO => self.0[0].load(Ordering::Relaxed),
            Level::WARN => self.0[1].load(Ordering::Relaxed),
            _ => GATE_DISPATCH,
        }
    }
}

/// The access line's metadata at INFO and WARN, to ask a filter about them.
/// Never registered with `tracing`: only handed to
/// `EnvFilter::register_callsite`, which reads the target and level.
struct AccessCallsite;

impl Callsite for AccessCallsite {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        &ACCESS_INFO
    }
}

static ACCESS_CALLSITE: AccessCallsite = AccessCallsite;

const ACCESS_FIELDS: &[&str] = &["message", "log_type"];

/// The access line's metadata at `level`.
const fn access_metadata(level: Level) -> Metadata<'static> {
    Metadata::new(
        "request completed",
        crate::ids::ACCESS_TARGET,
        level,
        None,
        None,
        None,
        FieldSet::new(
            ACCESS_FIELDS,
            tracing_core::identify_callsite!(&ACCESS_CALLSITE),
        ),
        Kind::EVENT,
    )
}

static ACCESS_INFO: Metadata<'static> = access_metadata(Level::INFO);
static ACCESS_WARN: Metadata<'static> = access_metadata(Level::WARN);

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(directive: &str) -> [u8; 2] {
        AccessGate::decide(&parse(directive).unwrap())
    }

    #[test]
    fn the_access_gate_follows_static_directives() {
        assert_eq!(gate("info"), [GATE_ON, GATE_ON]);
        assert_eq!(gate("warn"), [GATE_OFF, GATE_ON]);
        assert_eq!(gate("off"), [GATE_OFF, GATE_OFF]);
        assert_eq!(gate("info,glimpse_obs::access=warn"), [GATE_OFF, GATE_ON]);
        assert_eq!(gate("error,glimpse_obs=info"), [GATE_ON, GATE_ON]);
        assert_eq!(gate("debug,glimpse_obs::access=off"), [GATE_OFF, GATE_OFF]);
    }

    #[test]
    fn span_directives_send_the_access_line_through_dispatch() {
        // Whether `[request]=info` enables the line depends on the span the
        // event is in: only the filter, at dispatch, can tell.
        assert_eq!(gate("warn,[request]=info"), [GATE_DISPATCH, GATE_ON]);
        assert_eq!(gate("off,[{user=1}]=info"), [GATE_DISPATCH, GATE_DISPATCH]);
    }

    #[test]
    fn audit_stays_at_info_unless_the_directive_names_it() {
        for d in ["warn", "off", "error,glimpse_obs=warn", "info"] {
            let f = parse(d).unwrap().to_string();
            assert!(f.contains("glimpse_obs::audit=info"), "{d}: {f}");
        }
        for d in [
            "warn,glimpse_obs::audit=off",
            "glimpse_obs::audit[x]=error",
            "glimpse_obs::audit=trace,warn",
        ] {
            let f = parse(d).unwrap().to_string();
            assert!(!f.contains("glimpse_obs::audit=info"), "{d}: {f}");
        }
    }

    #[test]
    fn a_part_that_is_not_a_level_is_refused_with_how_to_write_a_target() {
        for (directive, message) in [
            (
                "infoo",
                "\"infoo\" is not a level: expected off, error, warn, info, debug or trace; \
                 to enable a target, write target=level, such as infoo=debug",
            ),
            (
                "warn,my_crate",
                "\"my_crate\" is not a level: expected off, error, warn, info, debug or trace; \
                 to enable a target, write target=level, such as my_crate=debug",
            ),
            (
                "foo=infoo",
                "\"infoo\" in \"foo=infoo\" is not a level: \
                 expected off, error, warn, info, debug or trace",
            ),
            (
                "info,sqlx=",
                "\"\" in \"sqlx=\" is not a level: expected off, error, warn, info, debug or trace",
            ),
            (
                "[request]=warnn",
                "\"warnn\" in \"[request]=warnn\" is not a level: \
                 expected off, error, warn, info, debug or trace",
            ),
        ] {
            assert_eq!(parse(directive).unwrap_err(), message, "{directive}");
        }
    }

    #[test]
    fn levels_targets_and_span_directives_with_a_level_parse() {
        for d in [
            "info",
            "WARN",
            "3",
            "off",
            "warn,glimpse_obs::access=info",
            "my_crate::db=debug",
            "[request]=debug",
            "[request]",
            "info,[{user=1}]=trace",
            "my_crate[job{id=7}]=debug",
        ] {
            assert!(parse(d).is_ok(), "{d}: {:?}", parse(d).err());
        }
    }
}
