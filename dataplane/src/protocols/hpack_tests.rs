use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fields(d: &mut Decoder, block: &[u8]) -> (Vec<(String, String)>, Result<Block, HpackError>) {
    let mut v = Vec::new();
    let r = d.decode(block, |n, val| {
        v.push((
            String::from_utf8(n.to_vec()).unwrap(),
            String::from_utf8(val.to_vec()).unwrap(),
        ))
    });
    (v, r)
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn rfc7541_c3_requests_without_huffman() {
    let mut d = Decoder::new_complete();
    let (f, r) = fields(
        &mut d,
        &hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"),
    );
    // :method, :scheme and :path indexed; :authority a literal with indexing.
    assert_eq!(r.map(|b| b.unknown), Ok(0));
    assert_eq!(
        f,
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com")
        ])
    );
    let (f, _) = fields(&mut d, &hex("8286 84be 5808 6e6f 2d63 6163 6865"));
    assert_eq!(f[3], (":authority".into(), "www.example.com".into()));
    assert_eq!(f[4], ("cache-control".into(), "no-cache".into()));
    let (f, r) = fields(
        &mut d,
        &hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"),
    );
    assert!(r.is_ok());
    assert_eq!(f[3], (":authority".into(), "www.example.com".into()));
    assert_eq!(f[4], ("custom-key".into(), "custom-value".into()));
    assert_eq!((d.len(), d.table_size(), d.inserted()), (3, 164, 3));
}

#[test]
fn rfc7541_c4_requests_with_huffman() {
    let mut d = Decoder::new_complete();
    let (f, _) = fields(&mut d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"));
    assert_eq!(f[3], (":authority".into(), "www.example.com".into()));
    let (f, _) = fields(&mut d, &hex("8286 84be 5886 a8eb 1064 9cbf"));
    assert_eq!(f[4], ("cache-control".into(), "no-cache".into()));
    assert_eq!(d.table_size(), 110);
}

#[test]
fn rfc7541_c5_responses_evict() {
    let mut d = Decoder::new_complete();
    // Size update to 256 (the RFC example's SETTINGS), then C.5.1.
    let mut b = hex("3fe101");
    b.extend(hex(
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
         6c65 2e63 6f6d",
    ));
    let (f, r) = fields(&mut d, &b);
    assert!(r.is_ok());
    assert_eq!(f[0], (":status".into(), "302".into()));
    assert_eq!(f[3], ("location".into(), "https://www.example.com".into()));
    assert_eq!((d.len(), d.table_size()), (4, 222));
    // C.5.2: ":status 307" inserted, ":status 302" evicted.
    let (f, _) = fields(&mut d, &hex("4803 3330 37c1 c0bf"));
    assert_eq!(
        f,
        pairs(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ])
    );
    assert_eq!((d.len(), d.table_size()), (4, 222));
}

#[test]
fn mid_stream_join_reports_only_what_is_known() {
    let mut d = Decoder::new_unknown();
    // :method GET, :scheme http, :path /, then index 62 (inserted before we joined).
    let (f, r) = fields(&mut d, &hex("8286 84be"));
    assert_eq!(r.map(|b| b.unknown), Ok(1));
    assert_eq!(f.len(), 3);
    assert!(f.iter().all(|(n, _)| n != ":authority"));
    // Literal with indexing, name = index 63 (unknown): the entry is kept as a placeholder so
    // positions stay exact, and the field itself is unknown.
    let (f, r) = fields(&mut d, &hex("7f00 0161"));
    assert_eq!((f.len(), r.map(|b| b.unknown)), (0, Ok(1)));
    // A fully literal insertion: now index 62 is "x-a: b", 63 the placeholder, 64 unknown.
    let (_, r) = fields(&mut d, &hex("4003 782d 6101 62"));
    assert_eq!(r.map(|b| b.unknown), Ok(0));
    let (f, r) = fields(&mut d, &hex("be bf c0"));
    assert_eq!(f, pairs(&[("x-a", "b")]));
    assert_eq!(r.map(|b| b.unknown), Ok(2));
    assert_eq!((d.inserted(), d.len(), d.is_complete()), (2, 2, false));
}

