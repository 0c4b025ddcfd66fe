//! Log lines as OTLP `LogRecord`s (`OTEL_LOGS_EXPORTER=otlp`).
//!
//! The record is made from the finished JSON line, not from a second pass
//! over the event: the line already holds every field, redacted, masked,
//! capped and renamed exactly as stdout shows it, so the record cannot
//! disagree with it. The formatter appends the line, behind a fixed
//! header (time, level, span IDs), to one shared growable buffer under a
//! short lock (no allocation per line, as `writer.rs` does for stdout);
//! a buffer holding `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE` lines goes to the
//! bounded batch queue as one [`Chunk`], and the worker also takes the
//! partly filled buffer on its schedule, at flush and at shutdown. The
//! export worker transcodes each line into protobuf straight into the
//! request (`LogEncoder::encode_chunks`, request framing written once per
//! batch in front, no copy of the records). The formatter also stages an
//! index of the line's fields (`index.rs`: where each key and value is,
//! and whether the value is a string, integer, float, boolean or the
//! message), so the worker copies the values out of the line without
//! parsing it; a value with an escape, and the access line's fields
//! (written by the HTTP layer, not noted one by one), go through the
//! parser below. `timestamp` becomes the
//! record's time, `level` its severity, `message` its body,
//! `traceId`/`spanId` its IDs (from the span's `SpanIds`, with the W3C
//! flags), every other field an attribute of the same name and JSON type
//! (string, integer, double, bool). Emptied buffers go back to a small
//! pool, so the steady state allocates nothing per line.
//!
//! The encoder is written by hand for the one JSON shape the formatter
//! writes (a flat object of strings, numbers and booleans, see
//! `json.rs`): parsing the line with `serde_json` into the
//! `opentelemetry-proto` structs and encoding those with prost cost 3.6
//! times more per record (`encoder_cost_against_serde_json_and_prost`
//! below, run in release). What the record path costs against the JSON
//! line: `benches/logging.rs`, `docs/performance.md`. Unit tests decode
//! what it writes with the `opentelemetry-proto` types.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tracing::Level;

use super::index::{ENTRY, Entry, Kind, LineIndex, MAX_OFFSET};
use crate::{
    Config, Error,
    config::BatchSettings,
    config::LogFormat,
    ids::SpanIds,
    otlp::{
        Batcher, Chunk, Destination, ExportRuntime, Signal, Staging, Transport, proto_resource,
        wire::{I32, I64, LEN, VARINT, bytes_field, put_varint, tag, tag_len, varint, varint_len},
    },
};

/// The instrumentation scope of every record.
pub(crate) const SCOPE_NAME: &str = "glimpse_obs";

/// One line with its time, level and span IDs (unit tests; the export
/// path stages the same in a [`Chunk`]).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct LogItem {
    /// The JSON line as written (with or without its `\n`).
    pub(crate) line: Box<[u8]>,
    /// The line's `timestamp` (microseconds, as the line shows it), in
    /// nanoseconds since the Unix epoch.
    pub(crate) time_unix_nano: u64,
    /// The same instant to the nanosecond.
    pub(crate) observed_unix_nano: u64,
    pub(crate) level: Level,
    /// The IDs of the innermost span that has them.
    pub(crate) ids: Option<SpanIds>,
    /// The line's field index as staged (line entries, field entries and
    /// where the fields start), when the formatter noted one.
    pub(crate) index: Option<StagedIndex>,
}

/// A [`LogItem`]'s copy of its line's field index: line entries, field
/// entries, where the fields start (unit tests).
#[cfg(test)]
pub(crate) type StagedIndex = (Box<[u8]>, Box<[u8]>, usize);

#[cfg(test)]
impl LogItem {
    pub(crate) fn new(line: &[u8], now: SystemTime, level: Level, ids: Option<SpanIds>) -> Self {
        let observed_unix_nano = unix_nanos(now);
        Self {
            line: Box::from(line),
            time_unix_nano: observed_unix_nano - observed_unix_nano % 1000,
            observed_unix_nano,
            level,
            ids,
            index: None,
        }
    }

    /// With the field index `index` (as the formatter noted it).
    pub(crate) fn with_index(mut self, index: LineIndex<'_>) -> Self {
        self.index = Some((
            Box::from(index.line),
            Box::from(index.fields),
            index.fields_at,
        ));
        self
    }

    fn rec(&self) -> Rec<'_> {
        Rec {
            line: &self.line,
            wide: &self.line,
            index: self
                .index
                .as_ref()
                .map(|(line, fields, fields_at)| LineIndex {
                    line,
                    fields,
                    fields_at: *fields_at,
                }),
            observed_unix_nano: self.observed_unix_nano,
            level: self.level,
            ids: self.ids,
        }
    }
}

/// `t` in nanoseconds since the Unix epoch (0 before it, `u64::MAX` after
/// 2554): seconds and nanoseconds put together, not `as_nanos`' `u128`.
fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    })
}

/// One staged line as the encoder reads it.
#[derive(Debug, Clone, Copy)]
struct Rec<'a> {
    /// The JSON line without its `\n`.
    line: &'a [u8],
    /// The line and whatever follows it in its buffer: the word-wide
    /// copies of short keys and values read past their end from here.
    wide: &'a [u8],
    /// Its field index, if noted.
    index: Option<LineIndex<'a>>,
    /// The instant of the line to the nanosecond; its time is this cut to
    /// the microsecond (as the line's `timestamp` shows it).
    observed_unix_nano: u64,
    level: Level,
    ids: Option<SpanIds>,
}

/// A staged line's fixed header: line length u32, nanoseconds u64, level
/// u8, flags u8 (IDs present, sampled, random; field index present), trace
/// ID, span ID, field index: line entries u16, field entries u16, where
/// the fields start u32. Lines are staged in a [`Chunk`] of the shared
/// [`Staging`] buffer, each behind its header and its field index, in the
/// order they were written.
const HEADER: usize = 4 + 8 + 1 + 1 + 16 + 8 + 2 + 2 + 4;

/// Header flag: the line has a field index.
const INDEXED: u8 = 8;

/// Append `line` behind its header and its field `index` (when it has one
/// that fits the staged form) to a chunk's bytes.
fn stage(
    bytes: &mut Vec<u8>,
    line: &[u8],
    index: Option<LineIndex<'_>>,
    observed_unix_nano: u64,
    level: Level,
    ids: Option<SpanIds>,
) {
    let mut h = [0u8; HEADER];
    let line = &line[..line.len().min(u32::MAX as usize)];
    h[..4].copy_from_slice(&(line.len() as u32).to_le_bytes());
    h[4..12].copy_from_slice(&observed_unix_nano.to_le_bytes());
    h[12] = level_index(level);
    if let Some(ids) = ids {
        h[13] = 1 | (u8::from(ids.sampled) << 1) | (u8::from(ids.random) << 2);
        h[14..30].copy_from_slice(&ids.trace_id.to_bytes());
        h[30..38].copy_from_slice(&ids.span_id.to_bytes());
    }
    let fits = |entries: &[u8]| entries.len() / ENTRY <= usize::from(u16::MAX);
    let (entries, fields) = match index {
        Some(i) if line.len() <= MAX_OFFSET && fits(i.line) && fits(i.fields) => {
            h[13] |= INDEXED;
            h[38..40].copy_from_slice(&((i.line.len() / ENTRY) as u16).to_le_bytes());
            h[40..42].copy_from_slice(&((i.fields.len() / ENTRY) as u16).to_le_bytes());
            h[42..46].copy_from_slice(&(i.fields_at as u32).to_le_bytes());
            (i.line, i.fields)
        }
        _ => (&[][..], &[][..]),
    };
    bytes.reserve(HEADER + entries.len() + fields.len() + line.len());
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(entries);
    bytes.extend_from_slice(fields);
    bytes.extend_from_slice(line);
}

