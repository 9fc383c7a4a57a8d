//! The soak: many clients driving the conformance app over HTTP while a
//! store fails under it, and the checks that say whether anything a client
//! was told went wrong.
//!
//! Each client owns one session and runs one request at a time, so it knows
//! exactly what its session must hold: its counter is the number of
//! increments answered 2xx, and every answer shows it. An increment that
//! comes back higher than that is a phantom write (a 503 that was applied
//! after all); lower is a lost write. Writers sharing one session each set
//! a key of their own, and at the end every key must hold its writer's last
//! acknowledged value.
//!
//! The same code serves the short checks of the test suite (an app in the
//! test process, a few seconds) and the long run of the `soak` program (the
//! release app in a process of its own, minutes, figures for
//! `RELIABILITY.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::SET_COOKIE;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Store;
use crate::servers::{self, Memcached, RedisServer, ReplicatedCluster};

/// The routes the clients use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    /// `GET /session`.
    Read,
    /// `PATCH /session`.
    Write,
    /// `POST /session/incr?key=count`.
    Incr,
}

impl Route {
    /// The route as the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Route::Read => "GET /session",
            Route::Write => "PATCH /session",
            Route::Incr => "POST /session/incr",
        }
    }
}

/// One answered (or unanswered) request.
#[derive(Clone, Debug)]
pub struct Event {
    /// The route.
    pub route: Route,
    /// When it was sent, from the start of the run.
    pub sent: Duration,
    /// How long the answer took.
    pub latency: Duration,
    /// The status; 0 when no answer came (connection error or the client's
    /// own time limit).
    pub status: u16,
    /// Whether the answer set the session cookie.
    pub set_cookie: bool,
    /// Which client sent it (the shared writers come after the clients).
    pub client: usize,
}

/// What the run is asked to do.
#[derive(Clone, Debug)]
pub struct Load {
    /// The app, `http://ADDR`.
    pub base: String,
    /// Clients with a session each.
    pub clients: usize,
    /// Writers sharing one session, each setting a key of its own (0: none,
    /// for cookie storages, where one session cannot take concurrent
    /// writers).
    pub shared_writers: usize,
    /// How long the clients keep sending.
    pub duration: Duration,
    /// At most this many requests per client.
    pub max_requests: u64,
    /// A request with no answer after this long counts as a hang.
    pub request_limit: Duration,
}

/// A period of the run during which some failures are expected.
#[derive(Clone, Debug)]
pub struct Window {
    /// What happened, for the report.
    pub label: String,
    /// When it started, from the start of the run.
    pub from: Duration,
    /// When it was healed.
    pub to: Duration,
    /// From when sessions may come back empty (a Memcached server started
    /// again, empty): the clients then start again from nothing, and the
    /// run counts them instead of calling it a lost write.
    pub empty_from: Option<Duration>,
}

/// The fault windows of a run, written by whoever injects the faults while
/// the clients run.
#[derive(Clone, Default)]
pub struct Timeline {
    start: Arc<Mutex<Option<Instant>>>,
    windows: Arc<Mutex<Vec<Window>>>,
}

impl Timeline {
    fn begin(&self) -> Instant {
        *self.start.lock().unwrap().get_or_insert_with(Instant::now)
    }

    /// Time since the run started.
    pub fn now(&self) -> Duration {
        self.begin().elapsed()
    }

    /// Opens a window now; [`Timeline::heal`] closes it.
    pub fn fault(&self, label: &str) {
        let now = self.now();
        self.windows.lock().unwrap().push(Window {
            label: label.to_owned(),
            from: now,
            to: Duration::MAX,
            empty_from: None,
        });
    }

    /// Marks that the store starts again empty now: sessions it held may
    /// come back as new ones from here on.
    pub fn starting_empty(&self) {
        let now = self.now();
        if let Some(window) = self.windows.lock().unwrap().last_mut() {
            window.empty_from = Some(now);
        }
    }

