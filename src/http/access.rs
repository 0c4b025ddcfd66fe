//! The access line: its fields, rendered straight into the JSON log, and the
//! cap on the path it carries.

/// Longest `path` written on the access line and span; longer ones are cut
/// (after card numbers and e-mail addresses in it are masked).
const MAX_PATH: usize = 256;

/// The access line's fields as `,"key":value` runs, in the order the
/// event-field form writes them; `entry_json` is the entry's pre-rendered
/// method and route.
pub(super) fn access_fields(
    out: &mut Vec<u8>,
    entry_json: &[u8],
    path: &str,
    status: u16,
    micros: u64,
    cancelled: bool,
) {
    use crate::logging::json;
    out.extend_from_slice(entry_json);
    out.extend_from_slice(b",\"path\":");
    json::string_into(out, path);
    out.extend_from_slice(b",\"http_status\":");
    json::int_into(out, status);
    out.extend_from_slice(b",\"response_time\":");
    json::millis_into(out, micros);
    if cancelled {
        out.extend_from_slice(b",\"cancelled\":true");
    }
}

pub(super) fn cap_path(path: &str) -> &str {
    if path.len() <= MAX_PATH {
        return path;
    }
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_fields_are_rendered_in_the_event_fields_order() {
        let mut out = Vec::new();
        access_fields(
            &mut out,
            br#","method":"GET","route":"/a/{id}""#,
            "/a/1",
            200,
            1430,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#","method":"GET","route":"/a/{id}","path":"/a/1","http_status":200,"response_time":1.43"#
        );
        let mut out = Vec::new();
        access_fields(&mut out, b"", "/q\"", 499, 2_000_000, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#","path":"/q\"","http_status":499,"response_time":2000.0,"cancelled":true"#
        );
    }

    #[test]
    fn long_paths_are_cut_at_a_character_boundary() {
        let path = format!("/{}", "é".repeat(200));
        let cut = cap_path(&path);
        assert!(cut.len() <= MAX_PATH && cut.len() >= MAX_PATH - 1);
        assert!(path.starts_with(cut));
        assert_eq!(cap_path("/short"), "/short");
    }
}