/// The lines staged in `chunk`.
fn staged(chunk: &Chunk) -> impl Iterator<Item = Rec<'_>> {
    let mut b = chunk.records(0);
    std::iter::from_fn(move || {
        let (h, rest) = b.split_first_chunk::<HEADER>()?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let entries = usize::from(u16::from_le_bytes([h[38], h[39]]));
        let fields = usize::from(u16::from_le_bytes([h[40], h[41]]));
        let fields_at = u32::from_le_bytes([h[42], h[43], h[44], h[45]]) as usize;
        let (entries, rest) = rest.split_at_checked(entries * ENTRY)?;
        let (fields, rest) = rest.split_at_checked(fields * ENTRY)?;
        let wide = rest;
        let (line, rest) = rest.split_at_checked(len)?;
        b = rest;
        let mut nanos = [0u8; 8];
        nanos.copy_from_slice(&h[4..12]);
        let ids = (h[13] & 1 == 1).then(|| {
            let mut t = [0u8; 16];
            t.copy_from_slice(&h[14..30]);
            let mut s = [0u8; 8];
            s.copy_from_slice(&h[30..38]);
            SpanIds {
                trace_id: opentelemetry::trace::TraceId::from_bytes(t),
                span_id: opentelemetry::trace::SpanId::from_bytes(s),
                sampled: h[13] & 2 != 0,
                random: h[13] & 4 != 0,
            }
        });
        Some(Rec {
            line,
            wide,
            index: (h[13] & INDEXED != 0).then_some(LineIndex {
                line: entries,
                fields,
                fields_at,
            }),
            observed_unix_nano: u64::from_le_bytes(nanos),
            level: index_level(h[12]),
            ids,
        })
    })
}

const fn level_index(level: Level) -> u8 {
    match level {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

const fn index_level(i: u8) -> Level {
    match i {
        0 => Level::TRACE,
        1 => Level::DEBUG,
        2 => Level::INFO,
        3 => Level::WARN,
        _ => Level::ERROR,
    }
}

/// The OTLP side of the JSON layer: where each finished line goes. Pushing never blocks; the queue behind it is bounded and
/// counts what it drops in `glimpse_obs_dropped_total{signal="logs_otlp"}`.
pub(crate) struct OtlpLogs {
    sink: Sink,
}

enum Sink {
    /// The bounded batch queue, exporting on its own runtime.
    Export {
        staging: Arc<Staging>,
        batcher: Batcher<Chunk>,
        runtime: ExportRuntime,
    },
    /// Unit tests: each item to a function.
    #[cfg(test)]
    Fn(Box<dyn Fn(LogItem) -> bool + Send + Sync>),
}

impl std::fmt::Debug for OtlpLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpLogs").finish_non_exhaustive()
    }
}

/// The drop counter's `signal` label.
pub(crate) const DROP_LABEL: &str = "logs_otlp";

impl OtlpLogs {
    /// The log export `config` asks for: `None` unless
    /// `OTEL_LOGS_EXPORTER=otlp`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `OTEL_LOGS_EXPORTER` when the format
    /// is `pretty` (it has no JSON line to send); the transport's errors (a
    /// bad URL or CA file);
    /// [`Error::Io`] when the export thread cannot start.
    pub(crate) fn start(config: &Config) -> Result<Option<Self>, Error> {
        if !config.export.logs_otlp {
            return Ok(None);
        }
        let refuse = |reason: &str| Error::InvalidConfig {
            name: crate::config::OTEL_LOGS_EXPORTER,
            reason: reason.to_owned(),
        };
        if config.log_format != LogFormat::Json {
            return Err(refuse(
                "otlp sends the JSON lines as records: set GLIMPSE_LOG_FORMAT=json (the default)",
            ));
        }
        let runtime = ExportRuntime::start()?;
        // Without an endpoint, the specification's default collector on
        // this host, as for metrics asked for by name.
        let transport = Transport::to(
            &Destination::resolve_or_default(config, Signal::Logs),
            &runtime,
        )?;
        // The resource every signal carries (`otlp::proto_resource`).
        let encoder =
            LogEncoder::with_resource(&prost::Message::encode_to_vec(&proto_resource(config)));
        let settings = config.export.logs_batch;
        let batch = settings
            .max_export_batch_size
            .clamp(1, settings.max_queue_size.max(1));
        let staging = Arc::new(Staging::new(batch, 0));
        // The queue holds chunks of `batch` lines: as many as make
        // `max_queue_size` lines (the chunk being filled comes on top), one
        // chunk per export.
        let chunks = BatchSettings {
            max_queue_size: settings.max_queue_size.max(1).div_ceil(batch),
            max_export_batch_size: 1,
            ..settings
        };
        let (recycle, refill) = (Arc::clone(&staging), Arc::clone(&staging));
        let batcher = Batcher::weighted(
            chunks,
            transport,
            &runtime,
            DROP_LABEL,
            move |chunks: Vec<Chunk>| {
                let body = encoder.encode_chunks(&chunks);
                for chunk in chunks {
                    recycle.recycle(chunk.bytes);
                }
                body
            },
            |chunk| chunk.count,
            Some(Box::new(move || refill.take())),
        );
        Ok(Some(Self {
            sink: Sink::Export {
                staging,
                batcher,
                runtime,
            },
        }))
    }

    /// Records go to `push` (unit tests).
    #[cfg(test)]
    pub(crate) fn to_fn(push: impl Fn(LogItem) -> bool + Send + Sync + 'static) -> Self {
        Self {
            sink: Sink::Fn(Box::new(push)),
        }
    }

