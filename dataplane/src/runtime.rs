//! The threads: one pinned glommio executor per shard core, one export thread.
//!
//! Each shard drains the per-CPU rings assigned to it (CPU `k` goes to shard `k % n`) every
//! [`DEFAULT_DRAIN_INTERVAL_MS`], or every millisecond while busy (`BUSY_RECORDS_PER_MS`), and
//! at once after a cycle that took that long;
//! the kernel side writes without wakeups, except that a ring filling past its threshold wakes
//! its shard early (`RingWaiter`). It exchanges records and child spans with the other shards
//! over a full mesh of bounded `rtrb` SPSC queues, and sends its spans (protobuf-encoded on the
//! shard, in chunks the export core hands back: see [`crate::signal::SpanChunk`]), metric deltas and its
//! counters to the export core over one more SPSC queue.
//! The only shared state is the stop flag, read once per tick, never per event.
//!
//! Records normally come from the kernel's per-CPU rings; [`start_with_sources`] gives each shard
//! a [`RecordSource`] instead (the `perf/` harness feeds generated ring records that way, through
//! exactly the same shard, mesh and export path).
//!
//! Shutdown is ordered so nothing in flight is lost: the caller detaches the kernel programs
//! first; then every shard drains its rings and inbound queues, all shards meet at a barrier,
//! finish their flows (which may forward child spans), meet again, take in those last messages,
//! and flush; only then is the export core told to stop, and it drains its queues and sends.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::Duration;

use telegen_bpf::{CpuRing, RingBufferBuilder};

use crate::export::{
    run_export_core_recycling, ExportConfig, ExportError, ExportReport, KernelStatsSource,
    ResourceResolver, StopHandle,
};
use crate::shard::{ShardConfig, ShardCore, ShardMsg};
use crate::signal::ShardStats;
use crate::spans::{monotonic_now_ns, monotonic_to_unix_offset};

mod mesh;
use mesh::{MeshIo, FINAL_SEND_WAIT, MAX_CHUNKS};

/// Errors starting or stopping the data plane.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no shard cores given")]
    NoShards,
    #[error("core {core} does not exist (this machine has cores {available})")]
    NoSuchCore { core: usize, available: String },
    #[error("shard core {core} is listed twice")]
    DuplicateCore { core: usize },
    #[error("starting shard {shard} on core {core}: {reason}")]
    Spawn {
        shard: usize,
        core: usize,
        reason: String,
    },
    #[error("shard {shard} failed: {reason}")]
    Shard { shard: usize, reason: String },
    #[error("export core: {0}")]
    Export(#[from] ExportError),
    #[error("export thread panicked")]
    ExportPanicked,
}

/// How the data plane is laid out.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// One shard per listed core.
    pub shard_cores: Vec<usize>,
    /// Core the export thread is pinned to (`None`: not pinned).
    pub export_core: Option<usize>,
    /// Template for every shard (id and count are filled in).
    pub shard: ShardConfig,
    /// Capacity of each shard-to-shard queue, in messages.
    pub mesh_capacity: usize,
    /// Capacity of each shard-to-export queue, in messages.
    pub export_capacity: usize,
    /// How often a shard drains its rings.
    pub tick: Duration,
}

/// Milliseconds between two drains of the rings by a busy shard, and between two takes of the
/// shard queues by a busy export core. Each is a wake-up of the thread (about 12 us of CPU
/// each, measured on an idle agent), paid on every core the agent runs on however light the
/// traffic. 4 ms costs less agent CPU per request under nginx+wrk than 1 ms (see the README).
/// A ring that fills past half (or 1 MiB) before the interval is up wakes its shard at once
/// (`RingWaiter`), so a longer interval does not need larger rings.
pub const DEFAULT_DRAIN_INTERVAL_MS: u64 = 4;

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            shard_cores: vec![0],
            export_core: None,
            shard: ShardConfig::new(0, 1),
            mesh_capacity: 1 << 16,
            export_capacity: 1 << 16,
            tick: Duration::from_millis(DEFAULT_DRAIN_INTERVAL_MS),
        }
    }
}

/// The cores this process may run on.
pub fn available_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

