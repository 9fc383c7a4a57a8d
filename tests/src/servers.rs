//! Real `redis-server`, `memcached`, PostgreSQL and MariaDB processes for
//! the tests, on free loopback ports, and SQLite files in a scratch
//! directory.
//!
//! Each server runs under a small `sh` guard that kills it when this test
//! process ends (its stdin, a pipe from us, closes), so servers shared by a
//! whole test binary never outlive it. A missing binary fails the test with
//! the package to install; nothing is skipped.
//!
//! Ports: Memcached binds a port of the kernel's choosing and tells us which
//! (`-p -1` with `MEMCACHED_PORT_FILENAME`). Redis cannot (`--port 0` means
//! "no TCP"), so it gets a port that was free a moment ago; another test may
//! take it first, so a server is only ready once the one answering on its
//! port reports our server's pid, and a server that exits (the port was
//! taken) is started again on another port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How many ports a server that finds its port taken tries in all.
const PORT_TRIES: usize = 10;

/// Starts `"$@"` in the background with its output discarded, prints its
/// pid, kills it when a line (or end of file) arrives on stdin, and exits
/// when it exits, whichever comes first.
const GUARD: &str = r#"
exec 3<&0
"$@" >/dev/null 2>&1 3<&- & server=$!
echo "$server"
{ read _ <&3; kill -9 "$server" 2>/dev/null; } &
wait "$server"
"#;

/// A server process and the guard that ends it.
pub struct Process {
    guard: Child,
    stdin: Option<ChildStdin>,
    /// The server's own pid (not the guard's).
    pub pid: u32,
}

impl Process {
    fn spawn(program: &str, package: &str, args: &[String], env: &[(&str, &Path)]) -> Self {
        Self::spawn_as(program, package, args, env, None)
    }