#[test]
fn size_update_to_zero_makes_the_table_known() {
    let mut d = Decoder::new_unknown();
    let (_, r) = fields(&mut d, &hex("20 3fe11f 4003 782d 6101 62"));
    assert!(r.is_ok());
    assert!(d.is_complete());
    // Index 63 cannot exist in a fully known table of one entry: malformed, table reset.
    let (f, r) = fields(&mut d, &hex("be bf"));
    assert_eq!(f, pairs(&[("x-a", "b")]));
    assert_eq!(r, Err(HpackError::BadIndex));
    assert!(!d.is_complete() && d.is_empty());
}

#[test]
fn malformed_blocks_are_errors_and_reset() {
    for (b, e) in [
        ("80", HpackError::BadIndex),
        ("7f", HpackError::Truncated),
        ("4003 782d", HpackError::Truncated),
        ("ff ff ff ff ff ff 0f", HpackError::IntegerOverflow),
        ("4081 18 00", HpackError::Huffman),
    ] {
        let mut d = Decoder::new_complete();
        assert!(fields(&mut d, &hex("4003 782d 6101 62")).1.is_ok());
        let (_, r) = fields(&mut d, &hex(b));
        assert_eq!(r, Err(e), "{b}");
        assert!(d.is_empty() && !d.is_complete());
    }
}

#[test]
fn memory_stays_bounded() {
    let mut d = Decoder::new_complete();
    // Size update to the maximum the encoder could ask (2^28), then many big insertions.
    let mut b = hex("3f e1 ff ff 7f");
    for i in 0..400u32 {
        b.push(0x40);
        b.push(0x04);
        b.extend(format!("k{:03}", i % 1000).as_bytes());
        // Value of 1000 bytes: 7-bit prefix 127, then 873 = 0xe9 0x06.
        b.extend([0x7f, 0xe9, 0x06]);
        b.extend(std::iter::repeat_n(b'v', 1000));
    }
    // And a value longer than MAX_STRING: kept as a placeholder of the right size.
    b.extend([0x40, 0x01, b'z', 0x7f]);
    let long = MAX_STRING + 10 - 127;
    b.extend([(long & 0x7f) as u8 | 0x80, (long >> 7) as u8]);
    b.extend(std::iter::repeat_n(b'w', MAX_STRING + 10));
    let (f, r) = fields(&mut d, &b);
    assert_eq!((f.len(), r.map(|b| b.unknown)), (400, Ok(1)));
    assert!(d.table_size() <= MAX_TABLE_SIZE);
    // The encoder's table is larger than ours: entries we dropped are unknown, not malformed.
    assert!(!d.is_complete());
    // The ring of entry bytes, the entries' records (a VecDeque may hold twice the entries it
    // has: at most one per 32 accounted bytes) and the scratch buffer.
    let records = 2 * (MAX_TABLE_SIZE / ENTRY_OVERHEAD) * std::mem::size_of::<Entry>();
    assert!(d.buffered_bytes() <= 2 * MAX_TABLE_SIZE + records + 2 * MAX_STRING);
    // The newest (the placeholder) is unknown, the one before is exact.
    let (f, r) = fields(&mut d, &hex("be bf ff 81 0f"));
    assert_eq!(r.map(|b| b.unknown), Ok(2));
    assert_eq!(f[0].0, "k399");
}

fn lit_indexed(n: &str, v: &str) -> Vec<u8> {
    let mut b = vec![0x40, n.len() as u8];
    b.extend(n.as_bytes());
    b.push(v.len() as u8);
    b.extend(v.as_bytes());
    b
}

fn fields_since(d: &mut Decoder, block: &[u8], since: u64) -> Vec<(String, String, bool)> {
    let mut v = Vec::new();
    d.decode_since(block, Some(since), |n, val, old| {
        v.push((
            String::from_utf8(n.to_vec()).unwrap(),
            String::from_utf8(val.to_vec()).unwrap(),
            old,
        ))
    })
    .unwrap();
    v
}