    /// Queue the record of `line` (the JSON line as written, its `\n`
    /// included or not) with its field `index`, if the formatter noted one.
    #[inline]
    pub(crate) fn push(
        &self,
        line: &[u8],
        index: Option<LineIndex<'_>>,
        now: SystemTime,
        level: Level,
        ids: Option<SpanIds>,
    ) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        match &self.sink {
            Sink::Export {
                staging, batcher, ..
            } => {
                let nanos = unix_nanos(now);
                if batcher.is_closed() {
                    batcher.count_dropped(1);
                } else if let Some(full) =
                    staging.push(|bytes| stage(bytes, line, index, nanos, level, ids))
                {
                    // Dropped and counted when the queue is full.
                    let _ = batcher.push(full);
                }
            }
            #[cfg(test)]
            Sink::Fn(f) => {
                let item = LogItem::new(line, now, level, ids);
                let _ = f(match index {
                    Some(index) => item.with_index(index),
                    None => item,
                });
            }
        }
    }

    /// Export what is queued, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::ShutdownTimeout`] when the collector did not take it in
    /// time; [`Error::Export`] when an export failed.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), Error> {
        match &self.sink {
            Sink::Export { batcher, .. } => batcher.force_flush(timeout),
            #[cfg(test)]
            Sink::Fn(_) => Ok(()),
        }
    }

    /// Stop taking records, export what is queued within `timeout` (the
    /// rest is counted as dropped), and stop the export thread.
    ///
    /// # Errors
    /// As [`OtlpLogs::flush`].
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        match &self.sink {
            Sink::Export {
                staging,
                batcher,
                runtime,
            } => {
                let result = batcher.shutdown(timeout);
                // Lines staged too late for the last export (or left when
                // it ran out of time) are lost.
                if let Some(left) = staging.take() {
                    batcher.count_dropped(left.count);
                }
                runtime.stop();
                result
            }
            #[cfg(test)]
            Sink::Fn(_) => Ok(()),
        }
    }

    /// Records dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        match &self.sink {
            Sink::Export { batcher, .. } => batcher.dropped(),
            #[cfg(test)]
            Sink::Fn(_) => 0,
        }
    }
}

/// OTLP `SeverityNumber` of a level (TRACE 1, DEBUG 5, INFO 9, WARN 13, ERROR 17).
pub(crate) const fn severity_number(level: Level) -> u64 {
    match level {
        Level::TRACE => 1,
        Level::DEBUG => 5,
        Level::INFO => 9,
        Level::WARN => 13,
        Level::ERROR => 17,
    }
}

/// Encodes batches of staged lines as `ExportLogsServiceRequest`s with one
/// resource and the `glimpse_obs` scope; both encoded once here.
#[derive(Debug, Clone)]
pub(crate) struct LogEncoder {
    /// `resource` (field 1 of `ResourceLogs`), tag and length included.
    resource: Box<[u8]>,
    /// `scope` (field 1 of `ScopeLogs`), tag and length included.
    scope: Box<[u8]>,
}

impl LogEncoder {
    /// `resource`: the resource's string attributes, in order.
    #[cfg(test)]
    pub(crate) fn new<'a>(resource: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut attrs = Vec::new();
        for (key, value) in resource {
            string_attr_into(&mut attrs, 1, key, value);
        }
        Self::with_resource(&attrs)
    }

    /// With the encoded `Resource` message `resource` (without tag and length).
    pub(crate) fn with_resource(resource: &[u8]) -> Self {
        let mut res = Vec::new();
        bytes_field(&mut res, 1, resource);
        let mut scope = Vec::new();
        string_field(&mut scope, 1, SCOPE_NAME);
        string_field(&mut scope, 2, env!("CARGO_PKG_VERSION"));
        let mut scope_field = Vec::new();
        bytes_field(&mut scope_field, 1, &scope);
        Self {
            resource: res.into_boxed_slice(),
            scope: scope_field.into_boxed_slice(),
        }
    }

    /// One `ExportLogsServiceRequest` holding the lines of `chunks`.
    pub(crate) fn encode_chunks(&self, chunks: &[Chunk]) -> bytes::Bytes {
        let hint = chunks.iter().map(|c| c.bytes.len()).sum();
        self.encode(chunks.iter().flat_map(staged), hint)
    }

    /// One `ExportLogsServiceRequest` holding `items` (unit tests).
    #[cfg(test)]
    pub(crate) fn encode_request(&self, items: &[LogItem]) -> Vec<u8> {
        let hint = items.iter().map(|i| i.line.len() + 64).sum();
        self.encode(items.iter().map(LogItem::rec), hint).to_vec()
    }

    /// One `ExportLogsServiceRequest` holding `items` staged in one
    /// [`Chunk`] as the export path stages lines (unit tests).
    #[cfg(test)]
    pub(crate) fn encode_staged(&self, items: &[LogItem]) -> Vec<u8> {
        let mut chunk = Chunk::default();
        for i in items {
            let index = i.index.as_ref().map(|(line, fields, fields_at)| LineIndex {
                line,
                fields,
                fields_at: *fields_at,
            });
            stage(
                &mut chunk.bytes,
                &i.line,
                index,
                i.observed_unix_nano,
                i.level,
                i.ids,
            );
            chunk.count += 1;
        }
        self.encode_chunks(&[chunk]).to_vec()
    }

    /// The request: records are encoded in place behind room for the
    /// framing (`ResourceLogs` tag and length, resource, `ScopeLogs` tag
    /// and length), which is written once their length is known; the
    /// result starts where the framing does.
    fn encode<'a>(&self, records: impl Iterator<Item = Rec<'a>>, hint: usize) -> bytes::Bytes {
        let room = self.resource.len() + 2 * 11;
        let mut out = Vec::with_capacity(room + self.scope.len() + hint);
        out.resize(room, 0);
        out.extend_from_slice(&self.scope);
        let mut scratch = Scratch::default();
        let mut w = Writer::new(&mut out);
        for rec in records {
            record_into(&mut w, &rec, &mut scratch);
        }
        w.finish();
        let scope_logs_len = out.len() - room;
        let resource_logs_len =
            self.resource.len() + 1 + varint_len(scope_logs_len as u64) + scope_logs_len;
        let mut head = Vec::with_capacity(room);
        tag_len(&mut head, 1, resource_logs_len);
        head.extend_from_slice(&self.resource);
        tag_len(&mut head, 2, scope_logs_len);
        let start = room - head.len();
        out[start..room].copy_from_slice(&head);
        bytes::Bytes::from(out).slice(start..)
    }
}

/// Per-batch buffers: unescaped strings, and the fields of a record that
/// goes through the parser.
#[derive(Default)]
struct Scratch {
    key: Vec<u8>,
    value: Vec<u8>,
    parsed: Vec<u8>,
}

/// A JSON value of the line, its strings unescaped.
enum Value<'a> {
    Str(&'a [u8]),
    Int(i64),
    Double(f64),
    Bool(bool),
}

// LogRecord fields.
const TIME_UNIX_NANO: u32 = 1;
const SEVERITY_NUMBER: u32 = 2;
const SEVERITY_TEXT: u32 = 3;
const BODY: u32 = 5;
const ATTRIBUTES: u32 = 6;
const FLAGS: u32 = 8;
const TRACE_ID: u32 = 9;
const SPAN_ID: u32 = 10;
const OBSERVED_TIME_UNIX_NANO: u32 = 11;

/// The tag byte of `field` with wire type `wire` (fields below 16).
const fn tag1(field: u32, wire: u8) -> u8 {
    (field << 3) as u8 | wire
}

/// Per level (as [`level_index`] numbers them): `severity_number` and
/// `severity_text` as they follow the time in every record, and how many
/// of the 16 bytes they take.
const LEVEL_FIELDS: [([u8; 16], usize); 5] = {
    let mut t = [([0u8; 16], 0usize); 5];
    let levels = [
        (Level::TRACE, "TRACE"),
        (Level::DEBUG, "DEBUG"),
        (Level::INFO, "INFO"),
        (Level::WARN, "WARN"),
        (Level::ERROR, "ERROR"),
    ];
    let mut i = 0;
    while i < 5 {
        let text = levels[i].1.as_bytes();
        let b = &mut t[i].0;
        b[0] = tag1(SEVERITY_NUMBER, VARINT);
        b[1] = severity_number(levels[i].0) as u8;
        b[2] = tag1(SEVERITY_TEXT, LEN);
        b[3] = text.len() as u8;
        let mut j = 0;
        while j < text.len() {
            b[4 + j] = text[j];
            j += 1;
        }
        t[i].1 = 4 + text.len();
        i += 1;
    }
    t
};