fn describe(cores: &[usize]) -> String {
    match (cores.first(), cores.last()) {
        (Some(a), Some(b)) if cores.len() == b - a + 1 => format!("{a}-{b}"),
        _ => cores
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Check a layout against the machine.
pub fn validate_cores(
    shard_cores: &[usize],
    export_core: Option<usize>,
) -> Result<(), RuntimeError> {
    if shard_cores.is_empty() {
        return Err(RuntimeError::NoShards);
    }
    let avail = available_cores();
    for (i, &c) in shard_cores.iter().chain(export_core.iter()).enumerate() {
        if !avail.contains(&c) {
            return Err(RuntimeError::NoSuchCore {
                core: c,
                available: describe(&avail),
            });
        }
        if i < shard_cores.len() && shard_cores[..i].contains(&c) {
            return Err(RuntimeError::DuplicateCore { core: c });
        }
    }
    Ok(())
}

/// A running data plane.
#[derive(Debug)]
pub struct Dataplane {
    shards: Vec<JoinHandle<Result<ShardStats, RuntimeError>>>,
    export: JoinHandle<Result<ExportReport, ExportError>>,
    stop: Arc<AtomicBool>,
    export_stop: StopHandle,
}

/// What the data plane did, returned at stop.
#[derive(Debug, Clone)]
pub struct FinalReport {
    pub shards: Vec<ShardStats>,
    pub export: ExportReport,
}

/// A user-space producer of ring records for one shard, drained on the shard's tick instead of
/// (or in addition to nothing but) kernel rings. Used by benchmarks and the `perf/` harness.
pub trait RecordSource: Send + 'static {
    /// Hand every record available now (each one exactly as the kernel would have written it:
    /// an encoded `abi::Event` header followed by its payload) to `sink`; return how many.
    /// Called once per tick on the shard's thread; must not block.
    fn drain(&mut self, sink: &mut dyn FnMut(&[u8])) -> usize;
}

/// Where one shard's records come from.
enum Source {
    /// The kernel rings of the CPUs this shard drains.
    Rings(Vec<CpuRing>),
    /// A user-space source (see [`RecordSource`]).
    Feed(Box<dyn RecordSource>),
}

/// Start shards and the export core, with kernel ring `k` drained by shard `k % n`.
pub fn start(
    cfg: RuntimeConfig,
    rings: Vec<CpuRing>,
    export_cfg: ExportConfig,
    resolver: Box<dyn ResourceResolver>,
    kstats: Option<Box<dyn KernelStatsSource>>,
) -> Result<Dataplane, RuntimeError> {
    validate_cores(&cfg.shard_cores, cfg.export_core)?;
    let n = cfg.shard_cores.len();
    let mut per_shard_rings: Vec<Vec<CpuRing>> = (0..n).map(|_| Vec::new()).collect();
    for r in rings {
        per_shard_rings[r.cpu as usize % n].push(r);
    }
    let sources = per_shard_rings.into_iter().map(Source::Rings).collect();
    start_inner(cfg, sources, export_cfg, resolver, kstats)
}

/// Start shards and the export core with one user-space [`RecordSource`] per shard (index =
/// shard id) instead of kernel rings. Everything after the source is the production path.
pub fn start_with_sources(
    cfg: RuntimeConfig,
    sources: Vec<Box<dyn RecordSource>>,
    export_cfg: ExportConfig,
    resolver: Box<dyn ResourceResolver>,
    kstats: Option<Box<dyn KernelStatsSource>>,
) -> Result<Dataplane, RuntimeError> {
    validate_cores(&cfg.shard_cores, cfg.export_core)?;
    if sources.len() != cfg.shard_cores.len() {
        return Err(RuntimeError::Spawn {
            shard: sources.len(),
            core: 0,
            reason: format!(
                "{} record sources for {} shards (one each expected)",
                sources.len(),
                cfg.shard_cores.len()
            ),
        });
    }
    let sources = sources.into_iter().map(Source::Feed).collect();
    start_inner(cfg, sources, export_cfg, resolver, kstats)
}

fn start_inner(
    cfg: RuntimeConfig,
    sources: Vec<Source>,
    export_cfg: ExportConfig,
    resolver: Box<dyn ResourceResolver>,
    kstats: Option<Box<dyn KernelStatsSource>>,
) -> Result<Dataplane, RuntimeError> {
    let n = cfg.shard_cores.len();

    // Full mesh: inbound[j][i] is the consumer at j of the queue i -> j.
    let mut outbound: Vec<Vec<Option<rtrb::Producer<ShardMsg>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut inbound: Vec<Vec<rtrb::Consumer<ShardMsg>>> = (0..n).map(|_| Vec::new()).collect();
    for (i, out) in outbound.iter_mut().enumerate() {
        for (j, slot) in out.iter_mut().enumerate() {
            if i != j {
                let (p, c) = rtrb::RingBuffer::new(cfg.mesh_capacity);
                *slot = Some(p);
                inbound[j].push(c);
            }
        }
    }
    let mut export_consumers = Vec::with_capacity(n);
    let mut export_producers = Vec::with_capacity(n);
    let mut recycle_producers = Vec::with_capacity(n);
    let mut recycle_consumers = Vec::with_capacity(n);
    for _ in 0..n {
        let (p, c) = rtrb::RingBuffer::new(cfg.export_capacity);
        export_producers.push(p);
        export_consumers.push(c);
        // Room for every chunk a shard can have, so none is ever freed for want of room.
        let (p, c) = rtrb::RingBuffer::new(MAX_CHUNKS);
        recycle_producers.push(Some(p));
        recycle_consumers.push(c);
    }

    let export_stop = StopHandle::new();
    let export_core = cfg.export_core;
    let es = export_stop.clone();
    let export = std::thread::Builder::new()
        .name("telegen-export".into())
        .spawn(move || {
            if let Some(c) = export_core {
                core_affinity::set_for_current(core_affinity::CoreId { id: c });
            }
            run_export_core_recycling(
                export_cfg,
                export_consumers,
                recycle_producers,
                resolver,
                kstats,
                es,
            )
        })
        .map_err(|e| RuntimeError::Spawn {
            shard: n,
            core: export_core.unwrap_or(0),
            reason: e.to_string(),
        })?;

    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(n));
    let marks = Arc::new(DrainMarks::new(n));
    let offset = monotonic_to_unix_offset();
    let mut shards = Vec::with_capacity(n);
    for (id, (((out, inb), (exp, source)), recycled)) in outbound
        .into_iter()
        .zip(inbound)
        .zip(export_producers.into_iter().zip(sources))
        .zip(recycle_consumers)
        .enumerate()
    {
        let core = cfg.shard_cores[id];
        let mut scfg = cfg.shard.clone();
        scfg.id = id;
        scfg.shards = n;
        let stop = stop.clone();
        let barrier = barrier.clone();
        let marks = marks.clone();
        let tick = cfg.tick;
        let handle = std::thread::Builder::new()
            .name(format!("telegen-shard{id}"))
            .spawn(move || -> Result<ShardStats, RuntimeError> {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    log::warn!("shard {id}: could not pin to core {core}; running unpinned");
                }
                // Shards do no file I/O: keep glommio's registered I/O buffers (10 MiB by
                // default, pinned) and ring small.
                let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                    .name(&format!("shard{id}"))
                    .io_memory(256 << 10)
                    .ring_depth(32)
                    .spawn(move || async move {
                        let io = MeshIo::new(out, exp, recycled);
                        run_shard(
                            ShardCore::new(scfg, offset),
                            io,
                            inb,
                            source,
                            Coordination {
                                stop,
                                barrier,
                                marks,
                            },
                            tick,
                        )
                        .await
                    })
                    .map_err(|e| RuntimeError::Spawn {
                        shard: id,
                        core,
                        reason: e.to_string(),
                    })?;
                ex.join().map_err(|e| RuntimeError::Shard {
                    shard: id,
                    reason: e.to_string(),
                })?
            })
            .map_err(|e| RuntimeError::Spawn {
                shard: id,
                core,
                reason: e.to_string(),
            })?;
        shards.push(handle);
    }
    Ok(Dataplane {
        shards,
        export,
        stop,
        export_stop,
    })
}