    /// [`Process::spawn`], as the user and group `owner` when given.
    fn spawn_as(
        program: &str,
        package: &str,
        args: &[String],
        env: &[(&str, &Path)],
        owner: Option<(u32, u32)>,
    ) -> Self {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
        });
        assert!(
            found,
            "`{program}` is not installed: install the Debian package `{package}` \
             (`apt-get install -y {package}`), or run the tests through `bash .ci/run`, \
             which installs it"
        );
        let mut guard = Command::new("sh");
        if let Some((uid, gid)) = owner {
            use std::os::unix::process::CommandExt as _;
            guard.uid(uid).gid(gid);
        }
        let mut guard = guard
            .arg("-c")
            .arg(GUARD)
            .arg("guard")
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {program}: {error}"));
        let stdin = guard.stdin.take();
        let mut line = String::new();
        BufReader::new(guard.stdout.take().expect("the guard's stdout"))
            .read_line(&mut line)
            .expect("the guard prints the server's pid");
        let pid = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the guard printed {line:?}, not a pid"));
        Self { guard, stdin, pid }
    }

    /// Whether the server has exited (by itself: a port already taken).
    fn exited(&mut self) -> bool {
        matches!(self.guard.try_wait(), Ok(Some(_)))
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

/// A loopback port nobody listened on a moment ago (nor on `port + offset`,
/// for the cluster bus), at most 55535. Someone else may take it before it
/// is used: servers started on it check that they got it.
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

/// Sends one command to a Sentinel and returns its whole answer: a
/// Sentinel knows no `QUIT`, so the answer ends where its RESP value does
/// (or after 2 s without a byte).
pub fn ask_sentinel(port: u16, command: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.write_all(format!("{command}\r\n").as_bytes());
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    while resp_end(&answer, 0).is_none() {
        match stream.read(&mut chunk) {
            Ok(read) if read > 0 => answer.extend_from_slice(&chunk[..read]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Where the RESP2 value starting at `at` of `buffer` ends, if it is all
/// there.
fn resp_end(buffer: &[u8], at: usize) -> Option<usize> {
    let line_end = at
        + buffer
            .get(at..)?
            .windows(2)
            .position(|pair| pair == b"\r\n")?;
    let after = line_end + 2;
    let number = || {
        std::str::from_utf8(&buffer[at + 1..line_end])
            .ok()?
            .parse::<i64>()
            .ok()
    };
    match buffer.get(at)? {
        b'+' | b'-' | b':' => Some(after),
        b'$' => match number()? {
            length if length < 0 => Some(after),
            length => {
                let end = after + usize::try_from(length).ok()? + 2;
                (buffer.len() >= end).then_some(end)
            }
        },
        b'*' => {
            let mut end = after;
            for _ in 0..number()?.max(0) {
                end = resp_end(buffer, end)?;
            }
            Some(end)
        }
        _ => None,
    }
}

/// How a server's start-up is going.
enum Startup {
    Ready,
    Pending,
    /// The server exited: its port was taken.
    Exited,
}

/// Polls `state` until the server is ready (`true`) or has exited
/// (`false`); a server neither ready nor gone after 20 s fails the test.
fn wait_for(what: &str, mut state: impl FnMut() -> Startup) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match state() {
            Startup::Ready => return true,
            Startup::Exited => return false,
            Startup::Pending => {}
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not come up within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    wait_for(what, || {
        if ready() {
            Startup::Ready
        } else {
            Startup::Pending
        }
    });
}

/// Removes its directory (`$1`) once its stdin, a pipe from the test
/// process, reaches end of file: when the test process ends, however it
/// ends. The pause lets the guards kill the servers writing there first.
const JANITOR: &str = r#"
read _
sleep 1
rm -rf -- "$1"
"#;

/// This test process's directory under the system's temporary directory,
/// removed with everything in it when the process ends: servers shared by a
/// whole test binary are never dropped, and a MariaDB data directory alone
/// is over 20 MB, so directories left behind would fill the disk of a long
/// run.
fn scratch_root() -> &'static Path {
    // The janitor is kept, never waited for: it must outlive us.
    static ROOT: OnceLock<(PathBuf, Child)> = OnceLock::new();
    let (root, _) = ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("typed-sessions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create this test process's scratch directory");
        let janitor = Command::new("sh")
            .arg("-c")
            .arg(JANITOR)
            .arg("janitor")
            .arg(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the scratch directory's janitor (`sh`)");
        (root, janitor)
    });
    root
}

/// A new, empty directory of this test process, removed when it ends.
fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = scratch_root().join(format!("{name}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Starts `redis-server` with `args` on `port` and waits until it answers
/// there; `None` when it exits instead (someone else has the port).
fn launch_redis(port: u16, args: &[String]) -> Option<Process> {
    let mut all = vec!["--port".to_owned(), port.to_string()];
    all.extend_from_slice(args);
    let mut process = Process::spawn("redis-server", "redis-server", &all, &[]);
    let ours = format!("process_id:{}\r\n", process.pid);
    let started = wait_for("redis-server", || {
        if process.exited() {
            Startup::Exited
        } else if ask_all(port, "INFO server").contains(&ours) {
            Startup::Ready
        } else {
            Startup::Pending
        }
    });
    started.then_some(process)
}

/// Starts `redis-server` with `args` on a free port (and `port + offset`
/// free too), trying other ports while the chosen one turns out taken.
fn launch_redis_on_a_free_port(offset: u16, args: impl Fn(u16) -> Vec<String>) -> (u16, Process) {
    launch_redis_on_the_first_free((0..PORT_TRIES).map(|_| free_port(offset)), args)
}

/// Starts `redis-server` with `args` on the first of `ports` it can have.
fn launch_redis_on_the_first_free(
    ports: impl IntoIterator<Item = u16>,
    args: impl Fn(u16) -> Vec<String>,
) -> (u16, Process) {
    for port in ports {
        if let Some(process) = launch_redis(port, &args(port)) {
            return (port, process);
        }
    }
    panic!("redis-server found every port it tried taken")
}

/// A standalone `redis-server` without persistence.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    process: Process,
}

fn redis_args(dir: &Path) -> Vec<String> {
    [
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
    .map(|s| s.to_string())
    .collect()
}

fn durable_redis_args(dir: &Path) -> Vec<String> {
    let mut args = redis_args(dir);
    let appendonly = args
        .iter()
        .position(|arg| arg == "--appendonly")
        .expect("set above");
    args[appendonly + 1] = "yes".to_owned();
    args.extend(["--appendfsync".to_owned(), "always".to_owned()]);
    args
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    // The shell's own `kill`: no `procps` needed.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{signal} {pid}"))
        .status()
        .expect("run sh");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A new, empty directory for a server's files.
pub fn server_dir(name: &str) -> PathBuf {
    scratch_dir(name)
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        let (port, process) = launch_redis_on_a_free_port(0, |_| redis_args(&scratch_dir("redis")));
        Self { port, process }
    }

    /// Starts a server on a free port that replicates the one on
    /// `master`.
    pub fn start_replica_of(master: u16) -> Self {
        let (port, process) = launch_redis_on_a_free_port(0, |_| {
            let mut args = redis_args(&scratch_dir("redis"));
            args.extend([
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                master.to_string(),
            ]);
            args
        });
        Self { port, process }
    }

    /// Starts a server on a free port that also speaks TLS on `port +
    /// 1000` with `certificates`' server certificate, and replicates over
    /// TLS (from `master`'s TLS port, if given): what Sentinel over TLS
    /// watches.
    pub fn start_tls(certificates: &TestCertificates, master: Option<u16>) -> Self {
        let dir = scratch_dir("redis-tls");
        let (port, process) = launch_redis_on_a_free_port(TLS_PORT_OFFSET, |port| {
            let mut args = redis_args(&dir);
            args.extend(tls_args(certificates, port + TLS_PORT_OFFSET));
            args.extend(["--tls-replication".to_owned(), "yes".to_owned()]);
            if let Some(master) = master {
                args.extend([
                    "--replicaof".to_owned(),
                    "127.0.0.1".to_owned(),
                    (master + TLS_PORT_OFFSET).to_string(),
                ]);
            }
            args
        });
        Self { port, process }
    }

    /// Starts a server on `port` (to restart one that was stopped); fails
    /// the test if the port has been taken since.
    pub fn start_on(port: u16) -> Self {
        let process = launch_redis(port, &redis_args(&scratch_dir("redis")))
            .unwrap_or_else(|| panic!("redis-server could not have port {port} again"));
        Self { port, process }
    }

    /// Starts a server on a free port that writes every command to its
    /// append-only file in `dir` before answering (`appendonly yes`,
    /// `appendfsync always`): one restarted on the same port and `dir` has
    /// every acknowledged write.
    pub fn start_durable(dir: &Path) -> Self {
        let (port, process) = launch_redis_on_a_free_port(0, |_| durable_redis_args(dir));
        Self { port, process }
    }

    /// Starts a durable server on `port` and `dir` again (see
    /// [`RedisServer::start_durable`]).
    pub fn start_durable_on(port: u16, dir: &Path) -> Self {
        let process = launch_redis(port, &durable_redis_args(dir))
            .unwrap_or_else(|| panic!("redis-server could not have port {port} again"));
        Self { port, process }
    }

    /// The server's pid, to signal it (`SIGSTOP` freezes it).
    pub fn pid(&self) -> u32 {
        self.process.pid
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
    /// With TLS: the certificates every node uses. Clients and the cluster
    /// bus speak TLS, clients 1000 ports above each node's own, and every
    /// TLS client (nodes to each other included) must present a
    /// certificate of the CA (`tls-auth-clients yes`).
    pub certificates: Option<TestCertificates>,
    _nodes: Vec<Process>,
}

impl RedisCluster {
    /// Starts three nodes and joins them with `redis-cli --cluster create`.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// [`RedisCluster::start`], with TLS for clients and the cluster bus,
    /// and client certificates required, as some managed Redis Clusters
    /// have it.
    pub fn start_tls() -> Self {
        Self::start_with(Some(TestCertificates::make()))
    }

    fn start_with(certificates: Option<TestCertificates>) -> Self {
        let dir = scratch_dir("cluster");
        let (ports, nodes): (Vec<u16>, Vec<Process>) = (0..3)
            .map(|_| {
                // A node also listens on its port + 10000, the cluster bus
                // (and on its port + 1000 for TLS clients).
                launch_redis_on_a_free_port(10_000, |port| {
                    let mut args = vec![
                        "--cluster-enabled".to_owned(),
                        "yes".to_owned(),
                        "--cluster-config-file".to_owned(),
                        format!("nodes-{port}.conf"),
                    ];
                    args.extend(redis_args(&dir));
                    if let Some(certificates) = &certificates {
                        args.extend(tls_cluster_args(certificates, port + TLS_PORT_OFFSET));
                    }
                    args
                })
            })
            .unzip();
        let mut create = Command::new("redis-cli");
        if let Some(certificates) = &certificates {
            let (certificate, key) = &certificates.client;
            create
                .arg("--tls")
                .arg("--cacert")
                .arg(&certificates.ca)
                .arg("--cert")
                .arg(certificate)
                .arg("--key")
                .arg(key);
        }
        create.arg("--cluster").arg("create");
        for port in &ports {
            let port = if certificates.is_some() {
                port + TLS_PORT_OFFSET
            } else {
                *port
            };
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
            certificates,
            _nodes: nodes,
        }
    }

    /// The seed nodes, comma-separated, as `REDIS_URL` takes them: with
    /// TLS, `rediss://` URLs of the TLS ports.
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|port| match self.certificates {
                Some(_) => format!("rediss://127.0.0.1:{}", port + TLS_PORT_OFFSET),
                None => format!("redis://127.0.0.1:{port}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A cluster node's TLS: clients on `tls_port` and the cluster bus both
/// speak TLS, every client must present a certificate of the CA, and the
/// node presents the client certificate when it connects to another node
/// (its server certificate is for servers only).
fn tls_cluster_args(certificates: &TestCertificates, tls_port: u16) -> Vec<String> {
    let mut args = tls_args(certificates, tls_port);
    let auth = args
        .iter()
        .position(|arg| arg == "--tls-auth-clients")
        .expect("tls_args sets --tls-auth-clients");
    args[auth + 1] = "yes".to_owned();
    let (certificate, key) = &certificates.client;
    for (flag, value) in [
        ("--tls-cluster", "yes".to_owned()),
        ("--tls-client-cert-file", certificate.display().to_string()),
        ("--tls-client-key-file", key.display().to_string()),
    ] {
        args.push(flag.to_owned());
        args.push(value);
    }
    args
}

/// A Redis Cluster of three masters with a replica each, whose nodes can
/// be killed one at a time: the replica of a dead master takes over after
/// the node timeout (one second here).
pub struct ReplicatedCluster {
    /// The nodes' ports.
    pub ports: Vec<u16>,
    nodes: Vec<Process>,
}

impl ReplicatedCluster {
    /// Starts six nodes, joins them with `redis-cli --cluster create
    /// --cluster-replicas 1`, and waits until every replica is in sync.
    pub fn start() -> Self {
        let dir = scratch_dir("replicated-cluster");
        let (ports, nodes): (Vec<u16>, Vec<Process>) = (0..6)
            .map(|_| {
                launch_redis_on_a_free_port(10_000, |port| {
                    let mut args: Vec<String> = [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-config-file",
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                    args.push(format!("nodes-{port}.conf"));
                    args.extend(redis_args(&dir));
                    args
                })
            })
            .unzip();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run redis-cli ({error}): install the Debian package `redis-tools`")
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {output:?}"
        );
        let cluster = Self { ports, nodes };
        for port in &cluster.ports {
            wait_until("cluster state ok", || {
                ask_all(*port, "CLUSTER INFO").contains("cluster_state:ok")
            });
        }
        for port in cluster.replicas() {
            wait_until("replica in sync", || {
                ask_all(port, "INFO replication").contains("master_link_status:up")
            });
        }
        cluster
    }

    fn role(port: u16) -> String {
        ask_all(port, "ROLE")
    }

    /// The ports of the live masters.
    pub fn masters(&self) -> Vec<u16> {
        self.ports
            .iter()
            .copied()
            .filter(|&port| Self::role(port).contains("master"))
            .collect()
    }

    fn replicas(&self) -> Vec<u16> {
        self.ports
            .iter()
            .copied()
            .filter(|&port| Self::role(port).contains("slave"))
            .collect()
    }

    /// Kills the node on `port` (`SIGKILL`).
    pub fn kill(&mut self, port: u16) {
        let index = self.ports.iter().position(|&p| p == port).expect("a node");
        self.nodes[index].stop();
    }

    /// Waits until the replica of a dead master has taken over (three
    /// masters among `live`) and the cluster serves every slot again.
    pub fn wait_until_ok(&self, live: &[u16]) {
        wait_until("a replica promoted", || {
            live.iter()
                .filter(|&&port| Self::role(port).contains("master"))
                .count()
                == 3
        });
        for port in live {
            wait_until("cluster state ok after a failover", || {
                ask_all(*port, "CLUSTER INFO").contains("cluster_state:ok")
            });
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
    /// Starts one on a port the kernel picks, and learns which.
    pub fn start() -> Self {
        // With `-p -1` memcached binds port 0 and writes the port it got to
        // this file (first to `FILE.lck`, then renamed: it appears whole).
        let ports_file = scratch_dir("memcached").join("ports");
        let mut process = Self::spawn("-1", &ports_file);
        let mut port = None;
        let started = wait_for("memcached", || {
            if process.exited() {
                return Startup::Exited;
            }
            port = port.or_else(|| {
                let text = std::fs::read_to_string(&ports_file).ok()?;
                text.lines()
                    .find_map(|line| line.strip_prefix("TCP INET: "))
                    .and_then(|port| port.trim().parse().ok())
            });
            match port {
                Some(port) if ask(port, "version").is_some_and(|l| l.starts_with("VERSION")) => {
                    Startup::Ready
                }
                _ => Startup::Pending,
            }
        });
        assert!(started, "memcached exited on start-up");
        let port = port.expect("a ready memcached has a port");
        Self { port, process }
    }

    /// Starts one on `port` (to restart one that was stopped); fails the
    /// test if the port has been taken since.
    pub fn start_on(port: u16) -> Self {
        let mut process = Self::spawn(&port.to_string(), &scratch_dir("memcached").join("ports"));
        let ours = format!("STAT pid {}\r\n", process.pid);
        let started = wait_for("memcached", || {
            if process.exited() {
                Startup::Exited
            } else if ask_all(port, "stats").contains(&ours) {
                Startup::Ready
            } else {
                Startup::Pending
            }
        });
        assert!(started, "memcached could not have port {port} again");
        Self { port, process }
    }

    fn spawn(port: &str, ports_file: &Path) -> Process {
        // As root memcached refuses to start without `-u root`.
        let args: Vec<String> = [
            "-p",
            port,
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
        Process::spawn(
            "memcached",
            "memcached",
            &args,
            &[("MEMCACHED_PORT_FILENAME", ports_file)],
        )
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

/// A PostgreSQL server in a fresh cluster of its own (`initdb` into a
/// scratch directory), with `fsync` off and `pg_stat_statements` loaded,
/// reached as the superuser `postgres` without a password. Commits are
/// synchronous, so a server killed and started again (a fault test) keeps
/// every committed row; only a crash of the machine could lose them.
///
/// PostgreSQL refuses to run as root: as root, the cluster belongs to the
/// Debian package's `postgres` user and the server runs as that user.
pub struct Postgres {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    process: Process,
}

/// Where Debian's `postgresql` package puts the server's programs: the
/// newest version's `bin`, or `PATH` on systems that put them there.
fn postgres_program(name: &str) -> String {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join(name).is_file())
        .max_by_key(|bin| {
            let version = bin.parent().and_then(|dir| dir.file_name());
            version
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
        });
    match newest {
        Some(bin) => bin.join(name).to_str().expect("UTF-8 path").to_owned(),
        None => name.to_owned(),
    }
}

/// The uid and gid of the `postgres` user when we are root (PostgreSQL
/// refuses root), `None` otherwise.
fn postgres_owner() -> Option<(u32, u32)> {
    let id = |flag: &str, name: &str| -> Option<u32> {
        let mut command = Command::new("id");
        command.arg(flag);
        if !name.is_empty() {
            command.arg(name);
        }
        let out = command.output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    if id("-u", "").is_some_and(|uid| uid != 0) {
        return None;
    }
    let owner = id("-u", "postgres").zip(id("-g", "postgres"));
    assert!(
        owner.is_some(),
        "running as root, and there is no `postgres` user to run PostgreSQL as: install \
         the Debian package `postgresql` (`apt-get install -y postgresql`)"
    );
    owner
}

impl Postgres {
    /// Makes a cluster and starts a server on a free port.
    pub fn start() -> Self {
        Self::start_with_tls(None)
    }

    /// Makes a cluster whose server speaks TLS (`ssl = on`) with the
    /// server certificate of `certificates`, and starts it.
    pub fn start_tls(certificates: &TestCertificates) -> Self {
        Self::start_with_tls(Some(certificates))
    }

    fn start_with_tls(certificates: Option<&TestCertificates>) -> Self {
        let owner = postgres_owner();
        let dir = scratch_dir("postgres");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the cluster dir");
        }
        let initdb = postgres_program("initdb");
        let mut command = Command::new(&initdb);
        if let Some((uid, gid)) = owner {
            use std::os::unix::process::CommandExt as _;
            command.uid(uid).gid(gid);
        }
        let output = command
            .args([
                "--no-sync",
                "--auth=trust",
                "--username=postgres",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&dir)
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run `{initdb}` ({error}): install the Debian package `postgresql` \
                     (`apt-get install -y postgresql`), or run the tests through \
                     `bash .ci/run`, which installs it"
                )
            });
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if let Some(certificates) = certificates {
            use std::os::unix::fs::PermissionsExt as _;
            for (from, to) in [
                (&certificates.server.0, "server.pem"),
                (&certificates.server.1, "server.key"),
            ] {
                let target = dir.join(to);
                std::fs::copy(from, &target).expect("copy the server certificate");
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
                    .expect("the key readable by its owner only");
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(&target, Some(uid), Some(gid)).expect("chown");
                }
            }
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.join("postgresql.conf"))
                .expect("open postgresql.conf");
            conf.write_all(
                b"ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n",
            )
            .expect("turn TLS on");
        }
        for _ in 0..PORT_TRIES {
            let port = free_port(0);
            if let Some(process) = Self::launch(&dir, port) {
                return Self { port, dir, process };
            }
        }
        panic!("postgres found every port it tried taken")
    }

    /// Starts the server again on its cluster and port, after
    /// [`Postgres::stop`]; fails the test if it cannot have the port.
    pub fn restart(&mut self) {
        // The killed server's backends notice their postmaster is gone and
        // leave within moments; until then a new one may refuse to start.
        for _ in 0..50 {
            if let Some(process) = Self::launch(&self.dir, self.port) {
                self.process = process;
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("postgres could not start again on port {}", self.port)
    }

    /// Starts `postgres` on `dir` and `port`; `None` when it exits instead.
    fn launch(dir: &Path, port: u16) -> Option<Process> {
        let dir_text = dir.to_str().expect("UTF-8 temp dir");
        let args: Vec<String> = [
            "-D",
            dir_text,
            "-p",
            &port.to_string(),
            "-h",
            "127.0.0.1",
            "-k",
            dir_text,
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=400",
            "-c",
            "shared_preload_libraries=pg_stat_statements",
            "-c",
            "pg_stat_statements.track_utility=off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut process = Process::spawn_as(
            &postgres_program("postgres"),
            "postgresql",
            &args,
            &[],
            postgres_owner(),
        );
        // The server's pid file names its pid and, once it accepts
        // connections, ends with `ready`.
        let pid_file = dir.join("postmaster.pid");
        let ours = process.pid.to_string();
        let started = wait_for("postgres", || {
            if process.exited() {
                return Startup::Exited;
            }
            let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
            let mut lines = text.lines();
            if lines.next() == Some(ours.as_str()) && text.contains("\nready") {
                Startup::Ready
            } else {
                Startup::Pending
            }
        });
        started.then_some(process)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// The PostgreSQL server shared by the tests of this binary.
pub fn shared_postgres() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}

/// A MariaDB server of its own, in a data directory of its own, speaking
/// TCP on a loopback port and on a socket in its directory; its `root`
/// needs no password, as the tests connect, and its database `sessions`
/// is made.
pub struct MariaDb {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    /// What `mariadbd` is given beside the data directory and the port.
    options: Vec<String>,
    process: Process,
}

impl MariaDb {
    /// Makes a data directory and starts a server on a free port.
    pub fn start() -> Self {
        Self::start_with(None, &[])
    }

    /// Makes a data directory and starts a server that speaks TLS with
    /// the server certificate of `certificates`.
    pub fn start_tls(certificates: &TestCertificates) -> Self {
        Self::start_with(Some(certificates), &[])
    }

    fn start_with(certificates: Option<&TestCertificates>, extra: &[&str]) -> Self {
        let dir = scratch_dir("mariadb");
        let data = dir.join("data");
        let install = "mariadb-install-db";
        let output = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
                // A redo log of 8 MB, not the 96 MB default: a test's data
                // directory stays small.
                "--innodb-log-file-size=8M",
            ])
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run `{install}` ({error}): install the Debian package \
                     `mariadb-server` (`apt-get install -y mariadb-server`), or run the \
                     tests through `bash .ci/run`, which installs it"
                )
            });
        assert!(
            output.status.success(),
            "{install} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut options: Vec<String> = extra.iter().map(|&option| option.to_owned()).collect();
        if let Some(certificates) = certificates {
            std::fs::copy(&certificates.server.0, dir.join("server.pem")).expect("copy");
            std::fs::copy(&certificates.server.1, dir.join("server.key")).expect("copy");
            std::fs::copy(&certificates.ca, dir.join("ca.pem")).expect("copy");
            for (option, file) in [
                ("ssl-cert", "server.pem"),
                ("ssl-key", "server.key"),
                ("ssl-ca", "ca.pem"),
            ] {
                options.push(format!("--{option}={}", dir.join(file).display()));
            }
        }
        for _ in 0..PORT_TRIES {
            let port = free_port(0);
            if let Some(process) = Self::launch(&dir, port, &options) {
                let server = Self {
                    port,
                    dir,
                    options,
                    process,
                };
                server.sql("CREATE DATABASE sessions");
                return server;
            }
        }
        panic!("mariadb found every port it tried taken")
    }

    /// Starts `mariadbd` on `dir` and `port`; `None` when it exits instead
    /// (another process has the port).
    fn launch(dir: &Path, port: u16, options: &[String]) -> Option<Process> {
        let socket = dir.join("socket");
        let mut args = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", dir.join("data").display()),
            format!("--socket={}", socket.display()),
            format!("--pid-file={}", dir.join("pid").display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--user=root".to_owned(),
            "--skip-log-bin".to_owned(),
            "--max-connections=400".to_owned(),
            // The tests need no durability across a crash of the machine.
            "--innodb-flush-log-at-trx-commit=0".to_owned(),
            "--innodb-doublewrite=0".to_owned(),
            "--innodb-buffer-pool-size=64M".to_owned(),
            "--innodb-log-file-size=8M".to_owned(),
            // What MariaDB 11.6.2 and later turn on by default (a locking
            // read of a row changed since the transaction's snapshot
            // fails): the tests run as on those versions.
            "--innodb-snapshot-isolation=ON".to_owned(),
        ];
        args.extend(options.iter().cloned());
        let mut process = Process::spawn("mariadbd", "mariadb-server", &args, &[]);
        // The server greets a client first; it listens on its socket (in
        // our own directory) and its port at once, when it is ready.
        let started = wait_for("mariadb", || {
            if process.exited() {
                return Startup::Exited;
            }
            let greeted =
                std::os::unix::net::UnixStream::connect(&socket).is_ok_and(|mut stream| {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    stream.read(&mut [0; 16]).is_ok_and(|read| read > 0)
                });
            if greeted {
                Startup::Ready
            } else {
                Startup::Pending
            }
        });
        started.then_some(process)
    }

    /// Runs `statements` as `root` with the `mariadb` client, over the
    /// server's socket; fails the test if they fail.
    pub fn sql(&self, statements: &str) {
        let output = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.dir.join("socket").display()))
            .args(["-uroot", "-e", statements])
            .output()
            .expect("the mariadb client runs (apt-get install mariadb-server)");
        assert!(
            output.status.success(),
            "{statements}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `mysql://root@127.0.0.1:PORT/sessions`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/sessions", self.port)
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts the server again on its data and port, after
    /// [`MariaDb::stop`]; fails the test if it cannot have the port.
    pub fn restart(&mut self) {
        for _ in 0..50 {
            if let Some(process) = Self::launch(&self.dir, self.port, &self.options) {
                self.process = process;
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("mariadb could not start again on port {}", self.port)
    }
}

/// The MariaDB server shared by the tests of this binary.
pub fn shared_mariadb() -> &'static MariaDb {
    static SERVER: OnceLock<MariaDb> = OnceLock::new();
    SERVER.get_or_init(MariaDb::start)
}

/// `sqlite://PATH` of a new database file in a scratch directory (created
/// on first use by the storage).
pub fn sqlite_url() -> String {
    let path = scratch_dir("sqlite").join("sessions.db");
    format!("sqlite://{}", path.to_str().expect("UTF-8 temp dir"))
}

/// The SQLite database shared by the tests of this binary, made (file,
/// write-ahead log and table) before any test opens it: SQLite answers
/// "database is locked" at once, without waiting, to connections opened
/// while another turns a new file to write-ahead logging.
pub fn shared_sqlite() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let url = sqlite_url();
        let made = url.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let storage = typed_sessions::SqliteStorage::connect(&made)
                    .await
                    .expect("the test database opens");
                storage.migrate().await.expect("the session table is made");
                storage.pool().close().await;
            });
        })
        .join()
        .expect("the test database is made");
        url
    })
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

/// A certificate authority the test makes with `openssl`, and a server
/// and a client certificate it signed: the server's for `127.0.0.1` and
/// `localhost`, the client's for client authentication. PEM files.
pub struct TestCertificates {
    /// The CA's certificate.
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server: (PathBuf, PathBuf),
    /// The client's certificate and key.
    pub client: (PathBuf, PathBuf),
}

impl TestCertificates {
    /// Makes a CA and its two certificates in a scratch directory.
    pub fn make() -> Self {
        let dir = scratch_dir("certificates");
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .expect("openssl runs (apt-get install openssl)");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &key,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=typed-sessions test CA",
                ],
            ]
            .concat(),
        );
        for (name, extensions) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("write extensions");
            openssl(
                &[
                    &["req"][..],
                    &key,
                    &[
                        "-keyout",
                        &format!("{name}.key"),
                        "-out",
                        &format!("{name}.csr"),
                        "-subj",
                        &format!("/CN={name}"),
                    ],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        Self {
            ca: dir.join("ca.pem"),
            server: (dir.join("server.pem"), dir.join("server.key")),
            client: (dir.join("client.pem"), dir.join("client.key")),
        }
    }
}

/// A `redis-server` that speaks TLS on `tls_port` with a certificate of a
/// CA the test made (and plaintext on `port`, which only the harness uses
/// to see it ready).
pub struct TlsRedis {
    /// The plaintext port.
    pub port: u16,
    /// The TLS port.
    pub tls_port: u16,
    /// The CA and certificates it uses.
    pub certificates: TestCertificates,
    _process: Process,
}

/// How far above its plaintext port a [`TlsRedis`] listens for TLS.
const TLS_PORT_OFFSET: u16 = 1000;

impl TlsRedis {
    /// Starts one; with `client_certificates`, it refuses clients that do
    /// not present a certificate of its CA (`tls-auth-clients yes`).
    pub fn start(client_certificates: bool) -> Self {
        let certificates = TestCertificates::make();
        let dir = scratch_dir("redis-tls");
        let (port, process) = launch_redis_on_a_free_port(TLS_PORT_OFFSET, |port| {
            let mut args = redis_args(&dir);
            for (flag, value) in [
                ("--tls-port", (port + TLS_PORT_OFFSET).to_string()),
                (
                    "--tls-cert-file",
                    certificates.server.0.display().to_string(),
                ),
                (
                    "--tls-key-file",
                    certificates.server.1.display().to_string(),
                ),
                ("--tls-ca-cert-file", certificates.ca.display().to_string()),
                (
                    "--tls-auth-clients",
                    if client_certificates { "yes" } else { "no" }.to_owned(),
                ),
            ] {
                args.push(flag.to_owned());
                args.push(value);
            }
            args
        });
        Self {
            port,
            tls_port: port + TLS_PORT_OFFSET,
            certificates,
            _process: process,
        }
    }

    /// Its TLS URL.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.tls_port)
    }
}