/// Append the `LogRecord` of `item` as field 2 of `ScopeLogs`, tag and
/// length included.
///
/// The parts every record has (time, severity, IDs) are written as a few
/// fixed-size stores into room checked once, not field by field through
/// `Vec` pushes, and the whole batch is written through one [`Writer`]
/// (room zeroed about once per batch, not per record): with the leaner
/// attribute writes below this took the transcoder from about 3 500 to
/// about 2 500 instructions per record of `benches/logging.rs`
/// (`docs/performance.md`, third session).
fn record_into(w: &mut Writer<'_>, item: &Rec<'_>, s: &mut Scratch) {
    let at = w.pos;
    let time = item.observed_unix_nano - item.observed_unix_nano % 1000;
    let (level, level_len) = &LEVEL_FIELDS[usize::from(level_index(item.level))];
    let b = w.room(12 + 16);
    // `log_records` (field 2): its length, two bytes reserved, patched in
    // after.
    b[0] = 0x12;
    b[3] = tag1(TIME_UNIX_NANO, I64);
    b[4..12].copy_from_slice(&time.to_le_bytes());
    b[12..28].copy_from_slice(level);
    w.pos += 12 + level_len;
    let fields = w.pos;
    let indexed = item
        .index
        .is_some_and(|index| indexed_fields_into(w, item.line, item.wide, index, s));
    #[cfg(test)]
    if item.index.is_some() && !indexed {
        INDEX_REFUSED.set(INDEX_REFUSED.get() + 1);
    }
    if !indexed {
        // No index, or one that does not fit the line (never written so):
        // the line is parsed.
        w.pos = fields;
        let mut p = Parser { b: item.line, i: 0 };
        if p.object_start() {
            s.parsed.clear();
            pairs_into(&mut s.parsed, p, &mut s.key, &mut s.value);
            w.put_slice(&s.parsed);
        }
    }
    let b = w.room(33 + 9);
    let mut p = 0;
    if let Some(ids) = item.ids {
        let flags = u32::from(ids.sampled) | (u32::from(ids.random) << 1);
        b[0] = tag1(FLAGS, I32);
        b[1..5].copy_from_slice(&flags.to_le_bytes());
        b[5] = tag1(TRACE_ID, LEN);
        b[6] = 16;
        b[7..23].copy_from_slice(&ids.trace_id.to_bytes());
        b[23] = tag1(SPAN_ID, LEN);
        b[24] = 8;
        b[25..33].copy_from_slice(&ids.span_id.to_bytes());
        p = 33;
    }
    b[p] = tag1(OBSERVED_TIME_UNIX_NANO, I64);
    b[p + 1..p + 9].copy_from_slice(&item.observed_unix_nano.to_le_bytes());
    w.pos += p + 9;
    w.patch_len(at + 1);
}