/// Entries inserted before a `since` are old, and so is the name of an entry inserted since
/// whose name was taken from an old one; forgetting them keeps the rest exact.
#[test]
fn entries_older_than_since_are_told_apart_and_forgotten() {
    let mut d = Decoder::new_complete();
    fields(&mut d, &lit_indexed("grpc-status", "0")).1.unwrap();
    let since = d.inserted();
    // 62 = x: 1 (new), 63 = grpc-status: 0 (old).
    let got = fields_since(&mut d, &lit_indexed("x", "1"), since);
    assert_eq!(got, [("x".into(), "1".into(), false)]);
    let got = fields_since(&mut d, &[0xbe, 0xbf], since);
    let want: Vec<(String, String, bool)> = vec![
        ("x".into(), "1".into(), false),
        ("grpc-status".into(), "0".into(), true),
    ];
    assert_eq!(got, want);
    // A literal named after 63 (old): 62 = grpc-status: 5 whose name is old.
    let got = fields_since(&mut d, &[0x7f, 0x00, 1, b'5'], since);
    assert_eq!(got, [("grpc-status".into(), "5".into(), true)]);
    let got = fields_since(&mut d, &[0xbe, 0xbf], since);
    assert!(got[0].2);
    assert_eq!(got[1], ("x".into(), "1".into(), false));
    d.forget_before(since);
    assert!(!d.is_complete());
    assert_eq!(d.len(), 2);
    let (got, r) = fields(&mut d, &[0xbe, 0xbf, 0xc0]);
    assert_eq!(got, pairs(&[("x", "1")]));
    assert_eq!(r.unwrap().unknown, 2);
    // A later `since` makes everything held so far old.
    let now = d.inserted();
    let got = fields_since(&mut d, &[0xbf], now);
    assert!(got[0].2);
}

/// The indexed fields a block starts with: up to the first literal, size update or entry not
/// held, each named by its static index or its entry's insertion number.
#[test]
fn a_head_ends_at_the_first_field_that_is_not_an_indexed_known_entry() {
    let head = |d: &Decoder, block: &[u8]| {
        let mut h = Head::default();
        d.head(block, &mut h);
        let refs: Vec<u64> = (0..h.len).map(|i| h.reference(i)).collect();
        (refs, h.bytes(h.len))
    };
    let mut d = Decoder::new_complete();
    // :method GET, :scheme http: all of it.
    assert_eq!(head(&d, &[0x82, 0x86]), (vec![2, 6], 2));
    // Then a literal without indexing (name index 4, :path), then an indexed field.
    assert_eq!(
        head(&d, &[0x82, 0x86, 0x04, 0x02, b'/', b'a', 0x84]),
        (vec![2, 6], 2)
    );
    // A literal first; a size update; an index past the table; nothing.
    assert_eq!(head(&d, &[0x04, 0x02, b'/', b'a', 0x82]), (vec![], 0));
    assert_eq!(head(&d, &[0x82, 0x3f, 0xe1, 0x1f, 0x86]), (vec![2], 1));
    assert_eq!(head(&d, &[0x82, 0xbe]), (vec![2], 1));
    assert_eq!(head(&d, &[]), (vec![], 0));
    // Two insertions (x: 1, then y: 2): 62 is the newest (insertion 1), 63 the one before.
    let lit = |n: u8, v: u8| [0x40, 0x01, n, 0x01, v];
    fields(&mut d, &lit(b'x', b'1')).1.unwrap();
    fields(&mut d, &lit(b'y', b'2')).1.unwrap();
    assert_eq!(head(&d, &[0xbe, 0xbf, 0x82]), (vec![64 + 1, 64, 2], 3));
    // A third insertion shifts the indices, not the references.
    let epoch = d.epoch();
    fields(&mut d, &lit(b'z', b'3')).1.unwrap();
    assert_eq!(d.epoch(), epoch);
    assert_eq!(head(&d, &[0xbf, 0xc0, 0x82]), (vec![64 + 1, 64, 2], 3));
    // A two-byte index: 62 + 65 = 127 is past the 3 entries held.
    assert_eq!(head(&d, &[0x82, 0xff, 0x00]), (vec![2], 1));
    // A size update changes the epoch (it may evict anything).
    fields(&mut d, &[0x3f, 0xe1, 0x1f]).1.unwrap();
    assert_ne!(d.epoch(), epoch);
}

