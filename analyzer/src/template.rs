//! Path templates: `/orders/ord_000123/items/7` becomes `/orders/{id}/items/{id}`, so that every
//! call of one endpoint is counted, and its rules scoped, together.
//!
//! A segment is an id when it is all digits, a UUID, a long hex string, or a token-like string
//! with both letters and digits (`ord_000123`, `a1b2c3d4`). Words (`orders`, `v2`, `login`) stay.
//! The query is not part of a template.

/// What a collapsed segment becomes.
pub const ID_SEGMENT: &str = "{id}";

/// The template of a path (the query and fragment dropped).
pub fn path_template(path: &str) -> String {
    let path = path_without_query(path);
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id_segment(segment) {
            out.push_str(ID_SEGMENT);
        } else {
            out.push_str(segment);
        }
    }
    out
}

/// An endpoint: the method and the path template, `POST /orders/{id}/pay`.
pub fn endpoint(method: &str, path: &str) -> String {
    let mut out = String::with_capacity(method.len() + path.len() + 1);
    out.push_str(method);
    out.push(' ');
    out.push_str(&path_template(path));
    out
}

/// The path without `?query` or `#fragment`.
pub fn path_without_query(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

/// The query string of a path (after `?`, before `#`), if it has one.
pub fn query_of(path: &str) -> Option<&str> {
    let start = path.find('?')? + 1;
    let rest = &path[start..];
    Some(&rest[..rest.find('#').unwrap_or(rest.len())])
}

/// Whether a path segment is an identifier rather than a word of the API.
pub fn is_id_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(segment) {
        return true;
    }
    if bytes.len() >= 16 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    let token_like = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~' | b'%'));
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    token_like && bytes.len() >= 6 && digits >= 2 && letters >= 1
}

/// Whether `text` is a UUID in its canonical 8-4-4-4-12 hex form (either case).
pub fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_collapse_and_words_stay() {
        for (path, template) in [
            ("/orders/ord_000123", "/orders/{id}"),
            ("/orders/1042/items/7?expand=1", "/orders/{id}/items/{id}"),
            ("/users/0b5e6a0c-3f4e-4c6b-9a51-1c2d3e4f5a6b", "/users/{id}"),
            ("/blobs/9f86d081884c7d659a2feaa0c55ad015", "/blobs/{id}"),
            ("/v2/login", "/v2/login"),
            ("/api/orders/", "/api/orders/"),
            ("/", "/"),
            ("", "/"),
            ("/health-check", "/health-check"),
            ("/files/report.pdf", "/files/report.pdf"),
        ] {
            assert_eq!(path_template(path), template, "{path}");
        }
        assert_eq!(endpoint("PUT", "/orders/ord_1a2b3c"), "PUT /orders/{id}");
    }

    #[test]
    fn query_is_split_off() {
        assert_eq!(query_of("/a?b=1&c=2#x"), Some("b=1&c=2"));
        assert_eq!(query_of("/a"), None);
        assert_eq!(path_without_query("/a/b?c"), "/a/b");
    }
}