#[cfg(test)]
thread_local! {
    /// Records of this thread whose field index did not fit their line.
    pub(crate) static INDEX_REFUSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Write the body and attributes of `line` as its field `index` places
/// them; `false` when an entry does not fit the line (what was written of
/// them is then to be dropped). `wide` is `line` and what follows it.
fn indexed_fields_into(
    w: &mut Writer<'_>,
    line: &[u8],
    wide: &[u8],
    index: LineIndex<'_>,
    s: &mut Scratch,
) -> bool {
    // Most lines have no escape at all: one scan of the line tells which
    // fields need no look for one.
    let escape_from = memchr::memchr(b'\\', line).unwrap_or(line.len());
    // The entries into the line, then those into the fields (one copy of
    // the inlined field writer for both).
    for (entries, by) in [(index.line, 0), (index.fields, index.fields_at)] {
        let (entries, _) = entries.as_chunks::<ENTRY>();
        for e in entries {
            let e = Entry::from_bytes(e).shifted(by);
            if !field_into(w, line, wide, e, escape_from, s) {
                return false;
            }
        }
    }
    true
}

/// Write the field `e` of `line` (the body or an attribute); `false` when
/// it does not fit the line.
#[inline(always)]
fn field_into(
    w: &mut Writer<'_>,
    line: &[u8],
    wide: &[u8],
    e: Entry,
    escape_from: usize,
    s: &mut Scratch,
) -> bool {
    let (key, value, end) = (e.key as usize, e.value as usize, e.end as usize);
    if e.kind == Kind::Run {
        let Some(run) = line.get(key..end) else {
            return false;
        };
        let mut p = Parser { b: run, i: 0 };
        p.comma();
        s.parsed.clear();
        pairs_into(&mut s.parsed, p, &mut s.key, &mut s.value);
        w.put_slice(&s.parsed);
        return true;
    }
    let q = usize::from(e.kind.is_string());
    let Some(key_end) = e.key_end() else {
        return false;
    };
    if key > key_end || value > end || end > line.len() {
        return false;
    }
    if end > escape_from && memchr::memchr(b'\\', &line[key..end]).is_some() {
        // An escape in the key or the value: the pair, quotes included,
        // through the parser, which unescapes it.
        let Some(pair) = line.get(key.wrapping_sub(1)..end + q) else {
            return false;
        };
        s.parsed.clear();
        pairs_into(
            &mut s.parsed,
            Parser { b: pair, i: 0 },
            &mut s.key,
            &mut s.value,
        );
        w.put_slice(&s.parsed);
        return true;
    }
    let k = Span {
        at: key,
        len: key_end - key,
    };
    let v = Span {
        at: value,
        len: end - value,
    };
    match e.kind {
        Kind::Str => w.str_attr(wide, k, v),
        Kind::Body => w.body(wide, v),
        Kind::Int => match int_value(&line[value..end]) {
            Value::Int(i) => w.scalar_attr(wide, k, 0x18, i as u64),
            _ => w.str_attr(wide, k, v),
        },
        Kind::Double => {
            let Some(d) = double_value(&line[value..end]) else {
                return false;
            };
            w.scalar_attr(wide, k, 0x21, d.to_bits());
        }
        Kind::Bool => match &line[value..end] {
            b"true" => w.scalar_attr(wide, k, 0x10, 1),
            b"false" => w.scalar_attr(wide, k, 0x10, 0),
            _ => return false,
        },
        Kind::Run => {}
    }
    true
}

/// Bytes `at..at + len` of the line (checked to be in it).
#[derive(Clone, Copy)]
struct Span {
    at: usize,
    len: usize,
}

/// Room past the written bytes that word-wide writes may scribble on.
const SLACK: usize = 16;

/// The room a [`Writer`] adds at least: a few records' worth, zeroed by
/// `memset`'s vector loop (larger steps are zeroed with `rep stosb`, which
/// is not faster here and which callgrind counts byte by byte).
const GROW: usize = 2048;

/// Writes a batch's records in place into a buffer grown ahead
/// (`out[..pos]` is written, the rest zeroed room), so that a field costs
/// a room check and a few stores rather than a capacity check and length
/// update per byte pushed.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    pos: usize,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        let pos = out.len();
        Self { out, pos }
    }

    /// The room for `n` bytes (and the slack) at the write position.
    #[inline(always)]
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.out.len() < self.pos + n + SLACK {
            self.grow(n);
        }
        &mut self.out[self.pos..]
    }

    /// Zeroed room for at least `n` bytes and the slack, grown by
    /// [`GROW`] at least, so that a batch is zeroed about once.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        let need = self.pos + n + SLACK;
        self.out.resize(need.max(self.out.len() + GROW), 0);
    }

    fn put_slice(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        self.room(n)[..n].copy_from_slice(bytes);
        self.pos += n;
    }

    /// The buffer cut to what is written.
    fn finish(self) {
        self.out.truncate(self.pos);
    }

    /// Write the length of what follows the two bytes reserved at `at` as
    /// a varint there, moving the message when its length needs one or
    /// more than two bytes.
    fn patch_len(&mut self, at: usize) {
        let len = self.pos - at - 2;
        if len < 0x80 {
            self.out[at] = len as u8;
            self.out.copy_within(at + 2..self.pos, at + 1);
            self.pos -= 1;
        } else if len < 0x4000 {
            self.out[at] = (len as u8) | 0x80;
            self.out[at + 1] = (len >> 7) as u8;
        } else {
            let more = varint_len(len as u64) - 2;
            self.room(more);
            self.out.copy_within(at + 2..self.pos, at + 2 + more);
            put_varint(self.out, at, len as u64);
            self.pos += more;
        }
    }

    /// `N` bytes of room at the write position (and the slack), as an
    /// array: writes at offsets the compiler can bound need no check.
    #[inline(always)]
    fn window<const N: usize>(&mut self) -> &mut [u8; N] {
        let b = self.room(N);
        match b.first_chunk_mut::<N>() {
            Some(b) => b,
            // `room` leaves at least `N` bytes.
            None => unreachable!(),
        }
    }

    /// A `KeyValue` attribute with a string value.
    ///
    /// The key and value of most attributes are short: with both at most
    /// [`WORD`] bytes, every length is one byte and the attribute is two
    /// 4-byte headers and two word-wide copies into a fixed window whose
    /// offsets need no bounds check (the copies take bytes past the key
    /// and the value, which the next header overwrites or the write
    /// position cuts off). The bench's 16 fields all take it; with the
    /// fixed-size writes of `record_into` this took the transcoder from
    /// about 2 520 to about 2 300 instructions per record.
    #[inline(always)]
    fn str_attr(&mut self, wide: &[u8], key: Span, value: Span) {
        let (kl, vl) = (key.len, value.len);
        if kl <= WORD
            && vl <= WORD
            && let (Some(kw), Some(vw)) = (word(wide, key.at), word(wide, value.at))
        {
            let b = self.window::<{ 8 + 2 * WORD }>();
            b[..4].copy_from_slice(&[0x32, (kl + vl + 6) as u8, 0x0a, kl as u8]);
            b[4..4 + WORD].copy_from_slice(kw);
            b[4 + kl..8 + kl].copy_from_slice(&[0x12, (vl + 2) as u8, 0x0a, vl as u8]);
            b[8 + kl..8 + kl + WORD].copy_from_slice(vw);
            self.pos += 8 + kl + vl;
            return;
        }
        let b = self.room(kl + vl + 32);
        let any = 1 + varint_len(vl as u64) + vl;
        let kv = 1 + varint_len(kl as u64) + kl + 1 + varint_len(any as u64) + any;
        b[0] = 0x32;
        let mut p = put_varint(b, 1, kv as u64);
        b[p] = 0x0a;
        p = put_varint(b, p + 1, kl as u64);
        p = put_from(b, p, wide, key);
        b[p] = 0x12;
        p = put_varint(b, p + 1, any as u64);
        b[p] = 0x0a;
        p = put_varint(b, p + 1, vl as u64);
        self.pos += put_from(b, p, wide, value);
    }

    /// A `KeyValue` attribute with a bool (`0x10`) or int (`0x18`) value
    /// `v` as a varint, or a double (`0x21`) value `v` as 8 bytes. A key
    /// of at most [`WORD`] bytes goes into a fixed window as in
    /// [`Writer::str_attr`].
    #[inline(always)]
    fn scalar_attr(&mut self, wide: &[u8], key: Span, tag: u8, v: u64) {
        let kl = key.len;
        let any = 1 + if tag == 0x21 { 8 } else { varint_len(v) };
        if kl <= WORD
            && let Some(kw) = word(wide, key.at)
        {
            let b = self.window::<{ 7 + WORD + 10 }>();
            b[..4].copy_from_slice(&[0x32, (kl + 4 + any) as u8, 0x0a, kl as u8]);
            b[4..4 + WORD].copy_from_slice(kw);
            b[4 + kl..7 + kl].copy_from_slice(&[0x12, any as u8, tag]);
            let p = 7 + kl;
            if tag == 0x21 {
                b[p..p + 8].copy_from_slice(&v.to_le_bytes());
            } else {
                put_varint(b, p, v);
            }
            self.pos += p + any - 1;
            return;
        }
        let b = self.room(kl + 32);
        let kv = 1 + varint_len(kl as u64) + kl + 2 + any;
        b[0] = 0x32;
        let mut p = put_varint(b, 1, kv as u64);
        b[p] = 0x0a;
        p = put_varint(b, p + 1, kl as u64);
        p = put_from(b, p, wide, key);
        b[p..p + 3].copy_from_slice(&[0x12, any as u8, tag]);
        p += 3;
        p = if tag == 0x21 {
            b[p..p + 8].copy_from_slice(&v.to_le_bytes());
            p + 8
        } else {
            put_varint(b, p, v)
        };
        self.pos += p;
    }

    /// The body: an `AnyValue` holding the string `value`.
    #[inline(always)]
    fn body(&mut self, wide: &[u8], value: Span) {
        let vl = value.len;
        if vl <= WORD
            && let Some(vw) = word(wide, value.at)
        {
            let b = self.window::<{ 4 + WORD }>();
            b[..4].copy_from_slice(&[tag1(BODY, LEN), (vl + 2) as u8, 0x0a, vl as u8]);
            b[4..4 + WORD].copy_from_slice(vw);
            self.pos += 4 + vl;
            return;
        }
        let b = self.room(vl + 16);
        let any = 1 + varint_len(vl as u64) + vl;
        b[0] = tag1(BODY, LEN);
        let mut p = put_varint(b, 1, any as u64);
        b[p] = 0x0a;
        p = put_varint(b, p + 1, vl as u64);
        self.pos += put_from(b, p, wide, value);
    }
}

/// The longest key or value copied as one word (two 16-byte moves).
const WORD: usize = 32;

/// The [`WORD`] bytes of `wide` from `at`, if it has as many.
#[inline(always)]
fn word(wide: &[u8], at: usize) -> Option<&[u8; WORD]> {
    wide.get(at..)?.first_chunk::<WORD>()
}