/// Slack added to the drain watermark before a missing record is given up on: covers a record
/// whose sequence number was taken before, but whose ring submission landed after, its successor's.
const WATERMARK_MARGIN_NS: u64 = 2_000_000;

/// Per shard, the start time of its last completed ring-drain cycle (monotonic ns): every record
/// the kernel submitted to its rings before then has been drained and forwarded. One cache line
/// each; written once per cycle.
pub(crate) struct DrainMarks(Vec<Mark>);

#[repr(align(128))]
struct Mark(AtomicU64);

impl DrainMarks {
    pub(crate) fn new(n: usize) -> Self {
        Self((0..n).map(|_| Mark(AtomicU64::new(0))).collect())
    }

    fn publish(&self, shard: usize, at_ns: u64) {
        self.0[shard].0.store(at_ns, Ordering::Release);
    }

    /// Every shard has drained what was submitted before this time.
    fn min(&self) -> u64 {
        self.0
            .iter()
            .map(|m| m.0.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }
}

/// What the shards share: the stop flag, the shutdown barrier and the drain marks.
struct Coordination {
    stop: Arc<AtomicBool>,
    barrier: Arc<Barrier>,
    marks: Arc<DrainMarks>,
}

/// Longest pause of an idle shard, in ticks.
const IDLE_PAUSE_MAX: u32 = 16;

/// The pause of a shard between two cycles: a sleep, which a ring of the shard's ends early when
/// the kernel finds it filling. The programs write without waking anyone, except when a ring
/// holds more than the loader's `wakeup_bytes` (half the ring at most): then they force a wakeup
/// of the ring's waiters. The rings are registered edge-triggered, so a wakeup ends one pause
/// only; level-triggered (as libbpf's own epoll set is), every pause would end at once while
/// any record sat in a ring, and a loaded shard would spin.
struct RingWaiter {
    epoll: Option<std::os::fd::OwnedFd>,
}

impl RingWaiter {
    fn new(rings: &[CpuRing]) -> std::io::Result<Self> {
        use std::os::fd::{AsFd, AsRawFd, FromRawFd};
        if rings.is_empty() {
            return Ok(Self { epoll: None });
        }
        // SAFETY: plain syscalls on descriptors this function owns or borrows; the new
        // descriptor is owned by the OwnedFd from here on.
        let epoll = unsafe {
            let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::os::fd::OwnedFd::from_raw_fd(fd)
        };
        for r in rings {
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                u64: u64::from(r.cpu),
            };
            let fd = r.map.as_fd().as_raw_fd();
            // SAFETY: both descriptors are open for the duration of the call.
            let rc =
                unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Self { epoll: Some(epoll) })
    }

