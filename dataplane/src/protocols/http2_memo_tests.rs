//! The header-block memos of a connection: texts its calls repeat are shared, a block
//! remembered whole or as the start of a longer one decodes to what a full decode gives, and
//! nothing remembered outlives a change of the HPACK table.

use super::tests::{frame, get, lit, resp, settings, Feeder, IN, OUT};
use super::*;

/// Calls on one connection share the texts they repeat (one allocation per distinct value),
/// a value not seen before is never confused with a remembered one, and the memo stays bounded.
#[test]
fn repeated_fields_are_shared_and_never_mixed_up() {
    let mut f = Feeder::new(Role::Server);
    let mut c = PREFACE.to_vec();
    c.extend(settings());
    f.feed(IN, &c);
    let paths: Vec<String> = (0..12).map(|i| format!("/p{}", i % 6)).collect();
    for (i, path) in paths.iter().enumerate() {
        let stream = 1 + 2 * i as u32;
        f.feed(IN, &get(stream, path, true));
        f.feed(OUT, &resp(stream, 8, true));
    }
    let xs = f.exchanges();
    assert_eq!(xs.len(), paths.len());
    for (x, path) in xs.iter().zip(&paths) {
        assert_eq!(x.path.as_deref(), Some(path.as_str()));
        assert_eq!(x.authority.as_deref(), Some("example.test"));
        assert_eq!(x.method.as_deref(), Some("GET"));
    }
    // The same authority and method: one shared text each.
    let first = &xs[0];
    for x in &xs[1..] {
        assert!(Arc::ptr_eq(
            x.authority.as_ref().unwrap(),
            first.authority.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            x.method.as_ref().unwrap(),
            first.method.as_ref().unwrap()
        ));
    }
    // Six paths cycling through four ways: correct values whether shared or not, and the
    // memo holds at most four per field.
    let ways = f.p.memo.ways[fields::M_PATH].iter().flatten().count();
    assert!(ways <= fields::MEMO_WAYS, "{ways}");
}

/// A whole request (or response) in one header block.
fn whole(stream: u32, b: &[u8]) -> Vec<u8> {
    frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, stream, b)
}

/// :method GET, :scheme http, then :path /one and :authority a.test inserted: 63 is the path
/// and 62 the authority after it.
fn get_one_inserting() -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    b.extend(lit(true, ":path", "/one"));
    b.extend(lit(true, ":authority", "a.test"));
    b
}

/// `head` and a `traceparent` literal without indexing.
fn traced(head: &[u8], tp: &str) -> Vec<u8> {
    [head, &lit(false, "traceparent", tp)[..]].concat()
}

/// (stream, path, authority, traceparent) of an exchange.
type Seen = (u32, Option<String>, Option<String>, Option<String>);

fn seen(stream: u32, path: Option<&str>, tp: Option<&str>) -> Seen {
    let s = |v: Option<&str>| v.map(str::to_string);
    (stream, s(path), s(Some("a.test")), s(tp))
}

/// What a server connection makes of these requests (stream, block), each answered by a
/// `:status 200` block; no parse error allowed.
fn requests_seen(requests: &[(u32, Vec<u8>)]) -> Vec<Seen> {
    let mut f = Feeder::new(Role::Server);
    let mut c = PREFACE.to_vec();
    c.extend(settings());
    for (stream, b) in requests {
        c.extend(whole(*stream, b));
    }
    f.feed(IN, &c);
    let answers: Vec<u8> = requests
        .iter()
        .flat_map(|(stream, _)| whole(*stream, &[0x88]))
        .collect();
    f.feed(OUT, &answers);
    assert_eq!(f.p.parse_errors(), 0);
    f.exchanges()
        .into_iter()
        .map(|x| {
            (
                x.stream_id,
                x.path.map(|p| p.to_string()),
                x.authority.map(|a| a.to_string()),
                x.traceparent,
            )
        })
        .collect()
}

/// A block made of a remembered block's bytes and more (a request adding its own `traceparent`
/// to the indexed fields of the ones before it) decodes as a whole: the remembered fields, then
/// the rest, also when the rest inserts into the table and shifts the entries after it.
#[test]
fn a_remembered_block_followed_by_literals_decodes_whole() {
    // :method GET, :scheme http, 63 = :path /one, 62 = :authority a.test.
    let indexed = vec![0x82, 0x86, 0xbf, 0xbe];
    let with = |more: &[u8]| [&indexed[..], more].concat();
    let got = requests_seen(&[
        (1, get_one_inserting()),
        (3, indexed.clone()),
        // Remembered at stream 3; streams 5 and 7 start with it.
        (5, traced(&indexed, "00-aaa-bbb-01")),
        (7, traced(&indexed, "00-ccc-ddd-01")),
        // The rest inserts x-a: 1 at 62: :authority moves to 63, :path to 64.
        (9, with(&lit(true, "x-a", "1"))),
        (11, vec![0x82, 0x86, 0xc0, 0xbf]),
        // The old bytes now read :authority (63) and x-a (62): no path.
        (13, traced(&indexed, "00-eee-fff-01")),
    ]);
    assert_eq!(
        got,
        vec![
            seen(1, Some("/one"), None),
            seen(3, Some("/one"), None),
            seen(5, Some("/one"), Some("00-aaa-bbb-01")),
            seen(7, Some("/one"), Some("00-ccc-ddd-01")),
            seen(9, Some("/one"), None),
            seen(11, Some("/one"), None),
            seen(13, None, Some("00-eee-fff-01")),
        ]
    );
}