    /// Closes the last open window now.
    pub fn heal(&self) {
        let now = self.now();
        if let Some(window) = self.windows.lock().unwrap().last_mut() {
            window.to = now;
        }
    }

    /// The windows so far.
    pub fn windows(&self) -> Vec<Window> {
        self.windows.lock().unwrap().clone()
    }

    /// Whether an answer given at `at` may show an emptied session: the
    /// answer time, not the sending time, since a request sent before the
    /// store came back may reach it after.
    fn may_empty_sessions_at(&self, at: Duration) -> bool {
        self.windows
            .lock()
            .unwrap()
            .iter()
            .any(|window| window.empty_from.is_some_and(|from| from <= at))
    }
}

/// What went wrong, by kind, with the first few examples of each.
#[derive(Debug, Default)]
pub struct Violations {
    /// Count per kind.
    pub counts: BTreeMap<&'static str, u64>,
    /// Up to five examples per kind.
    pub examples: BTreeMap<&'static str, Vec<String>>,
}

impl Violations {
    fn add(&mut self, kind: &'static str, count: u64, example: String) {
        *self.counts.entry(kind).or_default() += count;
        let examples = self.examples.entry(kind).or_default();
        if examples.len() < 5 {
            examples.push(example);
        }
    }

    fn merge(&mut self, other: Violations) {
        for (kind, count) in other.counts {
            *self.counts.entry(kind).or_default() += count;
        }
        for (kind, examples) in other.examples {
            let mine = self.examples.entry(kind).or_default();
            mine.extend(examples.into_iter().take(5 - mine.len().min(5)));
        }
    }

    /// Whether nothing went wrong.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every request.
    pub events: Vec<Event>,
    /// Lost writes, phantom writes, unexpected statuses, hangs.
    pub violations: Violations,
    /// Increments answered 2xx, over all clients.
    pub acknowledged_increments: u64,
    /// Sessions that came back empty after a window that allows it.
    pub emptied_sessions: u64,
    /// Shared-session writes answered 2xx.
    pub acknowledged_shared_writes: u64,
    /// The windows of the run.
    pub windows: Vec<Window>,
    /// How many clients had a session of their own (their ids come before
    /// the shared writers').
    pub clients: usize,
}

/// The session cookie of an answer, as `name=value`, if it set one.
fn session_cookie(reply: &reqwest::Response) -> Option<String> {
    reply
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or("").trim().to_owned())
        // The admin kind of the conformance app has a cookie of its own;
        // the clients never touch it.
        .find(|pair| {
            pair.split_once('=')
                .is_some_and(|(name, _)| !name.ends_with("_admin"))
        })
}

struct Answer {
    status: u16,
    set_cookie: Option<String>,
    body: Option<Value>,
}

async fn send(request: reqwest::RequestBuilder, cookie: Option<&str>) -> Answer {
    let request = match cookie {
        Some(cookie) => request.header("cookie", cookie),
        None => request,
    };
    match request.send().await {
        Ok(reply) => {
            let status = reply.status().as_u16();
            let set_cookie = session_cookie(&reply);
            let body = reply.json::<Value>().await.ok();
            Answer {
                status,
                set_cookie,
                body,
            }
        }
        Err(_) => Answer {
            status: 0,
            set_cookie: None,
            body: None,
        },
    }
}

/// A small deterministic generator, so runs are repeatable per client.
struct Steps(u64);