    fn pause(&self, d: Duration) {
        use std::os::fd::AsRawFd;
        let Some(epoll) = &self.epoll else {
            std::thread::sleep(d);
            return;
        };
        let ms = i32::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: `events` outlives the call and its length is passed. An error (EINTR) only
        // ends this pause early.
        unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            )
        };
    }
}

/// Records per millisecond (over the last cycle) above which a shard pauses at most
/// [`BUSY_PAUSE`] whatever the drain interval. At such rates a wake-up costs little next to the
/// records it drains, and a longer pause makes each cycle's batch larger, which costs more per
/// record: more of a connection's records wait in the reorder for one that sits in a ring
/// drained later in the same cycle, and the batch no longer stays in cache (the synthetic
/// HTTP/1.1 phase did about a fifth fewer transactions per shard-CPU-second at 4 ms than at 1).
const BUSY_RECORDS_PER_MS: u64 = 64;
const BUSY_PAUSE: Duration = Duration::from_millis(1);

/// The pause after a cycle that drained `drained` records `since_last_ns` after the previous
/// cycle started.
fn busy_pause(pause: Duration, drained: usize, since_last_ns: u64) -> Duration {
    if drained as u64 * 1_000_000 >= BUSY_RECORDS_PER_MS * since_last_ns.max(1) {
        pause.min(BUSY_PAUSE)
    } else {
        pause
    }
}

/// What is left of `pause` after a cycle that took `cycle_ns`: cycles start a pause apart, not a
/// pause after the previous one ended. A shard whose cycle took the whole pause (its records
/// come in as fast as it processes them) starts the next one at once: a full pause after every
/// cycle left it idle with records waiting, about 13% of the time at a million HTTP/1.1
/// transactions a second in the synthetic phase, where no ring wake-up ends a pause early.
fn pause_left(pause: Duration, cycle_ns: u64) -> Duration {
    pause.saturating_sub(Duration::from_nanos(cycle_ns))
}

/// Cycles without work a loop still runs every tick before it starts backing off: a busy
/// pipeline often has a cycle or two with nothing to do, and must not pay a longer pause for it.
const IDLE_CYCLES_BEFORE_BACKOFF: u32 = 16;

/// The pause before each cycle of a polling loop: the tick while there is work, and after
/// [`IDLE_CYCLES_BEFORE_BACKOFF`] cycles without any, doubling up to `max` (an idle loop does not
/// wake every tick for nothing); the first cycle that finds work returns to the tick.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    tick: Duration,
    max: Duration,
    idle_cycles: u32,
}

impl Backoff {
    pub(crate) fn new(tick: Duration, max: Duration) -> Self {
        Self {
            tick,
            max: max.max(tick),
            idle_cycles: 0,
        }
    }

