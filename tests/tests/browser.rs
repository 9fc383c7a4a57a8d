//! The visits and typed-shop examples in a real browser: headless Chromium
//! driven over WebDriver (`chromedriver`), clicking the pages' forms the way
//! a person would, and reading the session cookie from the browser's own
//! cookie store rather than from a `Set-Cookie` header.
//!
//! Built with the `browser` feature (on in `cargo test --workspace
//! --all-features`, as `.ci/run` runs it). It needs Debian's `chromium` and
//! `chromium-driver` packages, which `.ci/run` installs when they are
//! missing; without them every test here fails with a message saying so,
//! never skips, so CI cannot pass without having run them.
//!
//! Each test starts its own `chromedriver` and browsers (a fresh profile
//! each, in a scratch directory), and the apps in-process on ports of
//! 127.0.0.1, opened as `http://localhost:PORT`: a secure context, where
//! browsers accept the default `Secure`, `__Host-` cookie over plain HTTP.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use session_examples::{shop, visits};
use typed_sessions::{
    EncryptedCookieStorage, EncryptionKey, MemoryStorage, SessionLayer, SessionLayerBuilder,
};

/// Flags that let Chromium run headless as root in a container, without the
/// background traffic (updates, sync, QUIC probes) a test has no use for.
const CHROMIUM_FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=900,900",
];

