//! The encrypted cookie codec against its floor (raw AES-256-GCM and JSON on
//! the same bytes), id generation, and the session map.

mod support;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use typed_sessions::{
    EncryptedCookieStorage, EncryptionKey, Session, TypedSession,
    storage::{CookieStorage, MaxAge, SessionId, SessionRecord, StorageContext},
};

fn record(bytes: usize) -> SessionRecord {
    let mut record = SessionRecord::new(1_764_000_000, MaxAge::Seconds(3600));
    record.data.insert("user".into(), "ann".into());
    let filler = bytes.saturating_sub(serde_json::to_vec(&record).expect("serializes").len() + 10);
    record.data.insert("blob".into(), "x".repeat(filler).into());
    record
}

fn cookie_codec(c: &mut Criterion) {
    // The codec itself: every value is new, so the cache of opened cookies
    // would only add its bookkeeping; it is measured below on its own.
    let storage = EncryptedCookieStorage::new(EncryptionKey::generate()).with_cache_capacity(0);
    let cipher = Aes256Gcm::new(&[7u8; 32].into());
    let cx = StorageContext::new("session", 1_764_000_000);
    let mut group = c.benchmark_group("seal+open");
    // A cookie value holds at most 4096 base64 characters, 3072 bytes, of
    // which the envelope takes 33: 3000 bytes of JSON is about the largest
    // session that still opens.
    for (label, size) in [("100B", 100), ("1KiB", 1024), ("3000B", 3000)] {
        let record = record(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("encrypted cookie", label),
            &record,
            |b, record| {
                b.iter(|| {
                    let value = storage.seal(record, &cx).expect("seals");
                    let opened = storage.open(&value, &cx).expect("opens");
                    black_box(opened);
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("floor: AES-256-GCM + JSON", label),
            &record,
            |b, record| {
                b.iter(|| {
                    let mut buffer = serde_json::to_vec(record).expect("serializes");
                    let mut nonce = Nonce::default();
                    rand::fill(&mut nonce[..]);
                    let tag = cipher
                        .encrypt_inout_detached(&nonce, b"session", buffer.as_mut_slice().into())
                        .expect("encrypts");
                    cipher
                        .decrypt_inout_detached(
                            &nonce,
                            b"session",
                            buffer.as_mut_slice().into(),
                            &tag,
                        )
                        .expect("decrypts");
                    let opened: SessionRecord = serde_json::from_slice(&buffer).expect("parses");
                    black_box(opened);
                });
            },
        );
    }
    group.finish();

    // Opening the same cookie again: what the cache of opened cookies saves.
    // Both storages hold the same key, so each opens the value the other
    // sealed; they differ only in the cache.
    let mut group = c.benchmark_group("open again");
    let key = EncryptionKey::generate();
    let cached = EncryptedCookieStorage::new(key.clone());
    let uncached = EncryptedCookieStorage::new(key).with_cache_capacity(0);
    for (label, size) in [("100B", 100), ("1KiB", 1024)] {
        let value = cached.seal(&record(size), &cx).expect("seals");
        for (name, storage) in [("cached", &cached), ("uncached", &uncached)] {
            group.bench_with_input(BenchmarkId::new(name, label), &value, |b, value| {
                b.iter(|| black_box(storage.open(value, &cx).expect("opens")));
            });
        }
    }
    group.finish();
}

fn ids(c: &mut Criterion) {
    c.bench_function("SessionId::generate", |b| {
        b.iter(|| black_box(SessionId::generate()))
    });
}

#[derive(typed_sessions::Session)]
struct Visit {
    #[session(rename = "key3", default)]
    count: i64,
}

fn map(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let session: Session = runtime.block_on(support::loaded_session());
    let typed = TypedSession::<Visit>::from_session(session.clone());
    let mut group = c.benchmark_group("session map");
    group.bench_function("get::<i64>", |b| {
        b.iter(|| black_box(session.get::<i64>(black_box("key3"))))
    });
    group.bench_function("typed getter", |b| b.iter(|| black_box(typed.count())));
    group.bench_function("insert", |b| {
        b.iter(|| {
            session
                .insert(black_box("key3"), black_box(5))
                .expect("serializes")
        })
    });
    group.bench_function("typed setter", |b| b.iter(|| typed.set_count(black_box(5))));
    group.finish();
}

criterion_group!(benches, cookie_codec, ids, map);
criterion_main!(benches);