    pub(crate) fn next(&mut self, worked: bool) -> Duration {
        if worked {
            self.idle_cycles = 0;
            return self.tick;
        }
        self.idle_cycles = self.idle_cycles.saturating_add(1);
        let doublings = self.idle_cycles.saturating_sub(IDLE_CYCLES_BEFORE_BACKOFF);
        let pause = self.tick.saturating_mul(1u32 << doublings.min(16));
        pause.min(self.max)
    }
}

async fn run_shard(
    core: ShardCore,
    io: MeshIo,
    mut inbound: Vec<rtrb::Consumer<ShardMsg>>,
    source: Source,
    coord: Coordination,
    tick: Duration,
) -> Result<ShardStats, RuntimeError> {
    let Coordination {
        stop,
        barrier,
        marks,
    } = coord;
    let id = core.id();
    let core = RefCell::new(core);
    let io = RefCell::new(io);
    let now = std::cell::Cell::new(monotonic_now_ns());
    let (rings, feed) = match source {
        Source::Rings(r) => (r, None),
        Source::Feed(f) => (Vec::new(), Some(RefCell::new(f))),
    };
    let rb = if rings.is_empty() {
        None
    } else {
        let mut b = RingBufferBuilder::new();
        for r in &rings {
            b.add(&r.map, |rec: &[u8]| {
                // Never panics: decoding is fallible and counted inside.
                core.borrow_mut()
                    .on_record(rec, now.get(), &mut *io.borrow_mut());
                0
            })
            .map_err(|e| RuntimeError::Shard {
                shard: id,
                reason: format!("ring of CPU {}: {e}", r.cpu),
            })?;
        }
        Some(b.build().map_err(|e| RuntimeError::Shard {
            shard: id,
            reason: e.to_string(),
        })?)
    };
    let waiter = RingWaiter::new(&rings).map_err(|e| RuntimeError::Shard {
        shard: id,
        reason: format!("epoll on the rings: {e}"),
    })?;
    // Records drained (kernel rings and user-space feed).
    let drain_rings = || -> usize {
        let mut n = 0;
        if let Some(rb) = &rb {
            // Returns the number of records consumed, or a negative errno.
            let rc = rb.consume_raw();
            if rc < 0 {
                log::warn!(
                    "shard {id}: ring consume failed: {}",
                    std::io::Error::from_raw_os_error(-rc)
                );
            } else {
                n += rc as usize;
            }
        }
        if let Some(feed) = &feed {
            n += feed.borrow_mut().drain(&mut |rec: &[u8]| {
                core.borrow_mut()
                    .on_record(rec, now.get(), &mut *io.borrow_mut());
            });
        }
        n
    };
    let drain_inbound = |inbound: &mut Vec<rtrb::Consumer<ShardMsg>>| {
        let mut any = false;
        for c in inbound.iter_mut() {
            while let Ok(m) = c.pop() {
                any = true;
                core.borrow_mut()
                    .on_message(m, now.get(), &mut *io.borrow_mut());
            }
        }
        any
    };
    // Cycle length, for the watermark margin: a record drained in a cycle is stamped with the
    // cycle's start but may have been submitted up to a cycle later.
    let mut longest_cycle = 0u64;
    let mut backoff = Backoff::new(tick, tick * IDLE_PAUSE_MAX);
    let mut last_start = monotonic_now_ns();
    loop {
        now.set(monotonic_now_ns());
        let since_last = now.get().saturating_sub(last_start);
        last_start = now.get();
        let stopping = stop.load(Ordering::Acquire);
        let drained = drain_rings();
        // Everything submitted to our rings before `now` is drained and forwarded: publish it,
        // then read everyone's mark *before* draining the inbound queues, so every forward made
        // before a peer's mark is in the queues we drain next.
        marks.publish(id, now.get());
        let drained_before = marks.min();
        let received = drain_inbound(&mut inbound);
        let end = monotonic_now_ns();
        longest_cycle = longest_cycle.max(end.saturating_sub(now.get()));
        let margin = 2 * longest_cycle + WATERMARK_MARGIN_NS;
        core.borrow_mut().tick_at(
            now.get(),
            drained_before.saturating_sub(margin),
            &mut *io.borrow_mut(),
        );
        // Let the longest cycle seen fade, so one slow cycle does not slow loss detection forever.
        longest_cycle -= longest_cycle / 64;
        if stopping {
            break;
        }
        // An idle shard backs off (up to IDLE_PAUSE_MAX ticks) instead of waking every tick.
        let pause = busy_pause(backoff.next(drained > 0 || received), drained, since_last);
        // A plain blocking wait: nothing else runs on this executor, and glommio's io_uring
        // timer (submit, wait, cancel) cost about 5x more CPU per wake-up here (about 60 us
        // against 12 us, measured with `perf record` on an idle agent).
        let left = pause_left(pause, monotonic_now_ns().saturating_sub(now.get()));
        if !left.is_zero() {
            waiter.pause(left);
        }
    }
    // Ordered shutdown (see module docs). Blocking at a barrier is fine here: nothing else runs
    // on this executor.
    drain_rings();
    drain_inbound(&mut inbound);
    barrier.wait();
    drain_inbound(&mut inbound);
    barrier.wait();
    core.borrow_mut().stop(&mut *io.borrow_mut());
    barrier.wait();
    while drain_inbound(&mut inbound) {}
    core.borrow_mut().stop(&mut *io.borrow_mut());
    let mut stats = core.borrow().stats();
    let unsent = io.borrow_mut().finish(FINAL_SEND_WAIT);
    if unsent > 0 {
        log::warn!("shard {id}: {unsent} spans not sent: the export queue stayed full");
        stats.spans_emitted -= unsent;
        stats.export_queue_drops += unsent;
    }
    Ok(stats)
}

