//! Real `redis-server` and `memcached` processes for the tests, on free
//! loopback ports.
//!
//! Each server runs under a small `sh` guard that kills it when this test
//! process ends (its stdin, a pipe from us, closes), so servers shared by a
//! whole test binary never outlive it. A missing binary fails the test with
//! the package to install; nothing is skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A server process and the guard that ends it.
pub struct Process {
    guard: Child,
    stdin: Option<ChildStdin>,
}

impl Process {
    fn spawn(program: &str, package: &str, args: &[String]) -> Self {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
        });
        assert!(
            found,
            "`{program}` is not installed: install the Debian package `{package}` \
             (`apt-get install -y {package}`), or run the tests through `bash .ci/run`, \
             which installs it"
        );
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(r#""$@" & server=$!; read _; kill -9 $server 2>/dev/null; wait $server 2>/dev/null"#)
            .arg("guard")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {program}: {error}"));
        let stdin = guard.stdin.take();
        Self { guard, stdin }
    }

    /// Kills the server and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let _ = self.guard.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nobody listens on (nor on `port + offset`, for the
/// cluster bus), at most 55535.
pub fn free_port(offset: u16) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("bound").port();
        if port > 55_535 {
            continue;
        }
        if offset == 0 || TcpListener::bind(("127.0.0.1", port + offset)).is_ok() {
            return port;
        }
    }
}

/// Sends one inline command and returns the first line of the answer.
fn ask(port: u16, command: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}

/// Sends one command (or several, separated by `\r\n`) and returns the
/// whole answer.
pub fn ask_all(port: u16, command: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    // `quit` makes the server close the connection once it has answered.
    let _ = stream.write_all(format!("{command}\r\nquit\r\n").as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not come up within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("typed-sessions-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// A standalone `redis-server` without persistence.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    process: Process,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port(0))
    }

    /// Starts a server on `port` (to restart one that was stopped).
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// Starts a server that accepts `DEBUG SLEEP`, to play a slow store.
    pub fn start_debuggable() -> Self {
        Self::start_with(free_port(0), &["--enable-debug-command", "yes"])
    }

    fn start_with(port: u16, extra: &[&str]) -> Self {
        let dir = scratch_dir(&format!("redis-{port}"));
        let args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir.to_str().expect("UTF-8 temp dir"),
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        let process = Process::spawn("redis-server", "redis-server", &args);
        wait_until("redis-server", || {
            ask(port, "PING").is_some_and(|l| l.starts_with("+PONG"))
        });
        Self { port, process }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// `INFO commandstats`-style counters and other one-line answers.
    pub fn command(&self, command: &str) -> String {
        ask_all(self.port, command)
    }
}

/// A three-node Redis Cluster (masters only).
pub struct RedisCluster {
    /// The nodes' ports.
    pub ports: Vec<u16>,
    _nodes: Vec<Process>,
}

impl RedisCluster {
    /// Starts three nodes and joins them with `redis-cli --cluster create`.
    pub fn start() -> Self {
        let mut ports = Vec::new();
        while ports.len() < 3 {
            let port = free_port(10_000);
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let dir = scratch_dir(&format!("cluster-{}", ports[0]));
        let nodes: Vec<Process> = ports
            .iter()
            .map(|port| {
                let args: Vec<String> = [
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    dir.to_str().expect("UTF-8 temp dir"),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                Process::spawn("redis-server", "redis-server", &args)
            })
            .collect();
        for port in &ports {
            wait_until("cluster node", || {
                ask(*port, "PING").is_some_and(|l| l.starts_with("+PONG"))
            });
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run redis-cli ({error}): install the Debian package `redis-tools`")
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {output:?}"
        );
        for port in &ports {
            wait_until("cluster state ok", || {
                ask_all(*port, "CLUSTER INFO").contains("cluster_state:ok")
            });
        }
        Self {
            ports,
            _nodes: nodes,
        }
    }

    /// The seed nodes, comma-separated, as `REDIS_URL` takes them.
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A `memcached` process.
pub struct Memcached {
    /// Its port.
    pub port: u16,
    process: Process,
}

impl Memcached {
    /// Starts one on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port(0))
    }

    /// Starts one on `port`.
    pub fn start_on(port: u16) -> Self {
        // As root memcached refuses to start without `-u root`.
        let args: Vec<String> = [
            "-p",
            &port.to_string(),
            "-l",
            "127.0.0.1",
            "-U",
            "0",
            "-u",
            "root",
            "-m",
            "64",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let process = Process::spawn("memcached", "memcached", &args);
        wait_until("memcached", || {
            ask(port, "version").is_some_and(|l| l.starts_with("VERSION"))
        });
        Self { port, process }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// The `stats` counters.
    pub fn stats(&self) -> String {
        ask_all(self.port, "stats")
    }
}

/// The Redis server shared by the tests of this binary.
pub fn shared_redis() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// The Redis Cluster shared by the tests of this binary.
pub fn shared_redis_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

/// The two Memcached servers shared by the tests of this binary.
pub fn shared_memcached() -> &'static [Memcached; 2] {
    static SERVERS: OnceLock<[Memcached; 2]> = OnceLock::new();
    SERVERS.get_or_init(|| [Memcached::start(), Memcached::start()])
}
