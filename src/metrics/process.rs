//! Process metrics (CPU time, memory, file descriptors, threads), read from
//! the operating system at each scrape.
//!
//! `metrics_process::Collector` records `process_cpu_seconds_total` through
//! the `metrics` facade, whose counters are `u64`: the CPU time reached
//! `/metrics` cut to whole seconds (0, then 2 after 3,000 requests), and
//! `rate()` over it was a staircase. The gauges still go through the
//! recorder; the CPU counter is rendered here, after the recorder's text, as
//! the revenue counter is ([`super::amount_counter`]), with the seconds the
//! operating system reports (clock ticks: 10 ms on Linux).

use std::fmt::Write as _;

use metrics::{Unit, describe_gauge, gauge};

use super::names;

/// HELP text of `process_cpu_seconds_total`, as other Prometheus clients
/// write it.
const CPU_HELP: &str = "Total user and system CPU time spent in seconds.";

/// Reads the process's metrics for the exporter, which holds it when
/// `Config::process_metrics` is on.
#[derive(Debug)]
pub(crate) struct ProcessMetrics(());

impl ProcessMetrics {
    /// Describe the gauges (HELP text and units) to the installed recorder.
    pub(crate) fn new() -> Self {
        describe_gauge!(
            names::PROCESS_OPEN_FDS,
            Unit::Count,
            "Number of open file descriptors."
        );
        describe_gauge!(
            names::PROCESS_MAX_FDS,
            Unit::Count,
            "Maximum number of open file descriptors."
        );
        describe_gauge!(
            names::PROCESS_VIRTUAL_MEMORY,
            Unit::Bytes,
            "Virtual memory size in bytes."
        );
        describe_gauge!(
            names::PROCESS_VIRTUAL_MEMORY_MAX,
            Unit::Bytes,
            "Maximum amount of virtual memory available in bytes."
        );
        describe_gauge!(
            names::PROCESS_RESIDENT_MEMORY,
            Unit::Bytes,
            "Resident memory size in bytes."
        );
        describe_gauge!(
            names::PROCESS_START_TIME,
            Unit::Seconds,
            "Start time of the process since unix epoch in seconds."
        );
        describe_gauge!(
            names::PROCESS_THREADS,
            Unit::Count,
            "Number of OS threads in the process."
        );
        Self(())
    }

    /// Read the process's metrics now: the gauges are set in the recorder,
    /// the CPU time is returned, to be rendered after the recorder's text.
    pub(crate) fn collect(&self) -> CpuTime {
        let m = metrics_process::collector::collect();
        let gauges = [
            (names::PROCESS_OPEN_FDS, m.open_fds),
            (names::PROCESS_MAX_FDS, m.max_fds),
            (names::PROCESS_VIRTUAL_MEMORY, m.virtual_memory_bytes),
            (
                names::PROCESS_VIRTUAL_MEMORY_MAX,
                m.virtual_memory_max_bytes,
            ),
            (names::PROCESS_RESIDENT_MEMORY, m.resident_memory_bytes),
            (names::PROCESS_START_TIME, m.start_time_seconds),
            (names::PROCESS_THREADS, m.threads),
        ];
        for (name, value) in gauges {
            if let Some(v) = value {
                gauge!(name).set(v as f64);
            }
        }
        CpuTime(m.cpu_seconds_total)
    }
}

/// The process's user and system CPU time in seconds, when the platform
/// reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTime(Option<f64>);

impl CpuTime {
    /// Append `process_cpu_seconds_total` (`# HELP`, `# TYPE … counter`, one
    /// sample with its fraction of a second) to `out`; `global_labels` is the
    /// pre-escaped `service="…",env="…"` run (may be empty). Nothing when
    /// the platform gives no CPU time.
    pub(crate) fn render(self, global_labels: &str, out: &mut String) {
        let Some(seconds) = self.0 else {
            return;
        };
        let name = names::PROCESS_CPU_SECONDS;
        let _ = writeln!(out, "# HELP {name} {CPU_HELP}");
        let _ = writeln!(out, "# TYPE {name} counter");
        out.push_str(name);
        if !global_labels.is_empty() {
            out.push('{');
            out.push_str(global_labels);
            out.push('}');
        }
        out.push(' ');
        super::amount_counter::push_value(seconds, out);
        out.push_str("\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(cpu: CpuTime, labels: &str) -> String {
        let mut out = String::new();
        cpu.render(labels, &mut out);
        out
    }

    #[test]
    fn cpu_seconds_render_as_a_counter_with_their_fraction_of_a_second() {
        assert_eq!(
            rendered(CpuTime(Some(0.37)), r#"service="s",env="dev""#),
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total{service=\"s\",env=\"dev\"} 0.37\n\n"
        );
        assert!(rendered(CpuTime(Some(2.0)), "").ends_with("\nprocess_cpu_seconds_total 2.0\n\n"));
        assert_eq!(rendered(CpuTime(None), "x=\"y\""), "");
    }

    #[test]
    fn collect_reads_the_cpu_time_of_this_process() {
        let CpuTime(seconds) = ProcessMetrics(()).collect();
        if cfg!(target_os = "linux") {
            assert!(seconds.is_some_and(|s| s.is_finite() && s >= 0.0));
        }
    }
}