// ---------------------------------------------------------------------------
// The visits page: a counter in an encrypted cookie.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_count_across_reloads_and_end_with_the_browser_by_default() {
    let app = serve(visits::app(SessionLayer::new(EncryptedCookieStorage::new(
        EncryptionKey::generate(),
    ))))
    .await;
    let profile = scratch_dir("visits-default");
    let driver = Driver::start();

    let browser = driver.open(&profile).await;
    browser.goto(&app).await.unwrap();
    assert_eq!(text(&browser, "#visits").await, "1");
    assert_eq!(text(&browser, "#last-visit").await, "never");
    for expected in ["2", "3"] {
        browser.refresh().await.unwrap();
        assert_eq!(text(&browser, "#visits").await, expected, "after a reload");
    }
    let last = text(&browser, "#last-visit").await;
    assert!(
        last.ends_with(" GMT (just now)") || last.contains("second"),
        "the last visit reads as a date, not a timestamp: {last:?}"
    );
    save_screenshot(&browser, "visits.png").await;
    let cookie = session_cookie(&browser)
        .await
        .expect("the visit set a cookie");
    assert_eq!(
        cookie.expires(),
        None,
        "by default the cookie lasts as long as the browser session: {cookie:?}"
    );
    browser.close().await.unwrap();

    // The same profile, a new browser: a browser-session cookie is gone.
    let browser = driver.open(&profile).await;
    browser.goto(&app).await.unwrap();
    assert_eq!(
        text(&browser, "#visits").await,
        "1",
        "a browser-session cookie does not survive a browser restart"
    );
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_survive_a_browser_restart_when_the_session_has_a_max_age() {
    let layer = SessionLayer::builder(EncryptedCookieStorage::new(EncryptionKey::generate()))
        .with_max_age(Some(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let app = serve(visits::app(layer)).await;
    let profile = scratch_dir("visits-max-age");
    let driver = Driver::start();

    let browser = driver.open(&profile).await;
    browser.goto(&app).await.unwrap();
    browser.refresh().await.unwrap();
    assert_eq!(text(&browser, "#visits").await, "2");
    let cookie = session_cookie(&browser)
        .await
        .expect("the visit set a cookie");
    assert!(
        cookie.expires_datetime().is_some(),
        "with a max age the cookie is persistent: {cookie:?}"
    );
    browser.close().await.unwrap();

    let browser = driver.open(&profile).await;
    browser.goto(&app).await.unwrap();
    assert_eq!(
        text(&browser, "#visits").await,
        "3",
        "a persistent cookie survives a browser restart with the same profile"
    );
    browser.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// The typed shop: forms, flash messages, the cookie's attributes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_signs_in_fills_the_cart_and_signs_out_with_its_forms() {
    let app = serve(shop::app(SessionLayer::new(MemoryStorage::new()))).await;
    let profile = scratch_dir("shop");
    let driver = Driver::start();
    let browser = driver.open(&profile).await;

    browser.goto(&app).await.unwrap();
    assert_eq!(text(&browser, "#greeting").await, "Hello guest.");
    assert!(
        session_cookie(&browser).await.is_none(),
        "looking costs no session"
    );
    sign_in(&browser, "ann").await;
    assert_eq!(text(&browser, "#greeting").await, "Hello ann.");
    assert_eq!(flashes(&browser).await, ["Welcome ann (sign-in number 1)."]);
    click(&browser, "#add-42").await;
    click(&browser, "#add-7").await;
    assert_eq!(flashes(&browser).await, ["Added Teapot to your cart."]);
    assert_eq!(cart(&browser).await, ["Towel", "Teapot"]);
    save_screenshot(&browser, "shop.png").await;
    browser.refresh().await.unwrap();
    assert!(
        flashes(&browser).await.is_empty(),
        "a flash message shows once"
    );
    assert_eq!(cart(&browser).await, ["Towel", "Teapot"]);

    // The cookie as the browser stored it, with the documented attributes.
    let cookie = session_cookie(&browser)
        .await
        .expect("signing in set a cookie");
    assert_eq!(cookie.name(), "__Host-session");
    assert_eq!(cookie.http_only(), Some(true), "HttpOnly: {cookie:?}");
    assert_eq!(
        cookie.secure(),
        Some(true),
        "Secure, kept on http://localhost: {cookie:?}"
    );
    assert!(
        cookie
            .same_site()
            .is_some_and(|same_site| same_site.is_lax()),
        "SameSite=Lax: {cookie:?}"
    );
    assert_eq!(cookie.path(), Some("/"), "__Host- needs Path=/: {cookie:?}");
    assert_eq!(
        cookie.domain(),
        Some("localhost"),
        "host-only (no Domain attribute, as __Host- requires): {cookie:?}"
    );
    assert!(
        cookie.expires_datetime().is_some(),
        "a signed-in session has the User struct's 30 minute max age: {cookie:?}"
    );
    let script_sees = browser.execute("return document.cookie", vec![]).await;
    assert_eq!(
        script_sees.unwrap(),
        json!(""),
        "HttpOnly keeps the session cookie from page scripts"
    );

    click(&browser, "#sign-out").await;
    assert!(
        text(&browser, "#signed-out").await.contains("signed out"),
        "signing out lands on its page"
    );
    assert!(
        session_cookie(&browser).await.is_none(),
        "signing out removes the cookie from the browser"
    );
    click(&browser, "#back").await;
    assert_eq!(text(&browser, "#greeting").await, "Hello guest.");
    assert!(cart(&browser).await.is_empty(), "the cart went with it");
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_have_two_independent_sessions() {
    let app = serve(shop::app(SessionLayer::new(MemoryStorage::new()))).await;
    let (ann_profile, bob_profile) = (scratch_dir("shop-ann"), scratch_dir("shop-bob"));
    let driver = Driver::start();
    let ann = driver.open(&ann_profile).await;
    let bob = driver.open(&bob_profile).await;

    ann.goto(&app).await.unwrap();
    sign_in(&ann, "ann").await;
    click(&ann, "#add-7").await;
    bob.goto(&app).await.unwrap();
    assert_eq!(
        text(&bob, "#greeting").await,
        "Hello guest.",
        "ann's sign-in is not bob's"
    );
    sign_in(&bob, "bob").await;
    click(&bob, "#add-99").await;

    ann.refresh().await.unwrap();
    assert_eq!(text(&ann, "#greeting").await, "Hello ann.");
    assert_eq!(cart(&ann).await, ["Teapot"]);
    bob.refresh().await.unwrap();
    assert_eq!(text(&bob, "#greeting").await, "Hello bob.");
    assert_eq!(cart(&bob).await, ["Red balloon"]);
    let (ann_cookie, bob_cookie) = (session_cookie(&ann).await, session_cookie(&bob).await);
    assert_ne!(
        ann_cookie.unwrap().value(),
        bob_cookie.unwrap().value(),
        "two sessions, two ids"
    );

    // Signing one out leaves the other signed in.
    click(&ann, "#sign-out").await;
    bob.refresh().await.unwrap();
    assert_eq!(text(&bob, "#greeting").await, "Hello bob.");
    ann.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_posted_from_another_site_does_not_carry_the_lax_cookie() {
    let app = serve(shop::app(SessionLayer::new(MemoryStorage::new()))).await;
    // Another site: 127.0.0.1 is not the same site as localhost, whatever
    // the ports. Its form posts to the shop as soon as the page loads, the
    // shape of a cross-site request forgery.
    let shop_url = app.clone();
    let add_url = format!("{app}cart/99");
    let other_site = serve(
        Router::new()
            .route(
                "/",
                get(move || async move {
                    Html(format!(
                        "<!doctype html><title>Another site</title>\
                         <a id=\"link\" href=\"{shop_url}\">A link to the shop</a>"
                    ))
                }),
            )
            .route(
                "/prize",
                get(move || async move {
                    Html(format!(
                        "<!doctype html><title>You won</title>\
                         <body onload=\"document.forms[0].submit()\">\
                         <form method=\"post\" action=\"{add_url}\"></form>"
                    ))
                }),
            ),
    )
    .await
    .replace("localhost", "127.0.0.1");
    let profile = scratch_dir("shop-csrf");
    let driver = Driver::start();
    let browser = driver.open(&profile).await;

    browser.goto(&app).await.unwrap();
    sign_in(&browser, "ann").await;
    click(&browser, "#add-42").await;
    assert_eq!(cart(&browser).await, ["Towel"]);

    // A link from the other site is a top-level GET: Lax sends the cookie,
    // so ann arrives signed in (the other site's page is cross-site).
    browser.goto(&other_site).await.unwrap();
    click(&browser, "#link").await;
    assert_eq!(text(&browser, "#greeting").await, "Hello ann.");

    // Its form post is not: the shop sees no session, so the item lands in
    // a new guest session, never in ann's cart.
    browser.goto(&format!("{other_site}prize")).await.unwrap();
    browser
        .wait()
        .for_url(&app.parse().unwrap())
        .await
        .expect("the other site's form posts to the shop, which redirects home");
    assert_eq!(
        text(&browser, "#greeting").await,
        "Hello guest.",
        "the cross-site post came without ann's cookie"
    );
    assert_eq!(cart(&browser).await, ["Red balloon"]);
    browser.close().await.unwrap();
}

// ---------------------------------------------------------------------------
// Helpers: the apps, the pages, the browsers.

/// Serves `app` on a free port of 127.0.0.1 for the rest of the test and
/// returns its address as `http://localhost:PORT/`.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://localhost:{port}/")
}

/// Types `name` into the sign-in form and submits it with its button.
async fn sign_in(browser: &Client, name: &str) {
    let field = browser.find(Locator::Css("#name")).await.unwrap();
    field.send_keys(name).await.unwrap();
    click(browser, "#sign-in").await;
}

/// Clicks the element `css` finds and waits for the page it leads to.
async fn click(browser: &Client, css: &str) {
    let before = browser.find(Locator::Css("body")).await.unwrap();
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no {css} on the page: {error}"))
        .click()
        .await
        .unwrap();
    // The old page's body goes stale once the new page has replaced it;
    // the bound only keeps a click that loads nothing from hanging the run.
    for _ in 0..500 {
        if before.tag_name().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("clicking {css} did not load a new page");
}

/// The text of the element `css` finds.
async fn text(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no {css} on the page: {error}"))
        .text()
        .await
        .unwrap()
}

/// The flash messages the page shows.
async fn flashes(browser: &Client) -> Vec<String> {
    texts(browser, ".flash").await
}

/// The names in the cart, in order.
async fn cart(browser: &Client) -> Vec<String> {
    texts(browser, "#cart li").await
}

async fn texts(browser: &Client, css: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for element in browser.find_all(Locator::Css(css)).await.unwrap() {
        texts.push(element.text().await.unwrap());
    }
    texts
}

/// The session cookie as the browser keeps it for the current page.
async fn session_cookie(browser: &Client) -> Option<Cookie<'static>> {
    browser
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|cookie| cookie.name() == SessionLayerBuilder::DEFAULT_COOKIE_NAME)
}

/// Saves a PNG of the page under the target directory, for a person to
/// look at after the run.
async fn save_screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

/// A `chromedriver` of this test, in a process group of its own with the
/// browsers it starts, so dropping it (also when a test fails) ends them
/// all.
struct Driver {
    process: Child,
    url: String,
    chromium: PathBuf,
}

impl Driver {
    fn start() -> Self {
        let chromium = program("chromium");
        let mut process = Command::new(program("chromedriver"))
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let stdout = process.stdout.take().expect("piped");
        let mut port = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read chromedriver's output");
            if let Some(rest) = line.split(" started successfully on port ").nth(1) {
                port = rest.trim_end_matches('.').parse::<u16>().ok();
                break;
            }
        }
        let port = port.expect("chromedriver says which port it listens on");
        Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
        }
    }

    /// A new headless Chromium on the profile in `profile` (made if
    /// missing): the same directory again is the same browser restarted.
    async fn open(&self, profile: &Path) -> Client {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|&flag| flag.to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": self.chromium, "args": args},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("chromedriver starts a headless chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every browser it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.process.id())])
            .status();
        let _ = self.process.wait();
    }
}

/// The path of `name` on `PATH`, or a failure that says how to get it.
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: the browser tests (feature `browser`, on with \
                 --all-features) need Debian's chromium and chromium-driver packages. \
                 Run `bash .ci/run`, which installs them, or \
                 `apt-get install chromium chromium-driver`."
            )
        })
}

/// A new, empty browser profile directory of this test process, removed
/// when dropped: make it before the [`Driver`], so that the browsers using
/// it have been ended by then.
fn scratch_dir(name: &str) -> Profile {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "typed-sessions-browser-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    Profile(dir)
}

struct Profile(PathBuf);

impl std::ops::Deref for Profile {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
