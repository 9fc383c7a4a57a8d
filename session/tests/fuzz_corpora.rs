//! Every file of the fuzz targets' corpora (`fuzz/corpus/<target>/`), run
//! through its target's check on stable Rust, so the normal test suite
//! holds every decoder to what the fuzzer held it to, on the seeds and on
//! every input a crash was found with (kept in the corpora once fixed).
//! The fuzzer itself needs nightly: `scripts/fuzz TARGET SECONDS`.

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

use checks::{COOKIE_NAME as COOKIE, TARGETS};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_file_passes_its_target() {
    // A failing check's panic message, with the file it came from.
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(target))
            .unwrap_or_else(|error| panic!("no corpus for {target}: {error}"))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{target} has {} seeds", files.len());
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| check(&bytes)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{}: {message}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Found by the fuzzer (`record_json`, `simple_cookie`, `redis_hash`; the
/// inputs are kept in their corpora as `crash-float-*`): serde_json parsed
/// some numbers (`1e-24`, integers past `u64::MAX`) one unit in the last
/// place off, so a float read back from a cookie or a store was not the
/// float written, and drifted again at every save. The crate now has
/// serde_json's `float_roundtrip`.
#[test]
fn floats_read_back_from_every_format_as_they_were_written() {
    use typed_sessions::storage::{
        CookieStorage, MaxAge, SessionRecord, SimpleCookieStorage, StorageContext,
    };

    let cx = StorageContext::new(COOKIE, checks::NOW);
    let storage = SimpleCookieStorage::new();
    // Floats of every magnitude, from a fixed sequence of bit patterns.
    let mut bits: u64 = 0x2545_f491_4f6c_dd1d;
    let floats = std::iter::from_fn(|| {
        bits ^= bits << 13;
        bits ^= bits >> 7;
        bits ^= bits << 17;
        Some(f64::from_bits(bits))
    })
    .filter(|float| float.is_finite())
    .take(20_000);
    let mut wrong = Vec::new();
    for float in [1e-24, 1.0844674407370955e20, -9.223372036889493e18]
        .into_iter()
        .chain(floats)
    {
        let mut record = SessionRecord::new(1, MaxAge::Layer);
        record.data.insert("x".into(), float.into());
        let opened = storage.open(&storage.seal(&record, &cx).unwrap(), &cx);
        if opened.as_ref() != Some(&record) {
            wrong.push(float);
        }
        #[cfg(feature = "memcached")]
        {
            let bytes = serde_json::to_vec(&record).unwrap();
            let read = typed_sessions::__private::decoders::memcached_record(&bytes);
            assert_eq!(read.as_ref(), Some(&record), "{float:e} from Memcached");
        }
        #[cfg(feature = "redis")]
        {
            let fields = typed_sessions::__private::decoders::redis_fields(&record, 60);
            let pairs = fields
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            let read = typed_sessions::__private::decoders::redis_record(pairs);
            assert_eq!(read.as_ref(), Some(&record), "{float:e} from Redis");
        }
    }
    assert!(
        wrong.is_empty(),
        "{} floats changed, e.g. {:e}",
        wrong.len(),
        wrong[0]
    );
}

/// The seeds of every target. Deterministic where the format allows; the
/// version 2 envelopes differ at each run (random nonces).
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;
    use typed_sessions::__private::decoders::PackedRecord;
    use typed_sessions::{
        EncryptedCookieStorage, EncryptionKey,
        storage::{
            CookieStorage, MaxAge, SessionId, SessionRecord, SimpleCookieStorage, StorageContext,
        },
    };

    let mut seeds = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        seeds.push((target, name.to_owned(), bytes));
    };
    let records: Vec<(&str, SessionRecord)> = {
        let mut records = vec![
            ("empty", SessionRecord::new(1_700_000_000, MaxAge::Layer)),
            ("vector", checks::vector_record()),
        ];
        let mut full = SessionRecord::new(1_700_000_000, MaxAge::Seconds(1_800));
        full.updated = 1_700_000_100;
        full.data = json!({
            "u": {"name": "ann", "role": {"member": {"since": 5}}, "scores": {"a": -3}},
            "cart": [{"sku": "A-1", "quantity": 2}, {"sku": "B", "quantity": 1, "note": "gift"}],
            "n": 7,
            "token": "t0k3n",
            "ratio": 0.25,
            "seen": {"home": [true, null], "cart": [false, -8]},
            "unicode": "é€😀 \"quoted\"; a,b \\",
            "big": u64::MAX,
            "negative": i64::MIN,
            "float": 1e300,
            "nested": [[[{"a": [null, true, false]}]]],
        })
        .as_object()
        .cloned()
        .unwrap();
        records.push(("full", full));
        let mut typed = SessionRecord::new(1_700_000_000, MaxAge::Seconds(3_600));
        typed.data = json!({"u": null, "n": "many", "token": 42, "ratio": null})
            .as_object()
            .cloned()
            .unwrap();
        records.push(("stale-types", typed));
        records
    };

    let cookie_value = URL_SAFE_NO_PAD.encode([7u8; 32]);
    for (name, header) in [
        ("one", format!("{COOKIE}={cookie_value}")),
        ("among-others", format!("a=1; {COOKIE}=x; b=\"q\"")),
        ("quoted", format!("{COOKIE}=\"{cookie_value}\"")),
        ("empty-then-real", format!("{COOKIE}=; {COOKIE}=second")),
        ("spaces", format!("  {COOKIE} = v ;;; c")),
        ("no-value", format!("{COOKIE}; other={COOKIE}=v")),
        ("prefixed", "__Host-session=abc; session=def".to_owned()),
        ("v2-envelope", format!("{COOKIE}={}", checks::V2_VECTOR)),
    ] {
        add("cookie_header", name, header.into_bytes());
    }
    add(
        "cookie_header",
        "non-utf8",
        b"a=\xff\xfe; session=ok".to_vec(),
    );

    let current = EncryptionKey::from_bytes(checks::CURRENT_SECRET).unwrap();
    let current = EncryptedCookieStorage::new(current);
    let cx = StorageContext::new(COOKIE, checks::NOW);
    add("encrypted_cookie", "v1", checks::V1_VECTOR.into());
    add("encrypted_cookie", "v2-old-key", checks::V2_VECTOR.into());
    for (name, record) in &records {
        let sealed = current.seal(record, &cx).unwrap();
        add(
            "encrypted_cookie",
            &format!("v2-{name}"),
            sealed.into_bytes(),
        );
    }
    add(
        "encrypted_cookie",
        "v1-truncated",
        checks::V1_VECTOR[..40].into(),
    );
    add(
        "encrypted_cookie",
        "not-base64",
        b"not base64 at all!".to_vec(),
    );

    // Version 1, then version 2 records with 0 to 3 keys and each kind of
    // change (see `checks::envelope_mutation` for the layout).
    for mutation in 0..7u8 {
        let mut v1 = vec![1, 0, 0, mutation];
        v1.extend_from_slice(b"tail");
        add("envelope_mutation", &format!("v1-mutation-{mutation}"), v1);
        let mut v2 = vec![0];
        v2.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        v2.extend_from_slice(&1_700_000_100u64.to_be_bytes());
        v2.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 14, 16, 2, 4]);
        v2.extend_from_slice(b"user");
        v2.extend_from_slice(&7u64.to_be_bytes());
        v2.extend_from_slice(&[1, b'n', 0, 0, 0, 0, 0, 0, 0, 1, 200, 0, mutation]);
        v2.extend_from_slice(b"other-name");
        add("envelope_mutation", &format!("v2-mutation-{mutation}"), v2);
    }

    let simple = SimpleCookieStorage::new();
    for (name, record) in &records {
        add(
            "simple_cookie",
            name,
            simple.seal(record, &cx).unwrap().into_bytes(),
        );
        let json = serde_json::to_vec(record).unwrap();
        add("simple_cookie", &format!("{name}-raw-json"), json.clone());
        add("record_json", name, json);
    }
    for (name, json) in [
        ("aiohttp-shape", r#"{"created":10,"session":{"a":1}}"#),
        (
            "null-max-age",
            r#"{"created":10,"updated":11,"max_age":null,"session":{}}"#,
        ),
        (
            "max-times",
            r#"{"created":18446744073709551615,"updated":18446744073709551615,"max_age":18446744073709551615,"session":{}}"#,
        ),
        (
            "unknown-field",
            r#"{"created":1,"version":3,"session":{"x":[1,2]}}"#,
        ),
        (
            "floats",
            r#"{"created":1,"session":{"a":0.1,"b":1e-7,"c":-0.0,"d":2.5e10}}"#,
        ),
    ] {
        add("record_json", name, json.into());
        add("simple_cookie", name, json.into());
    }

    // The layout of a whole record needs the Redis store's encoder.
    #[cfg(feature = "redis")]
    for (name, record) in &records {
        let fields = typed_sessions::__private::decoders::redis_fields(record, 3_601);
        let text: String = fields
            .chunks(2)
            .map(|pair| format!("{}\t{}\n", pair[0], pair[1]))
            .collect();
        add("redis_hash", name, text.into_bytes());
    }
    for (name, text) in [
        ("minimal", "c\t1\n"),
        ("no-created", "u\t5\nd:a\t1\n"),
        ("unknown-fields", "c\t1\nt\t60\nzz\tq\nd:\t\"empty key\"\n"),
        ("bad-json", "c\t1\nd:a\t{\n"),
        ("bad-number", "c\t-1\n"),
    ] {
        add("redis_hash", name, text.into());
    }

    let id = SessionId::parse(&"A".repeat(43)).unwrap();
    for (name, record) in &records {
        let packed = PackedRecord::pack(&id, record);
        add("memory_packed", name, packed.as_bytes()[43..].to_vec());
    }
    add("memory_packed", "header-only", vec![0; 17]);
    add(
        "memory_packed",
        "bad-tag",
        [&[0; 17][..], &[1, b'a', 99]].concat(),
    );

    for (name, text) in [
        ("generated", SessionId::generate().as_str().to_owned()),
        ("all-dashes", "-".repeat(43)),
        ("one-short", "a".repeat(42)),
        ("one-long", "a".repeat(44)),
        ("padded", format!("{}=", "a".repeat(42))),
        ("standard-alphabet", format!("{}+/", "a".repeat(41))),
        ("plus", format!("{}+", "a".repeat(42))),
        ("slash", format!("/{}", "a".repeat(42))),
        ("multibyte", format!("{}é", "a".repeat(41))),
    ] {
        add("session_id", name, text.into_bytes());
    }

    for (name, record) in &records {
        add(
            "typed_read",
            name,
            serde_json::to_vec(&record.data).unwrap(),
        );
    }
    for (name, json) in [
        ("empty", "{}"),
        (
            "roles",
            r#"{"u":{"name":"x","role":{"admin":["a","b"]}},"token":"t"}"#,
        ),
        (
            "guest",
            r#"{"u":{"name":"x","role":"guest","scores":{}},"token":"","n":0}"#,
        ),
        (
            "wrong-nested",
            r#"{"cart":[{"sku":1}],"seen":{"a":[1,2]},"token":null}"#,
        ),
        (
            "int-ratio",
            r#"{"ratio":3,"token":"t","n":18446744073709551615}"#,
        ),
    ] {
        add("typed_read", name, json.into());
    }
    seeds
}

/// Writes the seed corpora: `cargo test -p typed-sessions --all-features
/// --test fuzz_corpora -- --ignored write_seed_corpora`. Files already
/// there (crash inputs, files added by hand) stay.
#[test]
#[ignore = "writes into fuzz/corpus/; run by hand to refresh the seeds"]
fn write_seed_corpora() {
    for (target, name, bytes) in seeds() {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}