/// Copy `wide[src]` to `b[p..]` (which has room for it and [`SLACK`]);
/// the position after it. Up to 16 bytes are copied as one word when the
/// line has as many from there (the bytes past them land in the room and
/// are overwritten or cut off).
#[inline(always)]
fn put_from(b: &mut [u8], p: usize, wide: &[u8], src: Span) -> usize {
    let n = src.len;
    if n <= SLACK
        && let Some(word) = wide.get(src.at..).and_then(<[u8]>::first_chunk::<SLACK>)
    {
        b[p..p + SLACK].copy_from_slice(word);
    } else {
        b[p..p + n].copy_from_slice(&wide[src.at..src.at + n]);
    }
    p + n
}

/// Powers of ten exact as `f64`s.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A float's value as `str::parse` reads it.
///
/// Fast path for what `ryu` writes for most values, `[-]digits.digits`
/// with a mantissa below 2^53 and at most 22 decimals: the mantissa and
/// the power of ten are both exact as `f64`s, so one division rounds
/// correctly, as the parse does (its own fast path, without its
/// validation and dispatch: about 180 instructions fewer per float in
/// `benches/logging.rs`). Anything else goes to the parse.
#[inline]
fn double_value(text: &[u8]) -> Option<f64> {
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mut m, mut n, mut dot) = (0u64, 0usize, None);
    for (i, &c) in digits.iter().enumerate() {
        match c {
            b'0'..=b'9' if n < 19 => {
                m = m * 10 + u64::from(c - b'0');
                n += 1;
            }
            b'.' if dot.is_none() => dot = Some(i),
            _ => return parsed_double(text),
        }
    }
    let decimals = dot.map_or(0, |d| digits.len() - d - 1);
    if n == 0 || m >= 1 << 53 || decimals >= POW10.len() {
        return parsed_double(text);
    }
    let d = m as f64 / POW10[decimals];
    Some(if neg { -d } else { d })
}

fn parsed_double(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}
/// An integer's value, or its decimal text when it does not fit an `i64`
/// (a `u64` or `i128` field), as the parser reads it.
fn int_value(text: &[u8]) -> Value<'_> {
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Value::Str(text);
    }
    let mut n = 0u64;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Value::Str(text);
        }
        n = n * 10 + u64::from(c - b'0');
    }
    // 19 digits fit a u64; the i64 range decides.
    match (neg, i64::try_from(n)) {
        (false, Ok(i)) => Value::Int(i),
        (true, Ok(i)) => Value::Int(-i),
        (true, Err(_)) if n == 1 << 63 => Value::Int(i64::MIN),
        _ => Value::Str(text),
    }
}

/// Append the body and attributes of the `"key":value` pairs at the
/// parser's cursor, separated by commas, up to the first thing that is not
/// one (the object's `}`, a run's end, a fault).
fn pairs_into(
    out: &mut Vec<u8>,
    mut p: Parser<'_>,
    key_buf: &mut Vec<u8>,
    value_buf: &mut Vec<u8>,
) {
    while let Some(key) = p.string(key_buf) {
        if !p.colon() {
            break;
        }
        let Some(value) = p.value(value_buf) else {
            break;
        };
        match key {
            b"timestamp" | b"level" | b"traceId" | b"spanId" => {}
            b"message" => {
                if let Value::Str(_) = value {
                    tag_len(out, BODY, any_value_len(&value));
                    any_value_into(out, &value);
                }
            }
            _ => attr_into(out, key, &value),
        }
        if !p.comma() {
            break;
        }
    }
}

/// A reader of the formatter's own JSON: a flat object whose values are
/// strings, numbers or booleans (anything else ends the record's
/// attributes early rather than failing the batch).
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn object_start(&mut self) -> bool {
        if self.b.first() == Some(&b'{') {
            self.i = 1;
            true
        } else {
            false
        }
    }

    fn colon(&mut self) -> bool {
        self.eat(b':')
    }

    fn comma(&mut self) -> bool {
        self.eat(b',')
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A string at the cursor: borrowed from the line when it has no
    /// escape (almost always), else unescaped into `buf`.
    fn string<'s>(&mut self, buf: &'s mut Vec<u8>) -> Option<&'s [u8]>
    where
        'a: 's,
    {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        let b = self.b;
        let rest = &b[start..];
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] == b'"' {
            self.i = start + end + 1;
            return Some(&b[start..start + end]);
        }
        buf.clear();
        buf.extend_from_slice(&rest[..end]);
        let mut i = start + end;
        loop {
            match *b.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some(buf);
                }
                b'\\' => {
                    let esc = *b.get(i + 1)?;
                    i += 2;
                    match esc {
                        b'n' => buf.push(b'\n'),
                        b'r' => buf.push(b'\r'),
                        b't' => buf.push(b'\t'),
                        b'b' => buf.push(0x08),
                        b'f' => buf.push(0x0c),
                        b'u' => {
                            let mut cp = hex4(b.get(i..i + 4)?)?;
                            i += 4;
                            if (0xd800..0xdc00).contains(&cp)
                                && b.get(i..i + 2) == Some(b"\\u")
                                && let Some(lo) = b.get(i + 2..i + 6).and_then(hex4)
                                && (0xdc00..0xe000).contains(&lo)
                            {
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                i += 6;
                            }
                            let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut tmp = [0u8; 4];
                            buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                        }
                        other => buf.push(other),
                    }
                }
                _ => {
                    // A run of plain bytes up to the next quote or escape.
                    let run = memchr::memchr2(b'"', b'\\', &b[i..])?;
                    buf.extend_from_slice(&b[i..i + run]);
                    i += run;
                }
            }
        }
    }

    fn value<'s>(&mut self, buf: &'s mut Vec<u8>) -> Option<Value<'s>>
    where
        'a: 's,
    {
        match *self.b.get(self.i)? {
            b'"' => self.string(buf).map(Value::Str),
            b't' if self.b[self.i..].starts_with(b"true") => {
                self.i += 4;
                Some(Value::Bool(true))
            }
            b'f' if self.b[self.i..].starts_with(b"false") => {
                self.i += 5;
                Some(Value::Bool(false))
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                let len = self.b[start..]
                    .iter()
                    .position(|&c| !matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .unwrap_or(self.b.len() - start);
                self.i = start + len;
                let num = &self.b[start..start + len];
                let text = std::str::from_utf8(num).ok()?;
                if num.iter().any(|&c| matches!(c, b'.' | b'e' | b'E')) {
                    text.parse().ok().map(Value::Double)
                } else {
                    // An integer beyond i64 (a u64 or i128 field) stays
                    // exact as its decimal text.
                    Some(text.parse().map_or(Value::Str(num), Value::Int))
                }
            }
            _ => None,
        }
    }
}

fn hex4(h: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in h {
        v = v * 16 + char::from(c).to_digit(16)?;
    }
    Some(v)
}

// --- protobuf wire format -------------------------------------------------

fn string_field(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes_field(out, field, s.as_bytes());
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, VARINT);
    varint(out, v);
}

fn fixed64_field(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, I64);
    out.extend_from_slice(&v.to_le_bytes());
}

