//! Tests of the self-telemetry counters and their Prometheus and OTLP forms.

use super::*;

#[test]
fn events_count() {
    let m = SelfMon::new();
    m.record(SelfEvent::SpansReceived(10));
    m.record(SelfEvent::BatchSent {
        kind: SignalKind::Traces,
        items: 7,
    });
    m.record(SelfEvent::BatchFailed {
        kind: SignalKind::Traces,
        items: 2,
        reason: DropReason::Rejected,
    });
    m.record(SelfEvent::Dropped {
        kind: SignalKind::Traces,
        items: 1,
        reason: DropReason::QueueFull,
        whole_batch: true,
    });
    m.record(SelfEvent::Dropped {
        kind: SignalKind::Metrics,
        items: 3,
        reason: DropReason::SeriesLimit,
        whole_batch: false,
    });
    m.record(SelfEvent::Retry);
    m.set_shard_stats(ShardStats {
        shard: 1,
        queue_drops: 4,
        ..Default::default()
    });
    m.set_shard_stats(ShardStats {
        shard: 1,
        queue_drops: 5,
        ..Default::default()
    });
    m.set_kernel_stats(vec![CpuKernelStats {
        cpu: 0,
        seen: 9,
        emitted: 8,
        dropped: 1,
        ..Default::default()
    }]);
    let s = m.snapshot();
    assert_eq!(
        (s.spans_received, s.spans_exported, s.spans_dropped_total()),
        (10, 7, 3)
    );
    assert_eq!(s.points_dropped_total(), 3);
    assert_eq!(
        (
            s.batches_sent,
            s.batches_failed,
            s.batches_dropped,
            s.retries
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(s.shards.len(), 1);
    assert_eq!(s.queue_dropped_total(), 5);
    assert_eq!(s.kernel_dropped_total(), 1);

    let text = render_prometheus(&families(&s));
    assert!(
        text.contains("# TYPE telegen_kernel_events_dropped_total counter\n"),
        "{text}"
    );
    assert!(text.contains("telegen_kernel_events_dropped_total{cpu=\"0\"} 1\n"));
    assert!(text.contains("telegen_shard_queue_drops_total{shard=\"1\"} 5\n"));
    assert!(text.contains("telegen_export_spans_dropped_total{reason=\"rejected\"} 2\n"));
    assert!(text.contains("telegen_export_spans_dropped_total{reason=\"queue_full\"} 1\n"));
    assert!(text.contains("# HELP telegen_export_spans_received_total "));
    assert!(text.contains("telegen_export_spans_received_total 10\n"));
    assert!(text.contains("# TYPE telegen_shard_flows_active gauge\n"));
}

#[test]
fn otlp_sums() {
    let m = SelfMon::new();
    m.record(SelfEvent::SpansReceived(3));
    let ms = otlp_metrics(&families(&m.snapshot()), 1, 2);
    let recv = ms
        .iter()
        .find(|m| m.name == "telegen_export_spans_received");
    assert!(recv.is_some());
    assert!(ms.iter().all(|m| !m.name.ends_with("_total")));
    // no kernel source => no kernel family
    assert!(!ms.iter().any(|m| m.name.starts_with("telegen_kernel")));
}

#[test]
fn program_figures_appear_once_the_kernel_counted_a_run() {
    let m = SelfMon::new();
    let prog = |name: &str, runs, run_ns| ProgramStats {
        name: name.into(),
        run_ns,
        runs,
    };
    // Statistics off (the default): every figure is zero, and none is shown.
    m.set_program_stats(vec![
        prog("tg_exit_read", 0, 0),
        prog("tg_enter_close", 0, 0),
    ]);
    let text = render_prometheus(&families(&m.snapshot()));
    assert!(!text.contains("telegen_kernel_program"), "{text}");
    // On: each program's runs and time, the latest reading replacing the one before.
    m.set_program_stats(vec![
        prog("tg_exit_read", 3, 450),
        prog("tg_enter_close", 0, 0),
    ]);
    m.set_program_stats(vec![
        prog("tg_exit_read", 5, 700),
        prog("tg_enter_close", 2, 90),
    ]);
    let text = render_prometheus(&families(&m.snapshot()));
    for line in [
        "# TYPE telegen_kernel_program_runs_total counter\n",
        "telegen_kernel_program_runs_total{program=\"tg_exit_read\"} 5\n",
        "telegen_kernel_program_runs_total{program=\"tg_enter_close\"} 2\n",
        "telegen_kernel_program_run_nanoseconds_total{program=\"tg_exit_read\"} 700\n",
        "telegen_kernel_program_run_nanoseconds_total{program=\"tg_enter_close\"} 90\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[test]
fn label_escaping() {
    assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}
