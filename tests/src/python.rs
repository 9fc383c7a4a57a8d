//! The real aiohttp_session, in Python, beside the Rust apps: a small
//! aiohttp app (`tests/python/aiohttp_app.py`) on its storages, run from a
//! virtual environment with the pinned packages of
//! `tests/python/requirements.txt`.
//!
//! The environment is `tests/python/.venv`; `.ci/run` makes it, and the
//! first test that needs it makes it when it is missing (`python3 -m venv`,
//! then `pip install`, which needs PyPI). A missing `python3` fails the
//! test with what to install; nothing is skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use reqwest::{Method, redirect};
use serde_json::json;

use crate::Reply;

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The virtual environment's interpreter, made on first use if missing.
pub fn venv_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = python_dir().join(".venv");
        let python = venv.join("bin").join("python");
        if !python.is_file() {
            let run = |command: &mut Command, what: &str| {
                let status = command.status().unwrap_or_else(|error| {
                    panic!("cannot run {what}: {error}; install python3 and python3-venv")
                });
                assert!(
                    status.success(),
                    "{what} failed ({status}); install python3-venv, or run `bash .ci/run`"
                );
            };
            run(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "python3 -m venv",
            );
            run(
                Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", "-r"])
                    .arg(python_dir().join("requirements.txt")),
                "pip install -r tests/python/requirements.txt",
            );
        }
        python
    })
}

/// The Python app, served on a loopback port for one test; ended when
/// dropped.
pub struct PythonApp {
    base: String,
    client: reqwest::Client,
    cookie_name: String,
    process: Child,
}

impl PythonApp {
    /// Starts the app with `env` (the conformance app's variables:
    /// `SESSION_STORE`, `SESSION_SECRET`, ...) and its clock at `now`.
    pub fn start(env: &[(&str, String)], now: u64) -> Self {
        let mut process = Command::new(venv_python())
            .arg(python_dir().join("aiohttp_app.py"))
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .env("FAKE_NOW", now.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python app");
        let mut line = String::new();
        BufReader::new(process.stdout.take().expect("its stdout"))
            .read_line(&mut line)
            .expect("the Python app prints where it listens");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the Python app printed {line:?}"))
            .to_owned();
        let cookie_name = env
            .iter()
            .find(|(name, _)| *name == "SESSION_COOKIE_NAME")
            .map_or_else(|| "AIOHTTP_SESSION".to_owned(), |(_, value)| value.clone());
        Self {
            base,
            client: reqwest::Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .expect("http client"),
            cookie_name,
            process,
        }
    }

    /// Sends a request with `cookie` as the session cookie's value, byte
    /// for byte as a browser sends back what it was given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("{}={cookie}", self.cookie_name));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("the Python app answers");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.expect("a body"),
            cookie_name: self.cookie_name.clone(),
        }
    }

    /// Sets the time aiohttp_session and Fernet read, in Unix seconds.
    pub async fn set_time(&self, now: u64) {
        let body = json!({ "now": now }).to_string();
        let reply = self.send(Method::POST, "/_clock", None, Some(&body)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

impl Drop for PythonApp {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