/// The encoded length of an `AnyValue` holding `v`.
fn any_value_len(v: &Value<'_>) -> usize {
    match v {
        Value::Str(s) => 1 + varint_len(s.len() as u64) + s.len(),
        Value::Bool(_) => 2,
        Value::Int(i) => 1 + varint_len(*i as u64),
        Value::Double(_) => 9,
    }
}

/// Append the fields of an `AnyValue` holding `v` (string 1, bool 2, int 3, double 4).
fn any_value_into(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::Str(s) => bytes_field(out, 1, s),
        Value::Bool(b) => varint_field(out, 2, u64::from(*b)),
        Value::Int(i) => varint_field(out, 3, *i as u64),
        Value::Double(d) => fixed64_field(out, 4, d.to_bits()),
    }
}

/// Append a `KeyValue` attribute (field 6 of `LogRecord`).
fn attr_into(out: &mut Vec<u8>, key: &[u8], v: &Value<'_>) {
    kv_into(out, ATTRIBUTES, key, v);
}

fn kv_into(out: &mut Vec<u8>, field: u32, key: &[u8], v: &Value<'_>) {
    let any = any_value_len(v);
    let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
    tag_len(out, field, kv);
    bytes_field(out, 1, key);
    tag_len(out, 2, any);
    any_value_into(out, v);
}

