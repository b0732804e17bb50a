//! The points measured, and the table: both systems' medians side by side,
//! the ratio, the floor, the other figures, and each goal of issue 11 with
//! whether this run meets it.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::figures::{median_ms, FirstCall};
use crate::measure::{median, Sample};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum System {
    Srpc,
    Grpc,
    Direct,
}

impl System {
    pub fn parse(name: &str) -> Option<System> {
        match name {
            "srpc" => Some(System::Srpc),
            "grpc" => Some(System::Grpc),
            "direct" => Some(System::Direct),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            System::Srpc => "sRPC",
            System::Grpc => "gRPC",
            System::Direct => "direct",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Point {
    pub payload: usize,
    pub in_flight: usize,
    pub connections: usize,
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = match self.payload {
            n if n >= 1 << 20 => format!("{} MiB", n >> 20),
            n if n >= 1 << 10 => format!("{} KiB", n >> 10),
            n => format!("{n} B"),
        };
        write!(
            f,
            "{size}, {} in flight, {} conn",
            self.in_flight, self.connections
        )
    }
}

const fn point(payload: usize, in_flight: usize, connections: usize) -> Point {
    Point {
        payload,
        in_flight,
        connections,
    }
}

/// The side-by-side points: 1, 16 and 64 in flight on one connection, 64 over
/// 8 connections; 64-byte and 64 KiB payloads.
pub const POINTS: [Point; 8] = [
    point(64, 1, 1),
    point(64, 16, 1),
    point(64, 64, 1),
    point(64, 64, 8),
    point(64 << 10, 1, 1),
    point(64 << 10, 16, 1),
    point(64 << 10, 64, 1),
    point(64 << 10, 64, 8),
];

/// Bulk: 1 MiB appends, 4 in flight on one connection, for MB/s.
pub const APPEND: Point = point(1 << 20, 4, 1);

pub struct Report {
    rounds: usize,
    window: Duration,
    samples: HashMap<(System, Point), Vec<Sample>>,
    pub first_calls: Vec<FirstCall>,
    pub worker_rss_kib: Vec<u64>,
    pub worker_private_kib: Vec<u64>,
    pub handler_rss_kib: Vec<u64>,
    pub handler_private_kib: Vec<u64>,
    pub front_kib_per_connection: f64,
}

/// Medians over the rounds of one system at one point.
#[derive(Clone, Copy)]
struct Figures {
    calls_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

#[allow(clippy::cast_precision_loss)]
fn kib_to_mib(kib: f64) -> f64 {
    kib / 1024.0
}

impl Report {
    pub fn new(rounds: usize, window: Duration) -> Report {
        Report {
            rounds,
            window,
            samples: HashMap::new(),
            first_calls: Vec::new(),
            worker_rss_kib: Vec::new(),
            worker_private_kib: Vec::new(),
            handler_rss_kib: Vec::new(),
            handler_private_kib: Vec::new(),
            front_kib_per_connection: f64::NAN,
        }
    }

    pub fn add(&mut self, system: System, point: &Point, sample: Sample) {
        self.samples
            .entry((system, *point))
            .or_default()
            .push(sample);
    }

    fn figures(&self, system: System, point: &Point) -> Figures {
        let samples = self
            .samples
            .get(&(system, *point))
            .map_or(&[][..], Vec::as_slice);
        let of = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        Figures {
            calls_per_sec: of(&Sample::calls_per_sec),
            p50_us: of(&|s| s.percentile_us(50)),
            p99_us: of(&|s| s.percentile_us(99)),
        }
    }

    pub fn print(&self) {
        let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        println!();
        println!(
            "echo over TLS 1.3 (rustls, ring) on 127.0.0.1, closed loop; medians of {} rounds of {:.1} s \
             each, systems alternating; {cores} cores shared by client and servers",
            self.rounds,
            self.window.as_secs_f64()
        );
        println!("sRPC: client → srpc-front → worker → handler; gRPC: tonic 0.14 client → tonic server (defaults);");
        println!("direct: the echo handler on a Unix socket, no TLS (the floor)");
        println!();
        println!(
            "{:<28}| {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} | {:>9} | {:>9} {:>8}",
            "point",
            "sRPC /s",
            "p50 µs",
            "p99 µs",
            "gRPC /s",
            "p50 µs",
            "p99 µs",
            "sRPC/gRPC",
            "direct /s",
            "p50 µs"
        );
        for p in POINTS.iter().chain([&APPEND]) {
            let (s, g, d) = (
                self.figures(System::Srpc, p),
                self.figures(System::Grpc, p),
                self.figures(System::Direct, p),
            );
            println!(
                "{:<28}| {:>9.0} {:>8.1} {:>8.1} | {:>9.0} {:>8.1} {:>8.1} | {:>9.2} | {:>9.0} {:>8.1}",
                p.to_string(),
                s.calls_per_sec,
                s.p50_us,
                s.p99_us,
                g.calls_per_sec,
                g.p50_us,
                g.p99_us,
                s.calls_per_sec / g.calls_per_sec,
                d.calls_per_sec,
                d.p50_us
            );
        }
        let mbps = |sys| {
            #[allow(clippy::cast_precision_loss)]
            let bytes = APPEND.payload as f64;
            self.figures(sys, &APPEND).calls_per_sec * bytes / 1e6
        };
        println!();
        println!(
            "1 MiB appends ({} in flight, echoed back): sRPC {:.0} MB/s, gRPC {:.0} MB/s, direct {:.0} MB/s",
            APPEND.in_flight,
            mbps(System::Srpc),
            mbps(System::Grpc),
            mbps(System::Direct)
        );
        let first = median_ms(self.first_calls.iter().map(|f| f.total));
        let pam = median_ms(self.first_calls.iter().map(|f| f.pam));
        println!(
            "a new user's first call (dial, PAM, attach, worker and handler start, call): {first:.1} ms; \
             PAM alone {pam:.1} ms (medians of {})",
            self.first_calls.len()
        );
        #[allow(clippy::cast_precision_loss)]
        let of = |v: &[u64]| median(v.iter().map(|&k| k as f64).collect());
        let (worker, handler) = (of(&self.worker_rss_kib), of(&self.handler_rss_kib));
        println!(
            "RSS: idle worker {:.2} MiB ({:.2} MiB its own), idle per-user handler (echo) {:.2} MiB \
             ({:.2} MiB its own), front {:.1} KiB per idle authenticated connection",
            kib_to_mib(worker),
            kib_to_mib(of(&self.worker_private_kib)),
            kib_to_mib(handler),
            kib_to_mib(of(&self.handler_private_kib)),
            self.front_kib_per_connection
        );
        println!(
            "  (its own: Private_Clean + Private_Dirty; the rest of RSS is the binary's and libc's \
             pages, shared by every worker)"
        );
        self.print_goals(first - pam, worker, handler);
    }

    fn print_goals(&self, first_over_pam_ms: f64, worker_kib: f64, _handler_kib: f64) {
        let ratio = |p: &Point| {
            self.figures(System::Srpc, p).calls_per_sec
                / self.figures(System::Grpc, p).calls_per_sec
        };
        let one = |sys| self.figures(sys, &POINTS[0]).p50_us;
        let mbps = {
            #[allow(clippy::cast_precision_loss)]
            let bytes = APPEND.payload as f64;
            self.figures(System::Srpc, &APPEND).calls_per_sec * bytes / 1e9
        };
        let goals: Vec<(String, bool)> = vec![
            (
                format!(
                    "sRPC/gRPC ≥ 1.2 at 16 in flight, 64 B: {:.2}",
                    ratio(&POINTS[1])
                ),
                ratio(&POINTS[1]) >= 1.2,
            ),
            (
                format!(
                    "sRPC/gRPC ≥ 1.2 at 64 in flight, 64 B: {:.2}",
                    ratio(&POINTS[2])
                ),
                ratio(&POINTS[2]) >= 1.2,
            ),
            (
                format!(
                    "sRPC/gRPC ≥ 1.0 at 64 in flight over 8 connections, 64 B: {:.2}",
                    ratio(&POINTS[3])
                ),
                ratio(&POINTS[3]) >= 1.0,
            ),
            (
                format!(
                    "sRPC/gRPC ≥ 1.0 at 64 KiB: {:.2} / {:.2} / {:.2} / {:.2} (1, 16, 64, 64×8)",
                    ratio(&POINTS[4]),
                    ratio(&POINTS[5]),
                    ratio(&POINTS[6]),
                    ratio(&POINTS[7])
                ),
                POINTS[4..].iter().all(|p| ratio(p) >= 1.0),
            ),
            (
                format!(
                    "p50 at 1 in flight ≤ gRPC's + one direct round trip: {:.1} ≤ {:.1} + {:.1} µs",
                    one(System::Srpc),
                    one(System::Grpc),
                    one(System::Direct)
                ),
                one(System::Srpc) <= one(System::Grpc) + one(System::Direct),
            ),
            (
                format!("first call ≤ PAM + 30 ms: PAM + {first_over_pam_ms:.1} ms"),
                first_over_pam_ms <= 30.0,
            ),
            (
                format!("idle worker ≤ 4 MiB RSS: {:.2} MiB", kib_to_mib(worker_kib)),
                worker_kib <= 4096.0,
            ),
            (
                format!(
                    "front ≤ 64 KiB per idle authenticated connection: {:.1} KiB",
                    self.front_kib_per_connection
                ),
                self.front_kib_per_connection <= 64.0,
            ),
            (
                format!("1 MiB append ≥ 1 GB/s through the whole path: {mbps:.2} GB/s"),
                mbps >= 1.0,
            ),
        ];
        println!();
        println!("goals (issue 11), this run:");
        for (what, met) in goals {
            println!("  {} {what}", if met { "met   " } else { "MISSED" });
        }
    }
}
