//! Load: a closed-loop pass finds what a target sustains, then an open-loop run sends requests
//! at a constant rate (wrk2-style), each timed from its scheduled time, so a stall is charged
//! to every request it delays (no coordinated omission).

use std::time::{Duration, Instant};

use super::http::agent;

/// How long a closed-loop pass lasts.
pub const CALIBRATION_WINDOW: Duration = Duration::from_millis(1500);
/// The share of the closed-loop throughput an open-loop run is scheduled at, unless a scenario
/// says otherwise.
pub const LOAD: f64 = 0.75;

/// Closed loop for [`CALIBRATION_WINDOW`] over `conns` connections (agents with `timeout`), at
/// most `cap` requests per connection: requests per second. `send(agent, connection, n)` sends
/// that connection's `n`-th request and waits for its answer.
pub fn closed_loop_rate(
    conns: usize,
    cap: usize,
    timeout: Duration,
    send: impl Fn(&ureq::Agent, usize, usize) + Sync,
) -> f64 {
    let start = Instant::now();
    let send = &send;
    let done: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                s.spawn(move || {
                    let a = agent(timeout);
                    let mut n = 0;
                    while start.elapsed() < CALIBRATION_WINDOW && n < cap {
                        send(&a, c, n);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    done as f64 / start.elapsed().as_secs_f64()
}

/// What to schedule a run at: `load` of a closed-loop throughput, one request a second at least.
pub fn scheduled_rate(closed_loop: f64, load: f64) -> f64 {
    (closed_loop * load).max(1.0)
}

/// A first closed-loop pass (over at most 4 connections) that warms up the isolate, the
/// connections and the caches, then one over `conns`; the rate to schedule ([`LOAD`] of the
/// second). `pass(conns)` is one closed-loop pass, in requests per second.
pub fn warm_then_rate(conns: usize, pass: impl Fn(usize) -> f64) -> f64 {
    let _ = pass(conns.min(4));
    scheduled_rate(pass(conns), LOAD)
}

/// Open loop: `total` requests at `rate` per second; request `i` is scheduled `i / rate` after
/// the start and goes over connection `i % conns` (an agent with `timeout` per connection).
/// `one(agent, i, scheduled)` sends request `i` once its time has come and makes its sample.
/// The samples, connection by connection, and the seconds from the first scheduled time to the
/// last answer.
pub fn open_loop<S: Send>(
    conns: usize,
    total: usize,
    rate: f64,
    timeout: Duration,
    one: impl Fn(&ureq::Agent, usize, Instant) -> S + Sync,
) -> (Vec<S>, f64) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let one = &one;
    let samples: Vec<S> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                s.spawn(move || {
                    let a = agent(timeout);
                    let mut out = Vec::new();
                    let mut i = c;
                    while i < total {
                        let scheduled = start + interval * i as u32;
                        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        out.push(one(&a, i, scheduled));
                        i += conns;
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).flatten().collect()
    });
    (samples, start.elapsed().as_secs_f64())
}

/// Runs that take turns: `rounds` runs of each of `count` targets, in order in even rounds and
/// in reverse in odd ones (a, b, b, a, a, b, …), so that a slow spell of the machine falls on
/// all of them alike. `run(i)` is one run of target `i`; its runs, target by target.
pub fn alternate<R>(count: usize, rounds: usize, mut run: impl FnMut(usize) -> R) -> Vec<Vec<R>> {
    let mut runs: Vec<Vec<R>> = (0..count).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..count).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            runs[i].push(run(i));
        }
    }
    runs
}