impl Steps {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn count_of(data: &Value) -> Option<u64> {
    match data.get("count") {
        None | Some(Value::Null) => Some(0),
        Some(value) => value.as_u64(),
    }
}

/// One client's run: its own session, one request at a time.
async fn run_client(
    id: usize,
    load: Load,
    http: reqwest::Client,
    timeline: Timeline,
    deadline: Instant,
) -> (Vec<Event>, Violations, u64, u64) {
    let mut events = Vec::new();
    let mut violations = Violations::default();
    let mut cookie: Option<String> = None;
    let mut expected: u64 = 0;
    let mut acknowledged = 0;
    let mut emptied = 0;
    let mut written: u64 = 0;
    let mut steps = Steps(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1));
    let mut sent_count = 0;
    while Instant::now() < deadline && sent_count < load.max_requests {
        sent_count += 1;
        let route = match steps.next() % 10 {
            0..=3 => Route::Read,
            4..=6 => Route::Write,
            _ => Route::Incr,
        };
        let request = match route {
            Route::Read => http.get(format!("{}/session", load.base)),
            Route::Write => {
                written += 1;
                http.patch(format!("{}/session", load.base))
                    .header("content-type", "application/json")
                    .body(json!({ "w": written }).to_string())
            }
            Route::Incr => http.post(format!("{}/session/incr?key=count", load.base)),
        };
        let sent = timeline.now();
        let started = Instant::now();
        let answer = send(request, cookie.as_deref()).await;
        let latency = started.elapsed();
        events.push(Event {
            route,
            sent,
            latency,
            status: answer.status,
            set_cookie: answer.set_cookie.is_some(),
            client: id,
        });
        let at = format!(
            "client {id} at {:.3} s, {}",
            sent.as_secs_f64(),
            route.name()
        );
        match answer.status {
            200..=299 => {}
            503 => {
                if answer.set_cookie.is_some() {
                    violations.add("503 with a Set-Cookie", 1, at.clone());
                }
                if !answer
                    .body
                    .as_ref()
                    .is_some_and(|body| body["error"].is_string())
                {
                    violations.add("503 without an {\"error\"} body", 1, at);
                }
                continue;
            }
            0 => {
                violations.add(
                    "no answer (connection error or hang)",
                    1,
                    format!("{at}, after {latency:?}"),
                );
                // What the store did is unknown: take the next answer's
                // counter as the truth.
                expected = u64::MAX;
                continue;
            }
            status => {
                violations.add(
                    "a status other than 2xx or 503",
                    1,
                    format!("{at}: {status}"),
                );
                continue;
            }
        }
        let Some(body) = answer.body else {
            violations.add("a 2xx without a JSON body", 1, at);
            continue;
        };
        // A session the client had, shown as new: it vanished.
        let vanished = cookie.is_some() && body.get("new") == Some(&Value::Bool(true));
        if let Some(set) = answer.set_cookie {
            let ended = set
                .split_once('=')
                .is_none_or(|(_, value)| value.is_empty());
            cookie = (!ended).then_some(set);
        }
        if vanished {
            if timeline.may_empty_sessions_at(sent + latency) {
                emptied += 1;
                expected = 0;
            } else {
                violations.add("a live session answered as a new one", 1, at.clone());
            }
        }
        let shown = match route {
            Route::Incr => body["value"].as_u64().map(|value| value.wrapping_sub(1)),
            _ => count_of(&body["data"]),
        };
        let Some(shown) = shown else {
            violations.add("an answer without the counter", 1, format!("{at}: {body}"));
            continue;
        };
        if route == Route::Incr
            && body["value"].as_u64() == Some(1)
            && expected > 0
            && expected != u64::MAX
            && timeline.may_empty_sessions_at(sent + latency)
        {
            emptied += 1;
            expected = 0;
        }
        if expected != u64::MAX && shown != expected {
            if shown > expected {
                violations.add(
                    "phantom write (a counter above the acknowledged increments)",
                    shown - expected,
                    format!("{at}: shows {shown}, acknowledged {expected}"),
                );
            } else {
                violations.add(
                    "lost write (a counter below the acknowledged increments)",
                    expected - shown,
                    format!("{at}: shows {shown}, acknowledged {expected}"),
                );
            }
        }
        expected = shown;
        if route == Route::Incr {
            expected += 1;
            acknowledged += 1;
        }
        if route == Route::Write && body["data"]["w"].as_u64() != Some(written) {
            violations.add(
                "a write not shown in its own answer",
                1,
                format!("{at}: {body}"),
            );
        }
    }
    (events, violations, acknowledged, emptied)
}

