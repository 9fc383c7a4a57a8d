//! A TCP proxy that puts a network between the benchmarked apps and their
//! stores: every chunk it reads is written on `DELAY` later, each way, in
//! order, without holding back the chunks behind it (a pipelined client
//! still has many requests in flight, as it would on a real link).
//!
//! ```text
//! latency-proxy --delay 250us LISTEN=TARGET [LISTEN=TARGET ...]
//! latency-proxy --delay 250us 127.0.0.1:16379=127.0.0.1:6379
//! ```
//!
//! Prints `ready` once every listener is bound.
//!
//! Each direction of a connection is a reader thread that stamps each chunk
//! with its deadline (read time + delay) and queues it, and a writer thread
//! that sleeps until the head's deadline and writes it. Threads, not tokio
//! tasks: tokio's timer counts in whole milliseconds, so a 250 µs sleep
//! there lasts 1 to 2 ms; `std::thread::sleep` is a nanosleep, late by the
//! thread's timer slack (50 µs by default on Linux), which the writers set to
//! 1 µs, and by the wake-up itself (some 30 µs on a busy machine), which
//! each writer measures and sleeps that much less. The connections are few
//! (the apps' pools), so four threads each cost nothing that matters.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut delay = Duration::ZERO;
    let mut routes = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--delay" {
            let text = args
                .next()
                .unwrap_or_else(|| usage("--delay needs a value"));
            delay = parse_delay(&text).unwrap_or_else(|| usage(&format!("bad delay {text:?}")));
        } else if let Some((listen, target)) = arg.split_once('=') {
            routes.push((listen.to_owned(), target.to_owned()));
        } else {
            usage(&format!("unexpected argument {arg:?}"));
        }
    }
    if routes.is_empty() {
        usage("no LISTEN=TARGET given");
    }
    let listeners: Vec<_> = routes
        .into_iter()
        .map(|(listen, target)| {
            let listener =
                TcpListener::bind(&listen).unwrap_or_else(|error| panic!("bind {listen}: {error}"));
            (listener, target)
        })
        .collect();
    println!("ready");
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(listener, target)| thread::spawn(move || accept(listener, target, delay)))
        .collect();
    for thread in accepting {
        let _ = thread.join();
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "latency-proxy: {problem}\nusage: latency-proxy --delay 250us LISTEN=TARGET [LISTEN=TARGET ...]"
    );
    std::process::exit(2);
}

/// `250us`, `250µs`, `0.25ms`, `1ms`, `0`.
fn parse_delay(text: &str) -> Option<Duration> {
    let (number, micros_per_unit) =
        if let Some(number) = text.strip_suffix("us").or(text.strip_suffix("µs")) {
            (number, 1.0)
        } else if let Some(number) = text.strip_suffix("ms") {
            (number, 1000.0)
        } else if text == "0" {
            ("0", 1.0)
        } else {
            return None;
        };
    let micros = number.parse::<f64>().ok()? * micros_per_unit;
    (micros >= 0.0).then(|| Duration::from_nanos((micros * 1000.0) as u64))
}

fn accept(listener: TcpListener, target: String, delay: Duration) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let target = target.clone();
        thread::spawn(move || {
            let Ok(server) = TcpStream::connect(&target) else {
                eprintln!("latency-proxy: cannot reach {target}");
                return;
            };
            // Small requests go out at once, as the apps' own sockets send them.
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(client_side), Ok(server_side)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            let upstream = thread::spawn(move || forward(client, server, delay));
            forward(server_side, client_side, delay);
            let _ = upstream.join();
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read. Returns when
/// `from` ends (then `to` is shut for writing once everything before the end
/// is written) or either side fails (then both are shut).
fn forward(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (queue, chunks) = mpsc::channel::<(Instant, Vec<u8>)>();
    let Ok(from_again) = from.try_clone() else {
        return;
    };
    let writer = thread::spawn(move || {
        precise_sleeps();
        // How late this thread's sleeps end, the median of the recent ones
        // (a step towards each: one preempted sleep moves it by a step, not
        // by its millisecond). A sleep asks for that much less, so writes
        // land around their deadlines rather than all after them.
        let mut lateness = Duration::ZERO;
        let step = Duration::from_micros(1);
        for (deadline, chunk) in chunks {
            let now = Instant::now();
            if deadline > now + lateness {
                let asked = deadline - now - lateness;
                thread::sleep(asked);
                if Instant::now() > now + asked + lateness {
                    lateness += step;
                } else {
                    lateness = lateness.saturating_sub(step);
                }
            }
            if to.write_all(&chunk).is_err() {
                let _ = to.shutdown(Shutdown::Both);
                let _ = from_again.shutdown(Shutdown::Both);
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                if queue
                    .send((Instant::now() + delay, buffer[..read].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(queue);
    let _ = writer.join();
}

/// Lowers this thread's timer slack from Linux's default 50 µs to 1 µs, so
/// a sleep ends close to when it was asked to.
fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only the
    // calling thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong);
    }
}