/// A Sentinel-managed Redis: a master, a replica of it, and three
/// Sentinels (`redis-server --sentinel`) that watch it as `mymaster` with
/// a quorum of two, and call it down after one second without an answer.
pub struct RedisSentinels {
    /// The master at start, until [`RedisSentinels::kill_master`].
    pub master: RedisServer,
    /// The replica at start, the master after a failover.
    pub replica: RedisServer,
    /// The Sentinels' ports.
    pub ports: Vec<u16>,
    /// With TLS: the certificates every server uses; the Sentinels, the
    /// master and the replica speak TLS 1000 ports above their own, and
    /// the Sentinels watch and name the TLS ports.
    pub certificates: Option<TestCertificates>,
    sentinels: Vec<Process>,
}

/// The name the Sentinels know the master by.
pub const SENTINEL_MASTER: &str = "mymaster";

impl RedisSentinels {
    /// Starts the group and waits until the replica is in sync and every
    /// Sentinel knows the replica and the two other Sentinels (so a
    /// failover can be agreed on).
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// [`RedisSentinels::start`], with every server speaking TLS too (see
    /// [`RedisSentinels::certificates`]).
    pub fn start_tls() -> Self {
        Self::start_with(Some(TestCertificates::make()))
    }

    fn start_with(certificates: Option<TestCertificates>) -> Self {
        let tls = certificates.is_some();
        let (master, replica) = match &certificates {
            None => {
                let master = RedisServer::start();
                let replica = RedisServer::start_replica_of(master.port);
                (master, replica)
            }
            Some(certificates) => {
                let master = RedisServer::start_tls(certificates, None);
                let replica = RedisServer::start_tls(certificates, Some(master.port));
                (master, replica)
            }
        };
        wait_until("the replica's sync", || {
            ask_all(replica.port, "INFO replication").contains("master_link_status:up")
        });
        let mut ports = Vec::new();
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let dir = scratch_dir("sentinel");
            let (port, process) = launch_sentinel(&dir, master.port, certificates.as_ref());
            ports.push(port);
            sentinels.push(process);
        }
        for &port in &ports {
            wait_until("the Sentinels' quorum", || {
                ask_sentinel(port, &format!("SENTINEL CKQUORUM {SENTINEL_MASTER}"))
                    .contains("3 usable Sentinels")
                    && ask_sentinel(port, &format!("SENTINEL REPLICAS {SENTINEL_MASTER}"))
                        .contains(&format!("\r\n{}\r\n", watched(replica.port, tls)))
            });
        }
        Self {
            master,
            replica,
            ports,
            certificates,
            sentinels,
        }
    }

    /// `redis://127.0.0.1:PORT` of each Sentinel, comma-separated; with
    /// TLS, `rediss://` and their TLS ports.
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|&port| match self.certificates {
                None => format!("redis://127.0.0.1:{port}"),
                Some(_) => format!("rediss://127.0.0.1:{}", port + TLS_PORT_OFFSET),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port the Sentinels name for the server on `port`: its own, or
    /// its TLS port.
    pub fn watched_port(&self, port: u16) -> u16 {
        watched(port, self.certificates.is_some())
    }

    /// The port of the master the first Sentinel that answers names (its
    /// TLS port, with TLS).
    pub fn master_port(&self) -> Option<u16> {
        self.ports.iter().find_map(|&port| {
            let answer = ask_sentinel(
                port,
                &format!("SENTINEL GET-MASTER-ADDR-BY-NAME {SENTINEL_MASTER}"),
            );
            // `*2 $9 127.0.0.1 $N PORT`: the port is the last line.
            answer
                .lines()
                .filter(|line| !line.starts_with(['*', '$', '+']))
                .nth(1)?
                .parse()
                .ok()
        })
    }

    /// Waits until the replica has every write the master acknowledged.
    pub fn wait_for_replication(&self) {
        let answer = ask_all(self.master.port, "WAIT 1 5000");
        assert_eq!(
            answer.lines().next(),
            Some(":1"),
            "the replica caught up: {answer}"
        );
    }

    /// Kills the master, as a crash would.
    pub fn kill_master(&mut self) {
        self.master.stop();
    }

    /// Waits until the Sentinels name the replica as the master; fails
    /// the test after 30 s.
    pub fn wait_for_failover(&self) {
        let replica = self.watched_port(self.replica.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.master_port() != Some(replica) {
            assert!(
                Instant::now() < deadline,
                "the Sentinels named no new master within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The Sentinels' pids, to signal them.
    pub fn sentinel_pids(&self) -> Vec<u32> {
        self.sentinels.iter().map(|sentinel| sentinel.pid).collect()
    }
}

/// The port Sentinels watch of the server on `port`.
fn watched(port: u16, tls: bool) -> u16 {
    if tls { port + TLS_PORT_OFFSET } else { port }
}

/// `redis-server`'s TLS options: `certificates`' server certificate on
/// `tls_port`, clients not asked for one.
fn tls_args(certificates: &TestCertificates, tls_port: u16) -> Vec<String> {
    [
        ("--tls-port", tls_port.to_string()),
        (
            "--tls-cert-file",
            certificates.server.0.display().to_string(),
        ),
        (
            "--tls-key-file",
            certificates.server.1.display().to_string(),
        ),
        ("--tls-ca-cert-file", certificates.ca.display().to_string()),
        ("--tls-auth-clients", "no".to_owned()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect()
}

/// Starts a Sentinel on a free port in `dir`, watching the master on
/// `master`: `redis-server sentinel.conf --sentinel`, with a configuration
/// file it may rewrite (Sentinels record what they learn in it). With
/// `certificates`, it also speaks TLS 1000 ports up, and talks TLS to the
/// master's TLS port and its replicas'.
fn launch_sentinel(
    dir: &Path,
    master: u16,
    certificates: Option<&TestCertificates>,
) -> (u16, Process) {
    for _ in 0..PORT_TRIES {
        let port = free_port(TLS_PORT_OFFSET);
        let conf = dir.join("sentinel.conf");
        let tls = match certificates {
            None => String::new(),
            Some(certificates) => format!(
                "tls-port {}\n\
                 tls-cert-file {}\n\
                 tls-key-file {}\n\
                 tls-ca-cert-file {}\n\
                 tls-auth-clients no\n\
                 tls-replication yes\n",
                port + TLS_PORT_OFFSET,
                certificates.server.0.display(),
                certificates.server.1.display(),
                certificates.ca.display()
            ),
        };
        std::fs::write(
            &conf,
            format!(
                "port {port}\n\
                 bind 127.0.0.1\n\
                 dir {}\n\
                 {tls}\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 5000\n\
                 sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                dir.display(),
                watched(master, certificates.is_some())
            ),
        )
        .expect("write sentinel.conf");
        let args = vec![
            conf.to_str().expect("UTF-8 temp dir").to_owned(),
            "--sentinel".to_owned(),
        ];
        let mut process = Process::spawn("redis-server", "redis-server", &args, &[]);
        let ours = format!("process_id:{}\r\n", process.pid);
        let started = wait_for("redis-sentinel", || {
            if process.exited() {
                Startup::Exited
            } else if ask_sentinel(port, "INFO server").contains(&ours) {
                Startup::Ready
            } else {
                Startup::Pending
            }
        });
        if started {
            return (port, process);
        }
    }
    panic!("redis-sentinel found every port it tried taken")
}

/// The Sentinel-managed Redis shared by the tests of this binary.
pub fn shared_redis_sentinels() -> &'static RedisSentinels {
    static SERVERS: OnceLock<RedisSentinels> = OnceLock::new();
    SERVERS.get_or_init(RedisSentinels::start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_server_whose_port_is_taken_moves_to_the_next() {
        let other_redis = RedisServer::start();
        let other_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = [
            other_redis.port,
            other_listener.local_addr().unwrap().port(),
        ];
        let (port, process) =
            launch_redis_on_the_first_free(taken.into_iter().chain([free_port(0)]), |_| {
                redis_args(&scratch_dir("redis"))
            });
        assert!(!taken.contains(&port), "started on a taken port {port}");
        assert!(
            ask_all(port, "INFO server").contains(&format!("process_id:{}\r\n", process.pid)),
            "another server answers on {port}"
        );
    }

    #[test]
    fn memcached_servers_get_ports_of_their_own() {
        let servers = [Memcached::start(), Memcached::start()];
        assert_ne!(servers[0].port, servers[1].port);
        for server in &servers {
            assert!(
                server
                    .stats()
                    .contains(&format!("STAT pid {}\r\n", server.process.pid)),
                "another server answers on {}",
                server.port
            );
        }
    }
}