/// RFC 7541 4.4: an entry may be named after the entry its insertion evicts. With a table that
/// holds one `grpc-timeout` entry, each new value's literal names the entry it evicts: every
/// value decodes as sent, whatever the lengths.
#[test]
fn an_entry_named_after_the_entry_it_evicts() {
    let mut d = Decoder::new_complete();
    // Size update to 64 bytes: one entry of 12 + 8 + 32 fits, not two.
    let mut b = hex("3f 21");
    b.extend(lit_indexed("grpc-timeout", "1111111u"));
    let (f, r) = fields(&mut d, &b);
    assert_eq!(
        (f, r.is_ok()),
        (pairs(&[("grpc-timeout", "1111111u")]), true)
    );
    for (i, value) in [
        "2222222u",
        "3333333u",
        "44u",
        "5555555u",
        "666666666666u",
        "7777777u",
    ]
    .iter()
    .enumerate()
    {
        // Literal with incremental indexing, name of index 62 (the entry about to be evicted).
        let mut b = vec![0x7e, value.len() as u8];
        b.extend(value.as_bytes());
        // Then the new entry itself, indexed.
        b.push(0xbe);
        let (f, r) = fields(&mut d, &b);
        assert!(r.is_ok(), "{i}: {r:?}");
        assert_eq!(
            f,
            pairs(&[("grpc-timeout", value), ("grpc-timeout", value)]),
            "{i}"
        );
        assert_eq!(d.len(), 1, "{i}");
    }
}

#[test]
fn integers_are_written_as_in_rfc7541_examples() {
    // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix.
    let mut o = Vec::new();
    put_integer(&mut o, 0, 5, 10);
    assert_eq!(o, [10]);
    o.clear();
    put_integer(&mut o, 0, 5, 1337);
    assert_eq!(o, [31, 154, 10]);
}