impl Dataplane {
    /// Stop shards (after the caller detached the kernel side), then the export core.
    pub fn stop(self) -> Result<FinalReport, RuntimeError> {
        self.stop.store(true, Ordering::Release);
        let mut shards = Vec::new();
        let mut first_err = None;
        for (i, h) in self.shards.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(s)) => shards.push(s),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(RuntimeError::Shard {
                        shard: i,
                        reason: "panicked".into(),
                    });
                }
            }
        }
        self.export_stop.stop();
        let export = self
            .export
            .join()
            .map_err(|_| RuntimeError::ExportPanicked)??;
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(FinalReport { shards, export })
    }

    /// True once every thread has exited (e.g. after a fatal error).
    pub fn finished(&self) -> bool {
        self.export.is_finished() || self.shards.iter().any(|h| h.is_finished())
    }
}

#[cfg(test)]
mod pause_tests {
    use super::*;

    #[test]
    fn a_busy_shard_pauses_at_most_a_millisecond() {
        let tick = Duration::from_millis(4);
        // 100 records over the 4 ms since the last cycle: 25 per ms, the interval holds.
        assert_eq!(busy_pause(tick, 100, 4_000_000), tick);
        // 1,000 records in 4 ms: 250 per ms, a 1 ms pause.
        assert_eq!(busy_pause(tick, 1000, 4_000_000), BUSY_PAUSE);
        // Never longer than asked: a 1 ms interval stays 1 ms; an idle backoff is untouched.
        assert_eq!(busy_pause(BUSY_PAUSE, 1000, 1_000_000), BUSY_PAUSE);
        assert_eq!(busy_pause(tick * 8, 0, 32_000_000), tick * 8);
    }

    #[test]
    fn cycles_start_a_pause_apart() {
        let ms = Duration::from_millis(1);
        assert_eq!(pause_left(ms, 0), ms);
        assert_eq!(pause_left(ms, 300_000), Duration::from_micros(700));
        // A cycle as long as the pause, or longer: the next starts at once.
        assert_eq!(pause_left(ms, 1_000_000), Duration::ZERO);
        assert_eq!(pause_left(ms, 7_000_000), Duration::ZERO);
        // An idle backoff keeps what the cycle did not use of it.
        assert_eq!(
            pause_left(ms * 16, 50_000),
            ms * 16 - Duration::from_micros(50)
        );
    }

    #[test]
    fn only_a_loop_idle_for_a_while_backs_off_and_work_resets_it() {
        let tick = Duration::from_millis(1);
        let mut b = Backoff::new(tick, Duration::from_millis(16));
        let idle: Vec<u128> = (0..IDLE_CYCLES_BEFORE_BACKOFF + 6)
            .map(|_| b.next(false).as_millis())
            .collect();
        let (steady, backing_off) = idle.split_at(IDLE_CYCLES_BEFORE_BACKOFF as usize);
        assert!(steady.iter().all(|&p| p == 1), "{idle:?}");
        assert_eq!(backing_off, [2, 4, 8, 16, 16, 16]);
        assert_eq!(b.next(true), tick);
        // A busy loop with the odd empty cycle keeps the tick.
        for i in 0..100 {
            assert_eq!(b.next(i % 3 != 0), tick);
        }
    }
}
