//! Record codec round trips and the IO thread against a real sled directory.

use super::*;

fn entry(tenant: &str, vector: Option<Vec<f32>>) -> Entry {
    Entry {
        scope: Scope {
            tenant: tenant.into(),
            decision: "dé".into(),
            model: "m".into(),
            context: u128::MAX - 3,
        },
        key: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        vector: vector.map(Arc::from),
        answer: Arc::new(Answer {
            kind: AnswerKind::Sse,
            content_type: "text/event-stream".into(),
            body: Bytes::from_static(b"data: {}\n\n"),
        }),
        inserted_ms: 1_700_000_000_000,
        expires_ms: 1_700_000_360_000,
    }
}

/// Encodes, decodes and compares; every strict prefix must fail to decode.
fn check(e: &Entry) {
    let bytes = encode(e).expect("encodable");
    assert_eq!(decode(&bytes).as_ref(), Ok(e));
    for n in 0..bytes.len() {
        assert!(decode(&bytes[..n]).is_err(), "prefix {n} decoded");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode(&longer).is_err());
}

#[test]
fn records_round_trip_and_prefixes_fail() {
    check(&entry("t", None));
    check(&entry("", Some(vec![0.5, -0.25, f32::MIN_POSITIVE])));
    assert_eq!(decode(&[2]), Err("unknown version"));
    assert!(decode(&[1, 255, 255, 255, 255]).is_err());
}

#[tokio::test]
async fn store_survives_reopen_and_skips_corrupt_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cache");
    let (store, next) = Store::open(path.clone()).await.expect("open");
    assert_eq!(next, 1);
    let a = entry("a", Some(vec![1.0, 0.0]));
    let b = entry("b", None);
    store.put(5, &a);
    store.put(9, &b);
    store.put(7, &a);
    store.remove(vec![7]);
    let loaded = store.load(0, 1).await.expect("open store");
    assert_eq!(loaded.entries, vec![(5, a.clone()), (9, b.clone())]);
    store.close().await;
    assert!(store.load(0, 1).await.is_none(), "closed store");

    // a record that does not decode, written behind the cache's back
    {
        let db = sled::open(&path).expect("reopen sled");
        let tree = db.open_tree(TREE).expect("tree");
        tree.insert(6u64.to_be_bytes(), &b"\x01garbage"[..])
            .expect("insert");
        tree.insert(b"short", &b"x"[..]).expect("insert");
        db.flush().expect("flush");
    }
    let (store, next) = Store::open(path.clone()).await.expect("reopen");
    assert_eq!(next, 10);
    // two shards: each sees its own entries; the corrupt ones are skipped
    let shard_a = (a.scope.id() % 2) as usize;
    let mut got = Vec::new();
    let mut corrupt = 0;
    for shard in 0..2 {
        let l = store.load(shard, 2).await.expect("open store");
        corrupt += l.corrupt;
        for (id, e) in l.entries {
            assert_eq!((e.scope.id() % 2) as usize, shard);
            got.push((id, e));
        }
    }
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(got, vec![(5, a.clone()), (9, b)]);
    assert_eq!(corrupt, 2, "found in the first load, removed");
    assert!(shard_a < 2);
    store.close().await;
}