/// One writer of the shared session: sets its own key to 1, 2, 3, ...
async fn run_shared_writer(
    id: usize,
    writer: usize,
    load: Load,
    http: reqwest::Client,
    cookie: String,
    timeline: Timeline,
    deadline: Instant,
) -> (Vec<Event>, u64, u64) {
    let mut events = Vec::new();
    let mut last_acknowledged = 0;
    let mut acknowledged = 0;
    let mut n = 0;
    while Instant::now() < deadline && n < load.max_requests {
        n += 1;
        let request = http
            .patch(format!("{}/session", load.base))
            .header("content-type", "application/json")
            .body(json!({ format!("s{writer}"): n }).to_string());
        let sent = timeline.now();
        let started = Instant::now();
        let answer = send(request, Some(&cookie)).await;
        events.push(Event {
            route: Route::Write,
            sent,
            latency: started.elapsed(),
            status: answer.status,
            set_cookie: answer.set_cookie.is_some(),
            client: id,
        });
        if (200..300).contains(&answer.status) {
            last_acknowledged = n;
            acknowledged += 1;
        }
    }
    (events, last_acknowledged, acknowledged)
}

/// Runs the clients (and the shared writers) until the duration is over,
/// while `faults` runs beside them with the run's timeline, then checks
/// every session.
pub async fn run<F>(load: Load, faults: impl FnOnce(Timeline) -> F) -> Outcome
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let http = reqwest::Client::builder()
        .timeout(load.request_limit)
        .pool_max_idle_per_host(load.clients + load.shared_writers)
        .build()
        .expect("an HTTP client");
    let timeline = Timeline::default();
    let mut violations = Violations::default();
    // The shared session, made before the clock starts.
    let shared = if load.shared_writers > 0 {
        let answer = send(
            http.patch(format!("{}/session", load.base))
                .header("content-type", "application/json")
                .body(r#"{"shared": true}"#),
            None,
        )
        .await;
        assert_eq!(answer.status, 200, "the shared session is made");
        Some(answer.set_cookie.expect("a new session sets its cookie"))
    } else {
        None
    };
    timeline.begin();
    let deadline = Instant::now() + load.duration;
    let faults = tokio::spawn(faults(timeline.clone()));
    let clients: Vec<JoinHandle<_>> = (0..load.clients)
        .map(|id| {
            tokio::spawn(run_client(
                id,
                load.clone(),
                http.clone(),
                timeline.clone(),
                deadline,
            ))
        })
        .collect();
    let writers: Vec<JoinHandle<_>> = shared
        .iter()
        .flat_map(|cookie| {
            (0..load.shared_writers).map(|writer| {
                tokio::spawn(run_shared_writer(
                    load.clients + writer,
                    writer,
                    load.clone(),
                    http.clone(),
                    cookie.clone(),
                    timeline.clone(),
                    deadline,
                ))
            })
        })
        .collect::<Vec<_>>();
    let mut outcome = Outcome {
        clients: load.clients,
        ..Outcome::default()
    };
    for client in clients {
        let (events, client_violations, acknowledged, emptied) =
            client.await.expect("a client runs to its end");
        outcome.events.extend(events);
        violations.merge(client_violations);
        outcome.acknowledged_increments += acknowledged;
        outcome.emptied_sessions += emptied;
    }
    let mut last = Vec::new();
    for writer in writers {
        let (events, last_acknowledged, acknowledged) =
            writer.await.expect("a writer runs to its end");
        outcome.events.extend(events);
        last.push(last_acknowledged);
        outcome.acknowledged_shared_writes += acknowledged;
    }
    faults.await.expect("the faults run to their end");
    if let Some(cookie) = shared {
        let may_empty = timeline.may_empty_sessions_at(timeline.now());
        if check_shared(
            &http,
            &load.base,
            &cookie,
            &last,
            may_empty,
            &mut violations,
        )
        .await
        {
            outcome.emptied_sessions += 1;
        }
    }
    outcome.violations = violations;
    outcome.windows = timeline.windows();
    outcome
}

