//! Criterion benchmarks: building tables, diffing them, looking up, and
//! fingerprinting; plus (printed, not timed) the memory a table and its build
//! take, and how evenly tables share slots and how few slots a removal moves.
//!
//! `cargo bench -p maglev` measures; `cargo bench -p maglev -- build/` runs
//! only the matching benchmarks. `cargo test` runs each benchmark once.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput};
use maglev::{Table, TableSize};

/// Criterion measurement of the benchmark thread's CPU time
/// (`CLOCK_THREAD_CPUTIME_ID`): on a machine shared with other builds, wall
/// time also counts the time the thread waited for a core; this does not.
struct CpuTime;

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec, and the clock id is a
    // constant the kernel always supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Formats CPU times as criterion formats wall times.
static DURATION_FORMAT: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        DURATION_FORMAT.formatter()
    }
}

/// SplitMix64, for reproducible inputs.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `n` backends `10.x.y.z:8080`.
fn addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080)))
        .collect()
}

fn equal(n: usize) -> Vec<(SocketAddr, u32)> {
    addrs(n).into_iter().map(|a| (a, 1)).collect()
}

/// Weights drawn from 1..=100 with a fixed seed.
fn weighted(n: usize) -> Vec<(SocketAddr, u32)> {
    let mut rng = Rng(42);
    addrs(n)
        .into_iter()
        .map(|a| (a, (rng.next_u64() % 100 + 1) as u32))
        .collect()
}

/// One backend of weight 1,000,000 among ones of weight 1.
fn one_heavy(n: usize) -> Vec<(SocketAddr, u32)> {
    addrs(n)
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a, if i == 0 { 1_000_000 } else { 1 }))
        .collect()
}

const SIZES: [u32; 2] = [65_537, 655_373];

/// Build times, in the measurement `M` (wall or CPU time), as group `name`.
fn build<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let mut g = c.benchmark_group(name);
    for m in SIZES {
        let size = TableSize::new(m).expect("prime");
        if m > 100_000 {
            g.sample_size(20).measurement_time(Duration::from_secs(4));
        }
        let cases = [
            ("equal", 10, equal(10)),
            ("equal", 100, equal(100)),
            ("equal", 1000, equal(1000)),
            ("weights-1..100", 1000, weighted(1000)),
            ("one-heavy", 1000, one_heavy(1000)),
        ];
        for (kind, n, set) in cases {
            let id = BenchmarkId::from_parameter(format!("M={m}/N={n}/{kind}"));
            g.bench_with_input(id, &set, |b, set| {
                b.iter(|| Table::build(size, black_box(set).iter().copied()).expect("valid"))
            });
        }
    }
    g.finish();
}

fn diff(c: &mut Criterion) {
    let mut g = c.benchmark_group("diff");
    for m in SIZES {
        let size = TableSize::new(m).expect("prime");
        let before = Table::build(size, equal(1000)).expect("valid");
        // Remove one backend of 1000: about M / 1000 slots change.
        let after = Table::build(size, equal(1000).into_iter().skip(1)).expect("valid");
        g.throughput(Throughput::Elements(u64::from(m)));
        g.bench_function(
            BenchmarkId::new("diff", format!("M={m}/N=1000/remove-one")),
            |b| {
                b.iter(|| {
                    black_box(&before)
                        .diff(black_box(&after))
                        .expect("same size")
                })
            },
        );
        g.bench_function(
            BenchmarkId::new("changed_slots", format!("M={m}/N=1000/remove-one")),
            |b| {
                b.iter(|| {
                    black_box(&before)
                        .changed_slots(black_box(&after))
                        .expect("same size")
                })
            },
        );
    }
    g.finish();
}

fn lookup_and_fingerprint(c: &mut Criterion) {
    let size = TableSize::DEFAULT;
    let table = Table::build(size, equal(1000)).expect("valid");
    let mut rng = Rng(7);
    let hashes: Vec<u64> = (0..4096).map(|_| rng.next_u64()).collect();
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(hashes.len() as u64));
    g.bench_function("M=65537/N=1000/4096-hashes", |b| {
        b.iter(|| {
            hashes
                .iter()
                .map(|&h| table.lookup_index(black_box(h)).unwrap_or(0))
                .fold(0u32, u32::wrapping_add)
        })
    });
    g.finish();
    c.bench_function("fingerprint/M=65537/N=1000", |b| {
        b.iter(|| black_box(&table).fingerprint())
    });
}

/// Not timed: bytes of each table and of its build's working set.
fn memory() {
    println!("memory: case, table heap bytes, build scratch bytes (besides the table)");
    for m in SIZES {
        let size = TableSize::new(m).expect("prime");
        for (kind, set) in [
            ("equal", equal(10)),
            ("equal", equal(100)),
            ("equal", equal(1000)),
            ("weights-1..100", weighted(1000)),
            ("one-heavy", one_heavy(1000)),
        ] {
            let n = set.len();
            let t = Table::build(size, set).expect("valid");
            println!(
                "memory/M={m}/N={n}/{kind}: table {} B, build scratch {} B",
                t.heap_bytes(),
                t.build_scratch_bytes()
            );
        }
    }
}

/// Not timed: how far slot counts are from their ideal share, and how many
/// slots move on removing one backend, beyond that backend's own.
fn quality() {
    let size = TableSize::DEFAULT;
    let m = size.get();
    println!("quality/M={m}: worst |slots - ideal|, and worst extra slots moved removing one (of 10 tried)");
    for (kind, set) in [
        ("equal", equal(10)),
        ("equal", equal(100)),
        ("equal", equal(1000)),
        ("weights-1..100", weighted(100)),
        ("weights-1..100", weighted(1000)),
    ] {
        let n = set.len();
        let table = Table::build(size, set.iter().copied()).expect("valid");
        let total: f64 = set.iter().map(|&(_, w)| f64::from(w)).sum();
        let worst_share = table
            .backends()
            .iter()
            .map(|b| (f64::from(b.slots()) - f64::from(m) * f64::from(b.weight()) / total).abs())
            .fold(0.0, f64::max);
        let worst_extra = (0..n)
            .step_by(n / 10)
            .map(|r| {
                let mut rest = set.clone();
                let (gone, _) = rest.remove(r);
                let after = Table::build(size, rest).expect("valid");
                let own = table
                    .backends()
                    .iter()
                    .find(|b| *b.key() == gone)
                    .map_or(0, |b| b.slots());
                table.changed_slots(&after).expect("same size") - own as usize
            })
            .max()
            .unwrap_or(0);
        println!(
            "quality/M={m}/N={n}/{kind}: share off by {worst_share:.2} slots; extra moved {worst_extra} ({:.2}% of M)",
            100.0 * worst_extra as f64 / f64::from(m)
        );
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    memory();
    if measuring {
        quality();
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    build(&mut c, "build");
    diff(&mut c);
    lookup_and_fingerprint(&mut c);
    c.final_summary();
    let mut cpu = Criterion::default()
        .with_measurement(CpuTime)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    build(&mut cpu, "build-cpu");
    cpu.final_summary();
}