proptest::proptest! {
    /// What `put_integer` writes, `integer` reads back, whatever the prefix and the other bits.
    #[test]
    fn integers_read_back_as_written(v in 0usize..(1 << 28), n in 1u8..=8, first in 0u8..=255) {
        let first = first & !(((1u16 << n) - 1) as u8);
        let mut b = vec![0xaa];
        put_integer(&mut b, first, n, v);
        let mut pos = 1;
        proptest::prop_assert_eq!(integer(&b, &mut pos, n), Ok(v as u64));
        proptest::prop_assert_eq!((pos, b[1] & first), (b.len(), first));
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// What an encoder does to its table, drawn by the property test below.
#[derive(Debug, Clone)]
enum Op {
    /// A literal with incremental indexing: a new name (of this length), or the name of the
    /// dynamic entry at this position (modulo the entries held); a value of this length.
    Insert {
        name: Result<usize, usize>,
        value: usize,
    },
    /// A reference to the dynamic entry at this position (modulo the entries held).
    Indexed(usize),
    /// A literal without indexing, named after the dynamic entry at this position.
    NotIndexed(usize, usize),
    /// A dynamic table size update.
    Resize(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (prop_oneof![(0usize..40).prop_map(Ok), any::<usize>().prop_map(Err)], 0usize..300)
            .prop_map(|(name, value)| Op::Insert { name, value }),
        3 => any::<usize>().prop_map(Op::Indexed),
        1 => (any::<usize>(), 0usize..50).prop_map(|(i, v)| Op::NotIndexed(i, v)),
        1 => prop::sample::select(vec![0usize, 60, 200, 700, 4096, 9000]).prop_map(Op::Resize),
    ]
}

proptest::proptest! {
    /// Whatever an encoder inserts, references, evicts and resizes (entries of many sizes, so
    /// that the ring of entry bytes wraps, skips its end and is laid out again), the decoder
    /// reports what the encoder meant and accounts its table as the encoder does.
    #[test]
    fn the_table_follows_any_encoder(ops in proptest::collection::vec(op(), 1..300)) {
        // The encoder's table: newest first, and its size limit.
        let mut table: VecDeque<(Vec<u8>, Vec<u8>)> = VecDeque::new();
        let mut max = DEFAULT_TABLE_SIZE;
        let size = |t: &VecDeque<(Vec<u8>, Vec<u8>)>| -> usize {
            t.iter().map(|(n, v)| n.len() + v.len() + ENTRY_OVERHEAD).sum()
        };
        let mut d = Decoder::new_complete();
        for (k, op) in ops.into_iter().enumerate() {
            let mut block = Vec::new();
            let mut want = Vec::new();
            let filler = |len: usize, seed: usize| -> Vec<u8> {
                (0..len).map(|i| b'a' + ((i * 7 + seed * 13) % 26) as u8).collect()
            };
            match op {
                Op::Insert { name, value } => {
                    let v = filler(value, k);
                    let n = match name {
                        Ok(len) => {
                            let n = filler(len + 1, k + 1);
                            block.push(0x40);
                            put_str(&mut block, &n);
                            n
                        }
                        Err(_) if table.is_empty() => continue,
                        Err(i) => {
                            let i = i % table.len();
                            put_integer(&mut block, 0x40, 6, 62 + i);
                            table[i].0.clone()
                        }
                    };
                    put_str(&mut block, &v);
                    want.push((n.clone(), v.clone()));
                    let s = n.len() + v.len() + ENTRY_OVERHEAD;
                    if s > max {
                        table.clear();
                    } else {
                        while size(&table) + s > max {
                            table.pop_back();
                        }
                        table.push_front((n, v));
                    }
                }
                Op::Indexed(_) if table.is_empty() => continue,
                Op::Indexed(i) => {
                    let i = i % table.len();
                    put_integer(&mut block, 0x80, 7, 62 + i);
                    want.push(table[i].clone());
                }
                Op::NotIndexed(_, _) if table.is_empty() => continue,
                Op::NotIndexed(i, value) => {
                    let i = i % table.len();
                    let v = filler(value, k);
                    put_integer(&mut block, 0x00, 4, 62 + i);
                    put_str(&mut block, &v);
                    want.push((table[i].0.clone(), v));
                }
                Op::Resize(m) => {
                    max = m;
                    put_integer(&mut block, 0x20, 5, m);
                    while size(&table) > max {
                        table.pop_back();
                    }
                }
            }
            let mut got = Vec::new();
            let r = d.decode(&block, |n, v| got.push((n.to_vec(), v.to_vec())));
            proptest::prop_assert_eq!(r.map(|b| b.unknown), Ok(0), "op {}", k);
            proptest::prop_assert_eq!(got, want, "op {}", k);
            proptest::prop_assert_eq!((d.len(), d.table_size()), (table.len(), size(&table)));
            proptest::prop_assert!(d.is_complete());
            // Every entry still reads as the encoder has it.
            let mut all = Vec::new();
            for i in 0..table.len() {
                put_integer(&mut all, 0x80, 7, 62 + i);
            }
            let mut got = Vec::new();
            d.decode(&all, |n, v| got.push((n.to_vec(), v.to_vec()))).unwrap();
            proptest::prop_assert_eq!(&got[..], table.make_contiguous());
            // Ring positions count modulo 2^32: now and then, move them all by a multiple of
            // the ring's length to just short of the wrap (or past it), where they go on.
            if k % 5 == 0 && !d.ring.is_empty() {
                let by = 0u32.wrapping_sub(d.ring.len() as u32);
                for e in &mut d.entries {
                    e.start = e.start.wrapping_add(by);
                }
            }
        }
    }
}

/// RFC 7541 4.4: an entry larger than the table empties it and is not added, but the field is
/// decoded and the insertion counts (it names no entry, and everything older is gone).
#[test]
fn an_entry_larger_than_the_table_empties_it_and_still_counts() {
    let mut d = Decoder::new_complete();
    // Size update to 64 bytes, then one entry of 1 + 2 + 32 bytes.
    let mut b = hex("3f 21");
    b.extend(lit_indexed("k", "v1"));
    fields(&mut d, &b).1.unwrap();
    assert_eq!((d.len(), d.inserted()), (1, 1));
    let epoch = d.epoch();
    // 1 + 40 + 32 bytes: larger than the table.
    let big = "x".repeat(40);
    let (f, r) = fields(&mut d, &lit_indexed("k", &big));
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(f, pairs(&[("k", &big)]));
    assert_eq!((d.len(), d.table_size(), d.inserted()), (0, 0, 2));
    assert_ne!(d.epoch(), epoch);
}