/// Every shared writer's key holds its last acknowledged value: none lost
/// to another writer, none written by a 503.
async fn check_shared(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    last: &[u64],
    emptied: bool,
    violations: &mut Violations,
) -> bool {
    // The store may still be coming back from the last fault: ten seconds.
    let mut answer = None;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let reply = send(http.get(format!("{base}/session")), Some(cookie)).await;
        if reply.status == 200 {
            answer = reply.body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(body) = answer else {
        violations.add(
            "the shared session cannot be read at the end",
            1,
            String::new(),
        );
        return false;
    };
    if body.get("new") == Some(&Value::Bool(true)) && emptied {
        // The shared session was on a server that came back empty.
        return true;
    }
    for (writer, &acknowledged) in last.iter().enumerate() {
        let shown = body["data"][format!("s{writer}")].as_u64().unwrap_or(0);
        if shown < acknowledged {
            violations.add(
                "lost write (shared session)",
                acknowledged - shown,
                format!("writer {writer}: shows {shown}, last acknowledged {acknowledged}"),
            );
        } else if shown > acknowledged {
            violations.add(
                "phantom write (shared session)",
                shown - acknowledged,
                format!("writer {writer}: shows {shown}, last acknowledged {acknowledged}"),
            );
        }
    }
    false
}

/// Figures of one fault window.
#[derive(Debug)]
pub struct WindowFigures {
    /// The window.
    pub window: Window,
    /// Requests sent from the fault to the heal.
    pub requests: usize,
    /// Of those, answered 503.
    pub unavailable: usize,
    /// Of those, answered 2xx.
    pub succeeded: usize,
    /// Of those, answered otherwise (a violation).
    pub other: usize,
    /// 503s to clients with a session of their own from the fault until
    /// the next one: the first sent and the last answered. (The shared
    /// writers are left out: on Memcached they get a few 503s whenever
    /// their writes collide, fault or not.)
    pub unavailable_span: Option<(Duration, Duration)>,
    /// From the heal until the last 503 was answered (zero: none after it).
    pub recovery: Duration,
    /// The slowest answer to a request sent in the window.
    pub slowest: Duration,
}

impl Outcome {
    /// The figures of each fault window: a window owns the 503s from its
    /// fault until the next window's fault.
    pub fn window_figures(&self) -> Vec<WindowFigures> {
        let mut figures = Vec::new();
        for (i, window) in self.windows.iter().enumerate() {
            let until = self
                .windows
                .get(i + 1)
                .map_or(Duration::MAX, |next| next.from);
            let during = || {
                self.events
                    .iter()
                    .filter(|e| e.sent >= window.from && e.sent < window.to)
            };
            let unavailable: Vec<&Event> = self
                .events
                .iter()
                .filter(|e| {
                    e.status == 503
                        && e.client < self.clients
                        && e.sent >= window.from
                        && e.sent < until
                })
                .collect();
            let span = unavailable
                .iter()
                .map(|e| e.sent)
                .min()
                .zip(unavailable.iter().map(|e| e.sent + e.latency).max());
            figures.push(WindowFigures {
                window: window.clone(),
                requests: during().count(),
                unavailable: during().filter(|e| e.status == 503).count(),
                succeeded: during().filter(|e| (200..300).contains(&e.status)).count(),
                other: during()
                    .filter(|e| e.status != 503 && !(200..300).contains(&e.status))
                    .count(),
                unavailable_span: span,
                recovery: span.map_or(Duration::ZERO, |(_, last)| last.saturating_sub(window.to)),
                slowest: during().map(|e| e.latency).max().unwrap_or_default(),
            });
        }
        figures
    }

    /// p50, p99 and p99.9 of the 2xx answers of each route.
    pub fn percentiles(&self) -> BTreeMap<Route, (usize, [Duration; 3])> {
        let mut by_route: BTreeMap<Route, Vec<Duration>> = BTreeMap::new();
        for event in &self.events {
            if (200..300).contains(&event.status) {
                by_route.entry(event.route).or_default().push(event.latency);
            }
        }
        by_route
            .into_iter()
            .map(|(route, mut latencies)| {
                latencies.sort();
                let at = |q: f64| {
                    let index =
                        ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
                    latencies[index - 1]
                };
                (route, (latencies.len(), [at(0.50), at(0.99), at(0.999)]))
            })
            .collect()
    }

    /// A one-paragraph summary for a test's failure message.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} requests, {} increments acknowledged, {} emptied sessions\n",
            self.events.len(),
            self.acknowledged_increments,
            self.emptied_sessions
        );
        for (kind, count) in &self.violations.counts {
            let _ = writeln!(
                text,
                "  {kind}: {count}, e.g. {:?}",
                self.violations.examples[kind]
            );
        }
        for figures in self.window_figures() {
            let _ = writeln!(text, "  {figures:?}");
        }
        text
    }
}