#[cfg(test)]
fn string_attr_into(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    kv_into(out, field, key.as_bytes(), &Value::Str(value.as_bytes()));
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceRequest,
        common::v1::{AnyValue, any_value},
    };
    use prost::Message;

    use super::*;

    fn text(v: &Option<AnyValue>) -> Option<any_value::Value> {
        v.as_ref().and_then(|v| v.value.clone())
    }

    fn decode(items: &[LogItem]) -> ExportLogsServiceRequest {
        let enc = LogEncoder::new([("service.name", "svc"), ("service.version", "1.2.3")]);
        ExportLogsServiceRequest::decode(enc.encode_request(items).as_slice()).unwrap()
    }

    #[test]
    fn a_line_becomes_a_record_with_severity_body_attributes_and_ids() {
        let line = br#"{"timestamp":"2026-12-03T07:53:59.123456Z","level":"WARN","service":"svc","message":"login \"failed\"\n\u001b","target":"app","log_type":"system","traceId":"0102","spanId":"03","count":-3,"big":18446744073709551615,"ratio":12.5,"ok":true,"no":false,"password":"[REDACTED]","fields.level":"h\u00e9 \u2028 \ud83d\ude00"}
"#;
        let ids = SpanIds {
            trace_id: TraceId::from_bytes([7; 16]),
            span_id: SpanId::from_bytes([9; 8]),
            sampled: true,
            random: true,
        };
        let now = UNIX_EPOCH + std::time::Duration::from_nanos(1_796_284_439_123_456_000);
        let item = LogItem::new(line, now, Level::WARN, Some(ids));
        let req = decode(&[
            item,
            LogItem::new(b"{\"message\":\"x\"}", now, Level::DEBUG, None),
        ]);
        let rl = &req.resource_logs[0];
        let res = &rl.resource.as_ref().unwrap().attributes;
        assert_eq!(res[0].key, "service.name");
        assert_eq!(
            text(&res[1].value),
            Some(any_value::Value::StringValue("1.2.3".into()))
        );
        let sl = &rl.scope_logs[0];
        assert_eq!(sl.scope.as_ref().unwrap().name, "glimpse_obs");
        assert_eq!(sl.log_records.len(), 2);
        let r = &sl.log_records[0];
        assert_eq!(r.time_unix_nano, 1_796_284_439_123_456_000);
        assert_eq!(r.observed_time_unix_nano, r.time_unix_nano);
        assert_eq!(r.severity_number, 13);
        assert_eq!(r.severity_text, "WARN");
        assert_eq!(
            text(&r.body),
            Some(any_value::Value::StringValue(
                "login \"failed\"\n\u{1b}".into()
            ))
        );
        assert_eq!(r.trace_id, vec![7; 16]);
        assert_eq!(r.span_id, vec![9; 8]);
        assert_eq!(r.flags, 3);
        let attrs: Vec<(String, Option<any_value::Value>)> = r
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), text(&kv.value)))
            .collect();
        use any_value::Value as V;
        let s = |v: &str| Some(V::StringValue(v.into()));
        assert_eq!(
            attrs,
            vec![
                ("service".into(), s("svc")),
                ("target".into(), s("app")),
                ("log_type".into(), s("system")),
                ("count".into(), Some(V::IntValue(-3))),
                ("big".into(), s("18446744073709551615")),
                ("ratio".into(), Some(V::DoubleValue(12.5))),
                ("ok".into(), Some(V::BoolValue(true))),
                ("no".into(), Some(V::BoolValue(false))),
                ("password".into(), s("[REDACTED]")),
                ("fields.level".into(), s("hé \u{2028} 😀")),
            ]
        );
        let r = &sl.log_records[1];
        assert_eq!(r.severity_number, 5);
        assert!(r.trace_id.is_empty() && r.span_id.is_empty() && r.flags == 0);
    }

    #[test]
    fn the_float_fast_path_reads_what_the_parse_reads() {
        let texts = [
            "12.5",
            "-0.0",
            "0.0",
            "0.1",
            "-3.14159",
            "0.30000000000000004",
            "123456789.123456",
            "9007199254740991.0",
            "9007199254740992.0",
            "9007199254740993.0",
            "1234567890123456789",
            "12345678901234567890",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "1e21",
            "1.5e-7",
            "5.",
            ".5",
            ".",
            "-",
            "",
            "1.2.3",
            "+1.0",
            "1_0",
        ];
        let check = |t: &[u8]| {
            let want = std::str::from_utf8(t)
                .ok()
                .and_then(|t| t.parse::<f64>().ok());
            assert_eq!(
                double_value(t).map(f64::to_bits),
                want.map(f64::to_bits),
                "{}",
                String::from_utf8_lossy(t)
            );
        };
        for t in texts {
            check(t.as_bytes());
        }
        // What the formatter writes for floats of every magnitude.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            let short = (x % 1_000_000) as f64 / 10f64.powi((x % 9) as i32);
            for v in [v, short, -short] {
                let mut t = Vec::new();
                crate::logging::json::f64_into(&mut t, v);
                if v.is_finite() {
                    check(&t);
                    assert_eq!(double_value(&t), Some(v));
                }
            }
        }
    }

    #[test]
    fn the_fixed_severity_fields_are_the_levels() {
        for level in [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ] {
            let mut want = Vec::new();
            varint_field(&mut want, SEVERITY_NUMBER, severity_number(level));
            string_field(&mut want, SEVERITY_TEXT, level.as_str());
            let (b, n) = &LEVEL_FIELDS[usize::from(level_index(level))];
            assert_eq!(&b[..*n], &want[..], "{level}");
        }
    }

    #[test]
    fn a_malformed_line_keeps_what_came_before_the_fault() {
        for line in [
            &b""[..],
            b"{",
            b"{\"message\":\"cut",
            b"{\"message\":\"ok\",\"x\":[1]}",
            b"{\"message\":\"ok\",\"x\":\"\\u12\"}",
            b"{\"message\":\"ok\",\"x\":nul}",
        ] {
            let req = decode(&[LogItem::new(line, UNIX_EPOCH, Level::INFO, None)]);
            let r = &req.resource_logs[0].scope_logs[0].log_records[0];
            assert_eq!(r.severity_number, 9);
            assert!(r.attributes.is_empty(), "{line:?}");
        }
    }

    /// The alternative: parse the line with `serde_json`, fill the
    /// `opentelemetry-proto` structs, encode with prost.
    fn encode_with_prost(items: &[LogItem]) -> Vec<u8> {
        use opentelemetry_proto::tonic::{
            common::v1::KeyValue,
            logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        };
        let s = |v: String| AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        };
        let records = items
            .iter()
            .map(|item| {
                let map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&item.line).unwrap();
                let mut r = LogRecord {
                    time_unix_nano: item.time_unix_nano,
                    observed_time_unix_nano: item.observed_unix_nano,
                    severity_number: severity_number(item.level) as i32,
                    severity_text: item.level.as_str().to_owned(),
                    ..Default::default()
                };
                for (k, v) in map {
                    let value = match v {
                        serde_json::Value::String(t) if k == "message" => {
                            r.body = Some(s(t));
                            continue;
                        }
                        _ if matches!(k.as_str(), "timestamp" | "level" | "traceId" | "spanId") => {
                            continue;
                        }
                        serde_json::Value::String(t) => any_value::Value::StringValue(t),
                        serde_json::Value::Bool(b) => any_value::Value::BoolValue(b),
                        serde_json::Value::Number(n) => match n.as_i64() {
                            Some(i) => any_value::Value::IntValue(i),
                            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
                        },
                        other => any_value::Value::StringValue(other.to_string()),
                    };
                    r.attributes.push(KeyValue {
                        key: k,
                        value: Some(AnyValue { value: Some(value) }),
                        ..Default::default()
                    });
                }
                if let Some(ids) = item.ids {
                    r.trace_id = ids.trace_id.to_bytes().to_vec();
                    r.span_id = ids.span_id.to_bytes().to_vec();
                    r.flags = u32::from(ids.sampled);
                }
                r
            })
            .collect();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    /// `cargo test --release --lib encoder_cost -- --ignored --nocapture`:
    /// the hand-written encoder against serde_json + prost on the line of
    /// `benches/logging.rs` (the 8-field event inside 2 spans).
    #[test]
    #[ignore = "a measurement: run in release"]
    fn encoder_cost_against_serde_json_and_prost() {
        let line = br#"{"timestamp":"2026-12-03T07:53:59.123456Z","level":"INFO","service":"bench","message":"user swiped","target":"logging","log_type":"system","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","user_id":42,"match_id":"m-123","action":"swipe_right","latency_ms":12.5,"success":true,"region":"eu-west-1","attempt":3,"client":"ios/5.2.1","feed":"nearby","page":3,"tier":"gold","locale":"de-DE"}"#;
        let ids = SpanIds {
            trace_id: TraceId::from_bytes([7; 16]),
            span_id: SpanId::from_bytes([9; 8]),
            sampled: true,
            random: true,
        };
        let items: Vec<LogItem> = (0..512)
            .map(|_| LogItem::new(line, std::time::SystemTime::now(), Level::INFO, Some(ids)))
            .collect();
        let enc = LogEncoder::new([("service.name", "bench")]);
        let ours_len = enc.encode_request(&items).len();
        let theirs_len = encode_with_prost(&items).len();
        let time = |f: &dyn Fn() -> usize| {
            let mut best = f64::MAX;
            for _ in 0..7 {
                let start = std::time::Instant::now();
                for _ in 0..20 {
                    std::hint::black_box(f());
                }
                best = best.min(start.elapsed().as_nanos() as f64 / (20.0 * 512.0));
            }
            best
        };
        let ours = time(&|| enc.encode_request(&items).len());
        let theirs = time(&|| encode_with_prost(&items).len());
        println!(
            "ns per record: hand-written {ours:.0} ({ours_len} bytes per batch), \
             serde_json + prost {theirs:.0} ({theirs_len} bytes per batch)"
        );
    }

    #[test]
    fn staged_chunks_encode_as_the_lines_of_any_length_in_order() {
        let ids = SpanIds {
            trace_id: TraceId::from_bytes([7; 16]),
            span_id: SpanId::from_bytes([9; 8]),
            sampled: true,
            random: false,
        };
        let now = UNIX_EPOCH + std::time::Duration::from_nanos(1_796_284_439_123_456_789);
        // Records whose length takes one, two and three varint bytes.
        let lines: Vec<String> = [1usize, 200, 20_000]
            .iter()
            .map(|&n| format!("{{\"message\":\"{}\"}}", "x".repeat(n)))
            .collect();
        let (mut a, mut b) = (Chunk::default(), Chunk::default());
        let n = unix_nanos(now);
        // `{"message":"…"}`: the first and last with their field index, as
        // an entry into the line and as one into the fields from 1.
        let mut first = super::super::index::Entries::default();
        first.push(Entry::field(Kind::Body, 2, 11, lines[0].len() - 1));
        let mut last = super::super::index::Entries::default();
        last.push(Entry::field(Kind::Body, 1, 10, lines[2].len() - 2));
        stage(
            &mut a.bytes,
            lines[0].as_bytes(),
            Some(LineIndex {
                line: first.bytes(),
                fields: &[],
                fields_at: 0,
            }),
            n,
            Level::ERROR,
            Some(ids),
        );
        stage(
            &mut a.bytes,
            lines[1].as_bytes(),
            None,
            n,
            Level::TRACE,
            None,
        );
        stage(
            &mut b.bytes,
            lines[2].as_bytes(),
            Some(LineIndex {
                line: &[],
                fields: last.bytes(),
                fields_at: 1,
            }),
            n,
            Level::INFO,
            Some(ids),
        );
        let enc = LogEncoder::new([("service.name", "svc")]);
        let req = ExportLogsServiceRequest::decode(enc.encode_chunks(&[a, b])).unwrap();
        let rl = &req.resource_logs[0];
        assert_eq!(
            rl.resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        let records = &rl.scope_logs[0].log_records;
        assert_eq!(records.len(), 3);
        for (r, line) in records.iter().zip(&lines) {
            let want = serde_json::from_str::<serde_json::Value>(line).unwrap();
            assert_eq!(
                text(&r.body),
                Some(any_value::Value::StringValue(
                    want["message"].as_str().unwrap().into()
                ))
            );
            assert_eq!(r.time_unix_nano, 1_796_284_439_123_456_000);
            assert_eq!(r.observed_time_unix_nano, 1_796_284_439_123_456_789);
        }
        assert_eq!(
            records
                .iter()
                .map(|r| r.severity_number)
                .collect::<Vec<_>>(),
            [17, 1, 9]
        );
        assert_eq!((records[0].flags, records[2].flags), (1, 1));
        assert_eq!(records[0].trace_id, vec![7; 16]);
        assert!(records[1].trace_id.is_empty() && records[1].flags == 0);
        assert_eq!(records[2].span_id, vec![9; 8]);
    }
}
