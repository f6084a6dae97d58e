//! `http.route`: a low-cardinality template of a request path.
//!
//! Owns the mapping from a raw request target to a route template. Invariants: the result always
//! starts with `/`, has at most [`MAX_SEGMENTS`] segments, never contains a query or fragment, and
//! every segment that looks like an identifier (number, UUID, long hex, base64-ish token, digit and
//! letter mixes such as `user123`, dates, e-mail addresses, very long segments) becomes `{id}`.

use crate::bytes::{find, find2};

/// Segments kept; the rest of a deeper path is dropped.
pub const MAX_SEGMENTS: usize = 8;
/// Segments longer than this are identifiers whatever they contain.
const MAX_SEGMENT_LEN: usize = 64;

/// Turn a path (a query or fragment, and an absolute-form scheme and authority, are stripped)
/// into a template such as `/users/{id}`.
pub fn route_template(path: &str) -> String {
    let mut out = String::new();
    route_template_into(path, &mut out);
    out
}

/// [`route_template`] into `out` (cleared first), so a caller can reuse one buffer.
pub fn route_template_into(path: &str, out: &mut String) {
    out.clear();
    let mut path = path;
    if let Some(i) = find2(b'?', b'#', path.as_bytes()) {
        path = &path[..i];
    }
    if !path.starts_with('/') {
        if let Some(rest) = path
            .strip_prefix("http://")
            .or_else(|| path.strip_prefix("https://"))
        {
            path = rest.find('/').map_or("", |i| &rest[i..]);
        }
    }
    out.reserve(path.len().min(128) + 1);
    // Split by hand: paths are short, and a generic searcher's setup costs more than the scan
    // (see `crate::bytes`).
    let bytes = path.as_bytes();
    let (mut start, mut kept) = (0, 0);
    while start < bytes.len() && kept < MAX_SEGMENTS {
        let end = find(b'/', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        if end > start {
            // `/` is ASCII, so these bounds are char boundaries.
            let seg = &path[start..end];
            out.push('/');
            out.push_str(if is_id(seg) { "{id}" } else { seg });
            kept += 1;
        }
        start = end + 1;
    }
    if out.is_empty() {
        out.push('/');
    }
}

fn is_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Per byte, a 1 in each counter lane of [`is_id`] the byte counts in: digits, letters, hex
/// digits, base64-ish characters, `@`. The lanes are 8 bits wide, and a segment longer than
/// [`MAX_SEGMENT_LEN`] (< 256) never gets counted, so they cannot overflow into each other.
static LANES: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let d = c.is_ascii_digit();
        let l = c.is_ascii_alphabetic();
        let hex = d || matches!(c | 0x20, b'a'..=b'f');
        let b64 = d || l || matches!(c, b'-' | b'_' | b'=' | b'+');
        t[b] = (d as u64)
            | (l as u64) << 8
            | (hex as u64) << 16
            | (b64 as u64) << 24
            | ((c == b'@') as u64) << 32;
        b += 1;
    }
    t
};

/// Does this path segment look like an identifier rather than a fixed name? One pass over the
/// bytes classifies them (one table load and one add per byte); the rules below only read the
/// counts.
fn is_id(seg: &str) -> bool {
    let s = seg.as_bytes();
    if s.len() > MAX_SEGMENT_LEN {
        return true;
    }
    let lanes: u64 = s.iter().map(|&b| LANES[usize::from(b)]).sum();
    let lane = |i: u32| ((lanes >> (8 * i)) & 0xff) as usize;
    let counts = Counts {
        digits: lane(0),
        letters: lane(1),
        hex: lane(2),
        b64: lane(3),
        at: lane(4) > 0,
    };
    looks_like_id(s, counts)
}

/// What [`is_id`] counts in a segment.
#[derive(Debug, Clone, Copy)]
struct Counts {
    digits: usize,
    letters: usize,
    hex: usize,
    b64: usize,
    at: bool,
}

/// The rules of [`is_id`], on the counts of segment `s` (at most [`MAX_SEGMENT_LEN`] bytes).
fn looks_like_id(s: &[u8], c: Counts) -> bool {
    let Counts {
        digits,
        letters,
        hex,
        b64,
        at,
    } = c;
    if at || (s.len() == 36 && is_uuid(s)) {
        return true;
    }
    if digits == 0 {
        return false;
    }
    let seps = s.len() - digits - letters;
    // Numbers, and numbers joined by separators (dates, versions, `12-34`).
    if letters == 0 {
        return true;
    }
    // Long hex (hashes, object ids).
    if s.len() >= 12 && hex == s.len() {
        return true;
    }
    // Long base64 / base64url / ULID-like tokens with at least one digit.
    if s.len() >= 16 && b64 == s.len() && seps <= 2 {
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

    /// The byte-at-a-time counting `is_id` used before the lane table, kept as the reference
    /// the table must agree with (the rules are shared: [`super::looks_like_id`]).
    fn reference_is_id(seg: &str) -> bool {
        let s = seg.as_bytes();
        if s.len() > super::MAX_SEGMENT_LEN {
            return true;
        }
        let (mut digits, mut letters, mut hex, mut b64, mut at) = (0, 0, 0, 0, false);
        for &b in s {
            let d = b.is_ascii_digit();
            let l = b.is_ascii_alphabetic();
            digits += usize::from(d);
            letters += usize::from(l);
            hex += usize::from(d || matches!(b | 0x20, b'a'..=b'f'));
            b64 += usize::from(d || l || matches!(b, b'-' | b'_' | b'=' | b'+'));
            at |= b == b'@';
        }
        let counts = super::Counts {
            digits,
            letters,
            hex,
            b64,
            at,
        };
        super::looks_like_id(s, counts)
    }

    proptest::proptest! {
        #[test]
        fn lane_table_agrees_with_the_byte_loop(
            seg in "[a-fA-F0-9@=+_.~%-]{0,70}|[a-z]{0,8}[0-9]{0,4}|\\PC{0,70}"
        ) {
            proptest::prop_assert_eq!(super::is_id(&seg), reference_is_id(&seg), "{:?}", seg);
        }
    }
}