/// What the proxy does with the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// Passes them on at once.
    Healthy,
    /// Holds every chunk this long before passing it on.
    Slow(Duration),
    /// Drops every connection, and every new one at once.
    Cut,
}

/// A TCP proxy between the app and a store, whose network can be made slow
/// or cut while it runs.
pub struct Proxy {
    /// The port the app connects to.
    pub port: u16,
    network: watch::Sender<Network>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts one on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("bound").port();
        let (network, watching) = watch::channel(Network::Healthy);
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let watching = watching.clone();
                if *watching.borrow() == Network::Cut {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(carry(inbound, upstream, watching));
            }
        });
        Self {
            port,
            network,
            task,
        }
    }

    /// Changes what the network does from now on.
    pub fn set(&self, network: Network) {
        self.network.send_replace(network);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Carries one connection both ways until either side closes or the
/// network is cut.
async fn carry(inbound: TcpStream, upstream: u16, watching: watch::Receiver<Network>) {
    let Ok(outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::select! {
        () = pipe(in_read, out_write, watching.clone()) => {}
        () = pipe(out_read, in_write, watching) => {}
    }
}

async fn cut(watching: &mut watch::Receiver<Network>) {
    let _ = watching.wait_for(|network| *network == Network::Cut).await;
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut watching: watch::Receiver<Network>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = cut(&mut watching) => return,
        };
        let network = *watching.borrow();
        match network {
            Network::Cut => return,
            Network::Slow(delay) => tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cut(&mut watching) => return,
            },
            Network::Healthy => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// The fault a run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// None: the storage under load only.
    None,
    /// Redis killed with `SIGKILL`, restarted on the same port and files
    /// (`appendfsync always`).
    RedisKill,
    /// Redis frozen with `SIGSTOP` past the command timeout, then thawed.
    RedisFreeze,
    /// A master of a Redis Cluster with replicas killed; its replica takes
    /// over.
    ClusterFailover,
    /// The master of a Sentinel-managed Redis killed; the Sentinels make
    /// its replica the master.
    SentinelFailover,
    /// One of two Memcached servers killed, then started again (empty).
    MemcachedKill,
    /// The network to Redis made slow, then cut, then healed.
    Network,
}

impl Fault {
    /// The storage the fault hits.
    pub fn store(self, otherwise: Store) -> Store {
        match self {
            Fault::None => otherwise,
            Fault::RedisKill | Fault::RedisFreeze | Fault::Network => Store::Redis,
            // aiohttp_session's records on the cluster, or the native ones.
            Fault::ClusterFailover if otherwise == Store::AiohttpRedis => otherwise,
            Fault::ClusterFailover => Store::RedisCluster,
            Fault::SentinelFailover => Store::RedisSentinel,
            Fault::MemcachedKill => Store::Memcached,
        }
    }

    /// The name the program takes and the report shows.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::RedisKill => "redis-kill",
            Fault::RedisFreeze => "redis-freeze",
            Fault::ClusterFailover => "redis-cluster-failover",
            Fault::SentinelFailover => "redis-sentinel-failover",
            Fault::MemcachedKill => "memcached-kill",
            Fault::Network => "redis-network",
        }
    }
}

