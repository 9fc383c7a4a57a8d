//! The layer in process (`tower::ServiceExt::oneshot`): untouched, read and
//! write requests on each in-process storage, against the bare router.

mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use support::{app, call, cookie, request, routes, storages};

fn middleware(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("request");
    // The bare router gets the same cookie header, so only the layer's own
    // work differs.
    let bare = routes();
    let same_cookie = runtime.block_on(cookie(&app(storages().remove(1).1)));
    for (route, method, path) in [
        ("untouched", "GET", "/untouched"),
        ("read", "GET", "/read"),
        ("write", "POST", "/write"),
    ] {
        group.bench_function(BenchmarkId::new("bare router", route), |b| {
            b.iter(|| {
                black_box(runtime.block_on(call(&bare, request(method, path, Some(&same_cookie)))))
            });
        });
        for (name, storage) in storages() {
            let app = app(storage);
            let cookie = runtime.block_on(cookie(&app));
            group.bench_function(BenchmarkId::new(name, route), |b| {
                b.iter(|| {
                    black_box(runtime.block_on(call(&app, request(method, path, Some(&cookie)))))
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, middleware);
criterion_main!(benches);