/// When every request carries its own `traceparent` (as with a client that traces every call)
/// no block is indexed fields only: the indexed fields each starts with are remembered alone,
/// and the next request's block decodes as a whole from them and its own literal.
#[test]
fn every_request_traced_shares_its_indexed_head() {
    // :method GET, :scheme http, 63 = :path /one, 62 = :authority a.test.
    let head = [0x82, 0x86, 0xbf, 0xbe];
    let mut shift = vec![0x82, 0x86, 0xbe];
    shift.extend(lit(true, ":path", "/two"));
    let got = requests_seen(&[
        (1, traced(&get_one_inserting(), "00-a-1-01")),
        (3, traced(&head, "00-b-2-01")),
        (5, traced(&head, "00-c-3-01")),
        (7, traced(&head, "00-d-4-01")),
        // Another head: :authority only, then the table changes under the remembered one.
        (9, traced(&[0x82, 0x86, 0xbe], "00-e-5-01")),
        (11, traced(&shift, "00-f-6-01")),
        // 62 = :path /two, 63 = :authority a.test now: both fields, the other way round.
        (13, traced(&head, "00-g-7-01")),
    ]);
    assert_eq!(
        got,
        vec![
            seen(1, Some("/one"), Some("00-a-1-01")),
            seen(3, Some("/one"), Some("00-b-2-01")),
            seen(5, Some("/one"), Some("00-c-3-01")),
            seen(7, Some("/one"), Some("00-d-4-01")),
            seen(9, None, Some("00-e-5-01")),
            seen(11, Some("/two"), Some("00-f-6-01")),
            seen(13, Some("/two"), Some("00-g-7-01")),
        ]
    );
}

/// The same bytes of indexed fields decode to other fields once the table has changed: a block
/// remembered from before an insertion must not be reused after it.
#[test]
fn repeated_indexed_blocks_follow_the_table() {
    let mut f = Feeder::new(Role::Server);
    // :method GET, :scheme http, then the dynamic entries 63 and 62.
    let indexed = |stream: u32| whole(stream, &[0x82, 0x86, 0xbf, 0xbe]);
    let mut c = PREFACE.to_vec();
    c.extend(settings());
    c.extend(whole(1, &get_one_inserting()));
    // 63 = :path /one, 62 = :authority a.test; twice, the second time from the memo.
    c.extend(indexed(3));
    c.extend(indexed(5));
    // :authority a.test (62), then inserting :path /two shifts the entries: 62 = :path /two,
    // 63 = :authority a.test.
    let mut shift = vec![0x82, 0x86, 0xbe];
    shift.extend(lit(true, ":path", "/two"));
    c.extend(whole(7, &shift));
    c.extend(indexed(9));
    c.extend(indexed(11));
    f.feed(IN, &c);
    let mut s = Vec::new();
    for stream in [1, 3, 5, 7, 9, 11] {
        s.extend(whole(stream, &[0x88]));
    }
    f.feed(OUT, &s);
    let got: Vec<(u32, Option<String>, Option<String>)> = f
        .exchanges()
        .into_iter()
        .map(|x| {
            (
                x.stream_id,
                x.path.map(|p| p.to_string()),
                x.authority.map(|a| a.to_string()),
            )
        })
        .collect();
    let want = |s: u32, p: &str| (s, Some(p.to_string()), Some("a.test".to_string()));
    assert_eq!(
        got,
        vec![
            want(1, "/one"),
            want(3, "/one"),
            want(5, "/one"),
            want(7, "/two"),
            want(9, "/two"),
            want(11, "/two"),
        ]
    );
    assert_eq!(f.p.parse_errors(), 0);
}

/// A client with deadlines sends `grpc-timeout` as a literal with incremental indexing whose
/// value changes on every call, so each call shifts every dynamic index by one. The indexed head
/// of the next call refers to the same entries under new indices: it is still found in the
/// memo, and decodes to those entries; the old bytes, which now name other entries, do not.
#[test]
fn a_head_is_remembered_across_insertions() {
    let timeout = |v: &str| lit(true, "grpc-timeout", v);
    // 62 = :authority a.test, 63 = :path /one; each call then inserts its timeout at 62.
    let first = [get_one_inserting(), timeout("100m")].concat();
    let call = |path: u8, authority: u8, v: &str| {
        [&[0x82, 0x86, path, authority][..], &timeout(v)].concat()
    };
    let requests = [
        (1, first),
        (3, call(0xc0, 0xbf, "99m")),
        (5, call(0xc1, 0xc0, "98m")),
        (7, call(0xc2, 0xc1, "97m")),
        // The second call's bytes: 64 and 63 are now the timeouts 99m and 98m.
        (9, call(0xc0, 0xbf, "96m")),
    ];
    // The next call's head, as the memo would see it: the same entries, known.
    let mut f = Feeder::new(Role::Server);
    let mut c = PREFACE.to_vec();
    c.extend(settings());
    for (stream, b) in &requests {
        c.extend(whole(*stream, b));
    }
    f.feed(IN, &c);
    let d = &f.p.dirs[dir_index(IN)];
    let mut head = Head::default();
    d.hpack.head(&[0x82, 0x86, 0xc4, 0xc3], &mut head);
    assert_eq!(head.len, 4);
    let hit = d
        .blocks
        .longest(d.hpack.epoch(), &head)
        .map(|(f, _, n)| (f.path.clone(), n));
    assert_eq!(hit, Some((Some("/one".into()), 4)));
    let one = |s: u32| seen(s, Some("/one"), None);
    assert_eq!(
        requests_seen(&requests),
        vec![one(1), one(3), one(5), one(7), (9, None, None, None)]
    );
}