/// What a run needs: where its store is, and the fault to inject.
pub struct Stage {
    /// The storage.
    pub store: Store,
    /// For Redis, Redis Cluster and Sentinel: `REDIS_URL`.
    pub redis_url: String,
    /// For Memcached: the servers.
    pub memcached: Vec<String>,
    /// Injects the fault into the run's timeline.
    pub faults: Box<dyn FnOnce(Timeline) -> FaultRun + Send>,
    /// The servers, kept alive until the stage is dropped.
    pub keep: Arc<Mutex<Vec<Box<dyn std::any::Any + Send>>>>,
}

/// The future of a fault's injection.
pub type FaultRun = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// When a fault starts and how long it lasts.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// From the start of the run.
    pub at: Duration,
    /// How long the store stays broken.
    pub outage: Duration,
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("a server operation")
}

async fn sleep_until(timeline: &Timeline, at: Duration) {
    tokio::time::sleep(at.saturating_sub(timeline.now())).await;
}

/// Starts the servers `fault` needs (the store's, for [`Fault::None`]) and
/// says how to break them.
pub async fn stage(fault: Fault, store: Store, schedule: Schedule) -> Stage {
    let keep: Arc<Mutex<Vec<Box<dyn std::any::Any + Send>>>> = Arc::default();
    let store = fault.store(store);
    let mut stage = Stage {
        store,
        redis_url: String::new(),
        memcached: Vec::new(),
        faults: Box::new(|_| Box::pin(async {})),
        keep: keep.clone(),
    };
    let Schedule { at, outage } = schedule;
    match fault {
        Fault::None => match store {
            Store::Redis => {
                let server = blocking(RedisServer::start).await;
                stage.redis_url = server.url();
                keep.lock().unwrap().push(Box::new(server));
            }
            Store::RedisCluster => {
                let cluster = blocking(servers::RedisCluster::start).await;
                stage.redis_url = cluster.url();
                keep.lock().unwrap().push(Box::new(cluster));
            }
            Store::RedisSentinel => {
                let group = blocking(servers::RedisSentinels::start).await;
                stage.redis_url = group.urls();
                keep.lock().unwrap().push(Box::new(group));
            }
            Store::Memcached => {
                let pair = blocking(|| [Memcached::start(), Memcached::start()]).await;
                stage.memcached = pair.iter().map(Memcached::addr).collect();
                keep.lock().unwrap().push(Box::new(pair));
            }
            _ => {}
        },
        Fault::RedisKill => {
            let dir = servers::server_dir("durable-redis");
            let server = {
                let dir = dir.clone();
                blocking(move || RedisServer::start_durable(&dir)).await
            };
            stage.redis_url = server.url();
            let port = server.port;
            stage.faults = Box::new(move |timeline| {
                Box::pin(async move {
                    let mut server = server;
                    sleep_until(&timeline, at).await;
                    timeline.fault("Redis killed (SIGKILL), restarted on the same port");
                    let server = blocking(move || {
                        server.stop();
                        server
                    })
                    .await;
                    drop(server);
                    tokio::time::sleep(outage).await;
                    let replacement =
                        blocking(move || RedisServer::start_durable_on(port, &dir)).await;
                    timeline.heal();
                    keep.lock().unwrap().push(Box::new(replacement));
                })
            });
        }
        Fault::RedisFreeze => {
            let server = blocking(RedisServer::start).await;
            stage.redis_url = server.url();
            let pid = server.pid();
            keep.lock().unwrap().push(Box::new(server));
            stage.faults = Box::new(move |timeline| {
                Box::pin(async move {
                    sleep_until(&timeline, at).await;
                    // The window opens once the signal is sent, and
                    // closes once the thaw is: `kill` may be slow to start
                    // on a busy machine.
                    blocking(move || servers::signal(pid, "STOP")).await;
                    timeline.fault("Redis frozen (SIGSTOP), then thawed (SIGCONT)");
                    tokio::time::sleep(outage).await;
                    blocking(move || servers::signal(pid, "CONT")).await;
                    timeline.heal();
                })
            });
        }
        Fault::Network => {
            let server = blocking(RedisServer::start).await;
            let proxy = Proxy::start(server.port).await;
            stage.redis_url = format!("redis://127.0.0.1:{}/0", proxy.port);
            keep.lock().unwrap().push(Box::new(server));
            stage.faults = Box::new(move |timeline| {
                Box::pin(async move {
                    sleep_until(&timeline, at).await;
                    timeline.fault("network to Redis slow (+1.5 s per chunk)");
                    proxy.set(Network::Slow(Duration::from_millis(1_500)));
                    tokio::time::sleep(outage).await;
                    timeline.heal();
                    timeline.fault("network to Redis cut (connections dropped)");
                    proxy.set(Network::Cut);
                    tokio::time::sleep(outage).await;
                    proxy.set(Network::Healthy);
                    timeline.heal();
                    keep.lock().unwrap().push(Box::new(proxy));
                })
            });
        }
        Fault::ClusterFailover => {
            let cluster = blocking(ReplicatedCluster::start).await;
            stage.redis_url = cluster.url();
            stage.faults = Box::new(move |timeline| {
                Box::pin(async move {
                    sleep_until(&timeline, at).await;
                    timeline.fault("a Redis Cluster master killed (SIGKILL); failover");
                    let cluster = blocking(move || {
                        let mut cluster = cluster;
                        let masters = cluster.masters();
                        cluster.kill(masters[0]);
                        let live: Vec<u16> = cluster
                            .ports
                            .iter()
                            .copied()
                            .filter(|&port| port != masters[0])
                            .collect();
                        cluster.wait_until_ok(&live);
                        cluster
                    })
                    .await;
                    timeline.heal();
                    keep.lock().unwrap().push(Box::new(cluster));
                })
            });
        }
        Fault::SentinelFailover => {
            let group = blocking(servers::RedisSentinels::start).await;
            stage.redis_url = group.urls();
            stage.faults = Box::new(move |timeline| {
                Box::pin(async move {
                    sleep_until(&timeline, at).await;
                    timeline.fault("the Sentinels' master killed (SIGKILL); failover");
                    let group = blocking(move || {
                        let mut group = group;
                        group.kill_master();
                        group.wait_for_failover();
                        group
                    })
                    .await;
                    timeline.heal();
                    keep.lock().unwrap().push(Box::new(group));
                })
            });
        }
        Fault::MemcachedKill => {
            let pair = blocking(|| [Memcached::start(), Memcached::start()]).await;
            stage.memcached = pair.iter().map(Memcached::addr).collect();
            stage.faults = Box::new(move |timeline| {
                Box::pin(async move {
                    let [live, mut dead] = pair;
                    let port = dead.port;
                    sleep_until(&timeline, at).await;
                    timeline
                        .fault("one of two Memcached servers killed (SIGKILL), restarted empty");
                    blocking(move || dead.stop()).await;
                    tokio::time::sleep(outage).await;
                    timeline.starting_empty();
                    let replacement = blocking(move || Memcached::start_on(port)).await;
                    timeline.heal();
                    keep.lock().unwrap().push(Box::new((live, replacement)));
                })
            });
        }
    }
    stage
}
