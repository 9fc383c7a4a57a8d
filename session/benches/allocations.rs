//! Heap allocations per request on the read and write paths, per storage,
//! beside the bare router, counted by a wrapping global allocator.
//!
//! `cargo bench -p typed-sessions --bench allocations`

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use support::{app, call, cookie, request, routes, storages};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only
// counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    // `cargo bench` measures; `cargo test --benches` runs every cell once, so
    // the bench cannot break unnoticed.
    let requests: u64 = if std::env::args().any(|arg| arg == "--bench") {
        1_000
    } else {
        1
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let per_request = |app: &axum::Router, method: &str, path: &str, cookie: Option<&str>| {
        runtime.block_on(async {
            call(app, request(method, path, cookie)).await;
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for _ in 0..requests {
                call(app, request(method, path, cookie)).await;
            }
            (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / requests as f64
        })
    };
    println!(
        "allocations per request (mean of {requests}), in process through tower::ServiceExt::oneshot"
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10}",
        "storage", "untouched", "read", "write"
    );
    // The bare router gets the same cookie header, so only the layer's own
    // work differs.
    let bare = routes();
    let same_cookie = runtime.block_on(cookie(&app(storages().remove(1).1)));
    let same_cookie = Some(same_cookie.as_str());
    println!(
        "{:<12} {:>10.1} {:>10.1} {:>10.1}",
        "bare router",
        per_request(&bare, "GET", "/untouched", same_cookie),
        per_request(&bare, "GET", "/read", same_cookie),
        per_request(&bare, "POST", "/write", same_cookie)
    );
    for (name, storage) in storages() {
        let app = app(storage);
        let cookie = runtime.block_on(cookie(&app));
        println!(
            "{:<12} {:>10.1} {:>10.1} {:>10.1}",
            name,
            per_request(&app, "GET", "/untouched", Some(&cookie)),
            per_request(&app, "GET", "/read", Some(&cookie)),
            per_request(&app, "POST", "/write", Some(&cookie))
        );
    }
}
