//! Where the fields of a JSON line are, noted by the formatter as it
//! writes them, for the line's OTLP record (`export.rs`).
//!
//! Without it the export thread re-discovers the line's structure by
//! parsing it: finding every key and string end, matching key names,
//! telling numbers from strings. The formatter knows all of that as it
//! writes, so it notes, per field, where its key and value are and what
//! kind of JSON value it wrote; the encoder then copies the values out of
//! the line without scanning for their ends. The values still come from
//! the line's bytes, so the record cannot disagree with what stdout shows.
//!
//! Offsets are noted relative to the buffer a field is written to (the
//! event's fields, a span's pre-rendered fields, a pre-rendered head) and
//! moved with it ([`Entry::shifted`]) until the line is complete.

/// What kind of JSON value a field holds, as the line writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string (an attribute of type string).
    Str,
    /// An integer (an `IntValue`, or its decimal text when it does not
    /// fit in an `i64`).
    Int,
    /// A finite float as `ryu` writes it.
    Double,
    /// `true` or `false`.
    Bool,
    /// The `message` string: the record's body.
    Body,
    /// A run of `,"key":value` pairs not noted one by one (the access
    /// line's fields, written by the HTTP layer): parsed as before.
    Run,
}

impl Kind {
    const fn from_bits(b: u32) -> Self {
        match b {
            0 => Self::Str,
            1 => Self::Int,
            2 => Self::Double,
            3 => Self::Bool,
            4 => Self::Body,
            _ => Self::Run,
        }
    }

    const fn bits(self) -> u32 {
        match self {
            Self::Str => 0,
            Self::Int => 1,
            Self::Double => 2,
            Self::Bool => 3,
            Self::Body => 4,
            Self::Run => 5,
        }
    }

    /// A string value: its token has quotes around the value.
    pub(crate) const fn is_string(self) -> bool {
        matches!(self, Self::Str | Self::Body)
    }
}

/// Offsets fit in 28 bits; the kind takes the top 4 bits of `end`.
pub(crate) const MAX_OFFSET: usize = (1 << 28) - 1;

/// The bytes of a staged entry.
pub(crate) const ENTRY: usize = 12;

/// One field of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The key's first byte (after its quote); for a [`Kind::Run`], the
    /// run's first byte (its comma).
    pub(crate) key: u32,
    /// The value's first byte (after the opening quote of a string).
    pub(crate) value: u32,
    /// One past the value's last byte (the closing quote of a string); for
    /// a run, one past its last byte.
    pub(crate) end: u32,
    pub(crate) kind: Kind,
}

impl Entry {
    /// A field whose key starts at `key` and whose value is the JSON token
    /// `token_start..token_end` (quotes included for a string).
    #[inline]
    pub(crate) fn field(kind: Kind, key: usize, token_start: usize, token_end: usize) -> Self {
        let q = usize::from(kind.is_string());
        Self {
            key: key as u32,
            value: (token_start + q) as u32,
            end: (token_end - q) as u32,
            kind,
        }
    }

    /// A run of `,"key":value` pairs at `start..end`.
    pub(crate) fn run(start: usize, end: usize) -> Self {
        Self {
            key: start as u32,
            value: start as u32,
            end: end as u32,
            kind: Kind::Run,
        }
    }

    /// The same field `by` bytes further on (its buffer appended there).
    #[inline]
    pub(crate) fn shifted(self, by: usize) -> Self {
        let by = by as u32;
        Self {
            key: self.key.wrapping_add(by),
            value: self.value.wrapping_add(by),
            end: self.end.wrapping_add(by),
            kind: self.kind,
        }
    }

    /// The key's end: before `":` (and the string's quote).
    pub(crate) fn key_end(self) -> Option<usize> {
        (self.value as usize).checked_sub(2 + usize::from(self.kind.is_string()))
    }

    /// The staged form: key, value, end | kind << 28 (little endian).
    #[inline]
    pub(crate) fn to_bytes(self) -> [u8; ENTRY] {
        let mut b = [0u8; ENTRY];
        b[..4].copy_from_slice(&self.key.to_le_bytes());
        b[4..8].copy_from_slice(&self.value.to_le_bytes());
        b[8..].copy_from_slice(&(self.end | (self.kind.bits() << 28)).to_le_bytes());
        b
    }

    #[inline]
    pub(crate) fn from_bytes(b: &[u8; ENTRY]) -> Self {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let end = word(8);
        Self {
            key: word(0),
            value: word(4),
            end: end & MAX_OFFSET as u32,
            kind: Kind::from_bits(end >> 28),
        }
    }
}

/// Entries in their staged form, as the formatter notes them.
#[derive(Debug, Default)]
pub(crate) struct Entries(Vec<u8>);

impl Entries {
    #[inline]
    pub(crate) fn push(&mut self, e: Entry) {
        self.0.extend_from_slice(&e.to_bytes());
    }

    /// `entries`, each `by` bytes further on.
    pub(crate) fn extend_shifted(&mut self, entries: &[Entry], by: usize) {
        for e in entries {
            self.push(e.shifted(by));
        }
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A line's field index as the formatter hands it over: staged entries
/// with offsets into the line (the schema fields, the request scope), then
/// staged entries with offsets into the line from `fields_at` (the event's
/// and the spans' fields, noted before the line was assembled).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LineIndex<'a> {
    pub(crate) line: &'a [u8],
    pub(crate) fields: &'a [u8],
    pub(crate) fields_at: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_their_staged_form() {
        for kind in [
            Kind::Str,
            Kind::Int,
            Kind::Double,
            Kind::Bool,
            Kind::Body,
            Kind::Run,
        ] {
            let e = Entry {
                key: 7,
                value: 12,
                end: MAX_OFFSET as u32,
                kind,
            };
            assert_eq!(Entry::from_bytes(&e.to_bytes()), e);
        }
        // `,"k":"v"` at 10: key at 12, value at 16.
        let e = Entry::field(Kind::Str, 12, 15, 18).shifted(10);
        assert_eq!((e.key, e.value, e.end, e.key_end()), (22, 26, 27, Some(23)));
        let e = Entry::field(Kind::Int, 2, 5, 7);
        assert_eq!((e.value, e.end, e.key_end()), (5, 7, Some(3)));
    }
}
