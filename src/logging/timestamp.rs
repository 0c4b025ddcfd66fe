//! RFC 3339 UTC timestamps with microseconds, written without allocating.

use std::time::{SystemTime, UNIX_EPOCH};

/// Append `now` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
///
/// The text up to the second is cached per thread: lines of the same second
/// (nearly all of them under load) only format the microseconds.
pub(crate) fn rfc3339_into(out: &mut Vec<u8>, now: SystemTime) {
    use std::cell::Cell;
    thread_local! {
        static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (cached, prefix) = SECOND.get();
    let prefix = if cached == secs {
        prefix
    } else {
        let mut b = [0u8; 27];
        format_full(&mut b, secs, 0);
        let mut p = [0u8; 20];
        p.copy_from_slice(&b[..20]);
        SECOND.set((secs, p));
        p
    };
    let mut tail = *b"000000Z";
    put(&mut tail[0..6], d.subsec_micros());
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&tail);
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of `secs` and `micros` since the epoch.
fn format_full(b: &mut [u8; 27], secs: u64, micros: u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    *b = *b"0000-00-00T00:00:00.000000Z";
    put(&mut b[0..4], y as u32);
    put(&mut b[5..7], m);
    put(&mut b[8..10], day);
    put(&mut b[11..13], (rem / 3600) as u32);
    put(&mut b[14..16], (rem % 3600 / 60) as u32);
    put(&mut b[17..19], (rem % 60) as u32);
    put(&mut b[20..26], micros);
}

fn put(dst: &mut [u8], mut v: u32) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fmt(secs: u64, micros: u32) -> String {
        let mut out = Vec::new();
        rfc3339_into(
            &mut out,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into()),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn known_instants_format_exactly() {
        assert_eq!(fmt(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(fmt(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(fmt(1_795_000_000, 123_456), "2026-11-18T11:06:40.123456Z");
        assert_eq!(fmt(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
    }

    #[test]
    fn the_cached_second_is_replaced_when_the_second_changes() {
        assert_eq!(fmt(1_795_000_000, 1), "2026-11-18T11:06:40.000001Z");
        assert_eq!(fmt(1_795_000_000, 999_999), "2026-11-18T11:06:40.999999Z");
        assert_eq!(fmt(1_795_000_001, 0), "2026-11-18T11:06:41.000000Z");
        assert_eq!(fmt(1_795_000_000, 5), "2026-11-18T11:06:40.000005Z");
        let mut full = [0u8; 27];
        format_full(&mut full, 1_795_000_000, 123_456);
        assert_eq!(&full, b"2026-11-18T11:06:40.123456Z");
    }
}
