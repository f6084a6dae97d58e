//! `http.route`: a low-cardinality template of a request path.
//!
//! Owns the mapping from a raw request target to a route template. Invariants: the result always
//! starts with `/`, has at most [`MAX_SEGMENTS`] segments, never contains a query or fragment, and
//! every segment that looks like an identifier (number, UUID, long hex, base64-ish token, digit and
//! letter mixes such as `user123`, dates, e-mail addresses, very long segments) becomes `{id}`.

/// Segments kept; the rest of a deeper path is dropped.
pub const MAX_SEGMENTS: usize = 8;
/// Segments longer than this are identifiers whatever they contain.
const MAX_SEGMENT_LEN: usize = 64;

/// Turn a path (a query or fragment, and an absolute-form scheme and authority, are stripped)
/// into a template such as `/users/{id}`.
pub fn route_template(path: &str) -> String {
    let mut path = path;
    if let Some(i) = path.find(['?', '#']) {
        path = &path[..i];
    }
    if let Some(rest) = path
        .strip_prefix("http://")
        .or_else(|| path.strip_prefix("https://"))
    {
        path = rest.find('/').map_or("", |i| &rest[i..]);
    }
    let mut out = String::with_capacity(path.len().min(128) + 1);
    for seg in path.split('/').filter(|s| !s.is_empty()).take(MAX_SEGMENTS) {
        out.push('/');
        if is_id(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn is_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Does this path segment look like an identifier rather than a fixed name?
fn is_id(seg: &str) -> bool {
    let s = seg.as_bytes();
    if s.len() > MAX_SEGMENT_LEN || seg.contains('@') || is_uuid(s) {
        return true;
    }
    let digits = s.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    let letters = s.iter().filter(|b| b.is_ascii_alphabetic()).count();
    let seps = s.len() - digits - letters;
    // Numbers, and numbers joined by separators (dates, versions, `12-34`).
    if letters == 0 {
        return true;
    }
    // Long hex (hashes, object ids).
    if s.len() >= 12 && s.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Long base64 / base64url / ULID-like tokens with at least one digit.
    let b64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+');
    if s.len() >= 16 && s.iter().all(b64) && seps <= 2 {
        return true;
    }
    // Short digit/letter mixes: `user123`, `ab12` are ids; `v1`, `oauth2`, `mp3` are names.
    digits >= 3 || (digits == 2 && letters <= 2)
}

#[cfg(test)]
mod tests {
    use super::route_template as r;

    #[test]
    fn keeps_names() {
        assert_eq!(r(""), "/");
        assert_eq!(r("/"), "/");
        assert_eq!(r("/api/v1/users"), "/api/v1/users");
        assert_eq!(r("/users/"), "/users");
        assert_eq!(r("//a//b"), "/a/b");
        assert_eq!(r("/oauth2/authorize"), "/oauth2/authorize");
        assert_eq!(r("/files/index.html"), "/files/index.html");
        assert_eq!(
            r("/blog/my-long-article-title-here"),
            "/blog/my-long-article-title-here"
        );
    }

    #[test]
    fn strips_query_fragment_authority() {
        assert_eq!(r("/search?q=1&x=2"), "/search");
        assert_eq!(r("/a#frag"), "/a");
        assert_eq!(r("?only=query"), "/");
        assert_eq!(r("http://example.com/users/42?x"), "/users/{id}");
        assert_eq!(r("https://example.com"), "/");
    }

    #[test]
    fn replaces_ids() {
        assert_eq!(r("/users/42"), "/users/{id}");
        assert_eq!(r("/users/42/orders/7"), "/users/{id}/orders/{id}");
        assert_eq!(
            r("/items/123e4567-e89b-12d3-a456-426614174000"),
            "/items/{id}"
        );
        assert_eq!(
            r("/commit/9fceb02d0ae598e95dc970b74767f19372d61af8"),
            "/commit/{id}"
        );
        assert_eq!(r("/obj/507f1f77bcf86cd799439011"), "/obj/{id}");
        assert_eq!(r("/t/aGVsbG8gd29ybGQ9PQ2"), "/t/{id}");
        assert_eq!(r("/u/01ARZ3NDEKTSV4RRFFQ69G5FAV"), "/u/{id}");
        assert_eq!(r("/u/user123"), "/u/{id}");
        assert_eq!(r("/u/ab12"), "/u/{id}");
        assert_eq!(r("/d/2024-01-15"), "/d/{id}");
        assert_eq!(r("/p/john@example.com"), "/p/{id}");
        assert_eq!(r(&format!("/x/{}", "a".repeat(80))), "/x/{id}");
    }

    #[test]
    fn bounded_depth() {
        assert_eq!(r("/a/b/c/d/e/f/g/h/i/j/k"), "/a/b/c/d/e/f/g/h");
        assert_eq!(r(&"/1".repeat(10_000)), "/{id}".repeat(8));
    }

    #[test]
    fn unicode_never_panics() {
        assert_eq!(r("/caf\u{e9}/\u{1f600}"), "/caf\u{e9}/\u{1f600}");
        assert_eq!(r("/\u{e9}1\u{e9}2\u{e9}3"), "/{id}");
    }
}
