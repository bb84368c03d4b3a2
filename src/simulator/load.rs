//! `switchboard loadtest`: many simulated Twilio calls at once against one server, to measure
//! what a machine can carry. Each of `calls` slots places the script's call again and again
//! (slot `i` starts `ramp × i / calls` into the run) until `ramp + duration` has passed; the
//! calls in flight then finish. All calls share one HTTP client and one copy of the script's
//! audio, and each costs one task, so the generator stays small beside the server it loads.
//!
//! What it reports, from the callers' side: calls completed and failed (with why),
//! voice-to-voice latency per reply (end of the caller's speech to the first agent audio,
//! as the phone heard it), the runtime's overhead (that latency less `baseline_ms`: the
//! emulated providers' latencies and the endpointing silence), and outbound audio gaps.
//! From the server's `/metrics` (which it reads from its own `/proc`), sampled every second:
//! live calls, resident memory and CPU seconds, and the inbound frame lag histogram.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use secrecy::SecretString;
use serde::Serialize;
use tokio::time::Instant;

use super::{http_client, place_call, CallReport, CallScript, Outcome, SimulatorConfig};
use super::{PreparedTurn, SimulatorError};

/// How often the server's `/metrics` is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often a progress line goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Calls driven by one task, on one frame clock: one wake-up of the task sends a frame on
/// each of them, where a task per call woke once per frame of every call.
const SLOTS_PER_TASK: usize = 50;
/// A phone line's frame period.
const FRAME: Duration = Duration::from_millis(20);
/// Samples with at least this share of the peak live calls count as full load.
const FULL_LOAD: f64 = 0.9;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Base URL of the server.
    pub server: String,
    /// The number called (the tenant's number routing to its agent).
    pub to: String,
    /// Concurrent calls at full load.
    pub calls: usize,
    /// Time over which the calls are started.
    pub ramp: Duration,
    /// Time full load is held after the ramp.
    pub duration: Duration,
    /// Subtracted from each voice-to-voice latency to give the runtime's overhead.
    pub baseline_ms: u64,
    /// Where the server's Prometheus metrics are.
    pub metrics_url: String,
    /// The Twilio auth token the server checks signatures with.
    pub auth_token: SecretString,
}

/// The caller number of the run's `n`th call: every call is a new customer, as most calls
/// to a business line are, so the server's memory shows what calls cost rather than the
/// history of a few customers calling back every minute. Numbers repeat after 8,000,000.
pub fn caller_number(n: u64) -> String {
    format!("+1555{:07}", 2_000_000 + n % 8_000_000)
}

/// p50, p95, p99 and the largest, in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples behind the figures.
    pub count: usize,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of `values` (sorted here).
    pub fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        let rank = |p: f64| -> u64 {
            if values.is_empty() {
                return 0;
            }
            let index = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[index]
        };
        Self {
            count: values.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: values.last().copied().unwrap_or(0),
        }
    }
}

/// One reading of the server's metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_s: f64,
    /// `switchboard_calls_live`.
    pub live_calls: f64,
    /// `switchboard_process_resident_memory_bytes`.
    pub resident_bytes: f64,
    /// `switchboard_process_cpu_seconds`.
    pub cpu_seconds: f64,
    /// Cumulative `switchboard_audio_inbound_lag_seconds` buckets: (upper bound, count).
    #[serde(skip)]
    pub lag_buckets: Vec<(f64, f64)>,
}

/// What a load run found.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Concurrent calls asked for.
    pub calls: usize,
    /// The ramp and the full-load time, in seconds.
    pub ramp_s: f64,
    /// Full-load time, in seconds.
    pub duration_s: f64,
    /// Wall time of the whole run, in seconds.
    pub elapsed_s: f64,
    /// Calls that streamed and got a reply to every line.
    pub completed: u64,
    /// Calls that did not, by reason.
    pub failed: u64,
    /// Why calls failed, with how many each.
    pub failures: BTreeMap<String, u64>,
    /// Voice-to-voice latency of every reply to a caller line, as the caller heard it.
    pub voice_to_voice_ms: Percentiles,
    /// Subtracted from voice-to-voice to give the overhead.
    pub baseline_ms: u64,
    /// The runtime's own share: voice-to-voice less `baseline_ms`.
    pub overhead_ms: Percentiles,
    /// Times a caller heard silence inside an agent sentence, and their total length.
    pub outbound_gaps: u64,
    /// Total length of those silences.
    pub outbound_gap_ms: u64,
    /// p99 of the server's inbound frame lag (worst per second of a call's audio): the
    /// upper bound of the histogram bucket it falls in; none when no call sent audio.
    pub inbound_lag_p99_ms: Option<f64>,
    /// Most calls live at once, as the server counted them.
    pub peak_live_calls: f64,
    /// Server CPU seconds spent per minute of call, over the whole run.
    pub cpu_seconds_per_call_minute: Option<f64>,
    /// Server resident memory added per live call at full load (median over the samples),
    /// in KiB.
    pub resident_kib_per_live_call: Option<f64>,
    /// Server resident memory at the first and last full-load sample, in MiB: flat when the
    /// server keeps nothing per finished call.
    pub resident_mib_full_load_first: Option<f64>,
    /// See `resident_mib_full_load_first`.
    pub resident_mib_full_load_last: Option<f64>,
    /// Every metrics reading, in order.
    pub samples: Vec<Sample>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The plan or script is unusable.
    #[error(transparent)]
    Simulator(#[from] SimulatorError),
    /// `calls` is zero.
    #[error("--calls must be at least 1")]
    NoCalls,
    /// The server's metrics could not be read before the run.
    #[error("cannot read the server's metrics at {url}: {problem}")]
    Metrics {
        /// The metrics URL.
        url: String,
        /// What failed.
        problem: String,
    },
}

/// What one slot saw.
#[derive(Default)]
struct SlotResult {
    completed: u64,
    failures: BTreeMap<String, u64>,
    voice_to_voice: Vec<u64>,
    gaps: u64,
    gap_ms: u64,
}

/// Counters for the progress line.
#[derive(Default)]
struct Progress {
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
}

/// Runs the plan with `script` as every call's conversation; `progress` gets a line every
/// few seconds.
pub async fn run(
    plan: &LoadPlan,
    script: &CallScript,
    progress: impl Fn(&str) + Send + Sync + 'static,
) -> Result<LoadReport, LoadError> {
    if plan.calls == 0 {
        return Err(LoadError::NoCalls);
    }
    let turns: Arc<[PreparedTurn]> = script.prepare().map_err(SimulatorError::from)?.into();
    let client = http_client()?;
    let begun = Instant::now();
    let first = read_metrics(&client, &plan.metrics_url, 0.0)
        .await
        .map_err(|problem| LoadError::Metrics {
            url: plan.metrics_url.clone(),
            problem,
        })?;

    let shared = Arc::new(Shared {
        stop_starting: begun + plan.ramp + plan.duration,
        plan: plan.clone(),
        script: script.clone(),
        turns,
        client: client.clone(),
        counters: Progress::default(),
    });
    let groups = plan.calls.div_ceil(SLOTS_PER_TASK);
    let tasks: Vec<_> = (0..groups)
        .map(|group| {
            // Each group's frames go out together; the groups' moments are spread over
            // the 20 ms so the server is not sent every call's frame at once.
            let frame_clock = begun + FRAME.mul_f64(group as f64 / groups as f64);
            let slots = group * SLOTS_PER_TASK..plan.calls.min((group + 1) * SLOTS_PER_TASK);
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let calls = shared.plan.calls;
                let ramp = shared.plan.ramp;
                slots
                    .map(|slot| {
                        let start_at = begun + ramp.mul_f64(slot as f64 / calls as f64);
                        run_slot(&shared, start_at, frame_clock)
                    })
                    .collect::<FuturesUnordered<_>>()
                    .collect::<Vec<SlotResult>>()
                    .await
            })
        })
        .collect();

    let (stop_sampling, mut sampling_stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = {
        let client = client.clone();
        let url = plan.metrics_url.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut samples = vec![first];
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_progress = Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut sampling_stopped => return samples,
                }
                let t = begun.elapsed().as_secs_f64();
                if let Ok(sample) = read_metrics(&client, &url, t).await {
                    samples.push(sample);
                }
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = Instant::now();
                    let live = samples.last().map_or(0.0, |s| s.live_calls);
                    let counters = &shared.counters;
                    progress(&format!(
                        "{t:>6.0} s  live {live:>5.0}  started {:>6}  completed {:>6}  failed {:>4}",
                        counters.started.load(Ordering::Relaxed),
                        counters.completed.load(Ordering::Relaxed),
                        counters.failed.load(Ordering::Relaxed),
                    ));
                }
            }
        })
    };

    let mut total = SlotResult::default();
    for task in tasks {
        // A task only ends by returning; a panic there is a bug worth a failure line.
        let results = task.await.unwrap_or_else(|e| {
            vec![SlotResult {
                failures: BTreeMap::from([(format!("the load generator failed: {e}"), 1)]),
                ..SlotResult::default()
            }]
        });
        for result in results {
            total.completed += result.completed;
            for (reason, n) in result.failures {
                *total.failures.entry(reason).or_default() += n;
            }
            total.voice_to_voice.extend(result.voice_to_voice);
            total.gaps += result.gaps;
            total.gap_ms += result.gap_ms;
        }
    }
    // One more reading after the last call, so CPU and the lag histogram cover all of them.
    tokio::time::sleep(SAMPLE_EVERY).await;
    let _ = stop_sampling.send(());
    let mut samples = sampler.await.unwrap_or_default();
    let last = read_metrics(&client, &plan.metrics_url, begun.elapsed().as_secs_f64()).await;
    samples.extend(last.ok());
    Ok(summarize(plan, total, samples, begun.elapsed()))
}

/// What every slot of a run shares.
struct Shared {
    /// No call is placed after this.
    stop_starting: Instant,
    plan: LoadPlan,
    script: CallScript,
    turns: Arc<[PreparedTurn]>,
    client: reqwest::Client,
    counters: Progress,
}

/// One slot: from `start_at`, places the call again and again, each from a new number,
/// until the run stops starting calls; its frames go out on `frame_clock`.
async fn run_slot(shared: &Shared, start_at: Instant, frame_clock: Instant) -> SlotResult {
    let Shared {
        stop_starting,
        plan,
        script,
        turns,
        client,
        counters,
    } = shared;
    tokio::time::sleep_until(start_at).await;
    let mut result = SlotResult::default();
    while Instant::now() < *stop_starting {
        let placed = counters.started.fetch_add(1, Ordering::Relaxed);
        let config = SimulatorConfig {
            frame_clock: Some(frame_clock),
            ..SimulatorConfig::new(
                &plan.server,
                plan.auth_token.clone(),
                caller_number(placed),
                plan.to.clone(),
            )
        };
        let outcome = place_call(client, &config, script, Arc::clone(turns)).await;
        match judge(outcome) {
            Ok(report) => {
                counters.completed.fetch_add(1, Ordering::Relaxed);
                result.completed += 1;
                for turn in &report.turns {
                    result.voice_to_voice.extend(turn.reply.voice_to_voice_ms);
                }
                for reply in report
                    .greeting
                    .iter()
                    .chain(report.turns.iter().map(|t| &t.reply))
                {
                    result.gaps += u64::from(reply.gaps);
                    result.gap_ms += reply.gap_ms;
                }
            }
            Err(reason) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                *result.failures.entry(reason).or_default() += 1;
                // A refusing or broken server is not hammered in a tight loop.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    result
}

/// A call counts as completed when it streamed, every line was spoken, and every line got
/// audio back; otherwise, why not (without the SIDs, so equal failures group together).
fn judge(outcome: Result<CallReport, SimulatorError>) -> Result<CallReport, String> {
    let report = outcome.map_err(|e| without_sids(&e.to_string()))?;
    if report.outcome != Outcome::Streamed {
        return Err(format!(
            "not streamed ({:?}): {}",
            report.outcome,
            report.said.join(" ")
        ));
    }
    if report.turns.len() < report.script_turns {
        return Err(format!(
            "the agent hung up after {} of {} lines",
            report.turns.len(),
            report.script_turns
        ));
    }
    if report
        .turns
        .iter()
        .any(|t| t.reply.voice_to_voice_ms.is_none())
    {
        return Err("a line got no reply".to_owned());
    }
    Ok(report)
}

/// `text` with Twilio SIDs (two capitals and 32 hex digits) replaced by their prefix.
fn without_sids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let is_sid = bytes.len() >= i + 34
            && bytes[i].is_ascii_uppercase()
            && bytes[i + 1].is_ascii_uppercase()
            && bytes[i + 2..i + 34].iter().all(u8::is_ascii_hexdigit);
        if is_sid {
            out.push_str(&text[i..i + 2]);
            out.push('…');
            i += 34;
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Reads the few series the report needs from the server's Prometheus text.
async fn read_metrics(client: &reqwest::Client, url: &str, t_s: f64) -> Result<Sample, String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let text = response.text().await.map_err(|e| e.to_string())?;
    Ok(parse_metrics(&text, t_s))
}

/// The series of a [`Sample`] from Prometheus text; missing series read as zero.
fn parse_metrics(text: &str, t_s: f64) -> Sample {
    let mut sample = Sample {
        t_s,
        ..Sample::default()
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            "switchboard_calls_live" => sample.live_calls += value,
            "switchboard_process_resident_memory_bytes" => sample.resident_bytes = value,
            "switchboard_process_cpu_seconds" => sample.cpu_seconds = value,
            "switchboard_audio_inbound_lag_seconds_bucket" => {
                let le = labels
                    .split(',')
                    .find_map(|l| l.strip_prefix("le=\""))
                    .map(|v| v.trim_end_matches(['"', '}']));
                let bound = match le {
                    Some("+Inf") => f64::INFINITY,
                    Some(v) => v.parse().unwrap_or(f64::NAN),
                    None => f64::NAN,
                };
                if !bound.is_nan() {
                    sample.lag_buckets.push((bound, value));
                }
            }
            _ => {}
        }
    }
    sample
}

/// The upper bound of the bucket holding quantile `q` of what the histogram counted
/// between `before` and `after`.
fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let earlier = |bound: f64| {
        before
            .iter()
            .find(|(b, _)| *b == bound)
            .map_or(0.0, |(_, c)| *c)
    };
    let counts: Vec<(f64, f64)> = after
        .iter()
        .map(|&(bound, count)| (bound, count - earlier(bound)))
        .collect();
    let total = counts.iter().map(|(_, c)| *c).fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    counts
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(bound, _)| *bound)
}

fn summarize(
    plan: &LoadPlan,
    total: SlotResult,
    samples: Vec<Sample>,
    elapsed: Duration,
) -> LoadReport {
    let failed = total.failures.values().sum();
    let overhead = total
        .voice_to_voice
        .iter()
        .map(|v| v.saturating_sub(plan.baseline_ms))
        .collect();
    let first = samples.first().cloned().unwrap_or_default();
    let last = samples.last().cloned().unwrap_or_default();
    let peak = samples.iter().map(|s| s.live_calls).fold(0.0, f64::max);
    let full: Vec<&Sample> = samples
        .iter()
        .filter(|s| peak > 0.0 && s.live_calls >= FULL_LOAD * peak)
        .collect();
    let per_call: Vec<u64> = full
        .iter()
        .map(|s| ((s.resident_bytes - first.resident_bytes).max(0.0) / s.live_calls) as u64)
        .collect();
    let call_minutes = call_minutes(&samples);
    let cpu = last.cpu_seconds - first.cpu_seconds;
    let mib = |s: &&Sample| s.resident_bytes / (1024.0 * 1024.0);
    LoadReport {
        calls: plan.calls,
        ramp_s: plan.ramp.as_secs_f64(),
        duration_s: plan.duration.as_secs_f64(),
        elapsed_s: elapsed.as_secs_f64(),
        completed: total.completed,
        failed,
        failures: total.failures,
        voice_to_voice_ms: Percentiles::of(total.voice_to_voice),
        baseline_ms: plan.baseline_ms,
        overhead_ms: Percentiles::of(overhead),
        outbound_gaps: total.gaps,
        outbound_gap_ms: total.gap_ms,
        inbound_lag_p99_ms: bucket_quantile(&first.lag_buckets, &last.lag_buckets, 0.99)
            .map(|s| s * 1000.0),
        peak_live_calls: peak,
        cpu_seconds_per_call_minute: (call_minutes > 0.0).then(|| cpu / call_minutes),
        resident_kib_per_live_call: (!per_call.is_empty())
            .then(|| Percentiles::of(per_call).p50 as f64 / 1024.0),
        resident_mib_full_load_first: full.first().map(mib),
        resident_mib_full_load_last: full.last().map(mib),
        samples,
    }
}

/// Minutes of live call between the samples: the live-call gauge integrated over time.
fn call_minutes(samples: &[Sample]) -> f64 {
    samples
        .windows(2)
        .map(|w| (w[1].t_s - w[0].t_s) * (w[0].live_calls + w[1].live_calls) / 2.0)
        .sum::<f64>()
        / 60.0
}

impl LoadReport {
    /// A table for people: one figure per line, the budget's lines first.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let ms = |p: &Percentiles| {
            format!(
                "p50 {} / p95 {} / p99 {} / max {}",
                p.p50, p.p95, p.p99, p.max
            )
        };
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or("not measured".to_owned(), |v| format!("{v:.3} {unit}"))
        };
        let rows = [
            (
                "concurrent calls",
                format!(
                    "{} (peak live on the server: {:.0})",
                    self.calls, self.peak_live_calls
                ),
            ),
            (
                "run",
                format!(
                    "ramp {:.0} s, full load {:.0} s, {:.0} s in all",
                    self.ramp_s, self.duration_s, self.elapsed_s
                ),
            ),
            ("calls completed", self.completed.to_string()),
            ("calls failed", self.failed.to_string()),
            ("voice-to-voice ms", ms(&self.voice_to_voice_ms)),
            (
                "runtime overhead ms",
                format!(
                    "{} (voice-to-voice less {} ms)",
                    ms(&self.overhead_ms),
                    self.baseline_ms
                ),
            ),
            (
                "inbound frame lag p99",
                opt(self.inbound_lag_p99_ms, "ms (bucket bound)"),
            ),
            (
                "outbound audio gaps",
                format!(
                    "{} ({} ms in all)",
                    self.outbound_gaps, self.outbound_gap_ms
                ),
            ),
            (
                "server CPU per call-minute",
                opt(self.cpu_seconds_per_call_minute, "s"),
            ),
            (
                "server memory per live call",
                opt(self.resident_kib_per_live_call, "KiB"),
            ),
            (
                "server memory at full load",
                match (
                    self.resident_mib_full_load_first,
                    self.resident_mib_full_load_last,
                ) {
                    (Some(a), Some(b)) => format!("{a:.1} MiB first, {b:.1} MiB last"),
                    _ => "not measured".to_owned(),
                },
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in rows {
            let _ = writeln!(out, "{key:<width$}  {value}");
        }
        for (reason, n) in &self.failures {
            let _ = writeln!(out, "  failed {n}×: {reason}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).rev().collect());
        assert_eq!(
            (p.count, p.p50, p.p95, p.p99, p.max),
            (100, 50, 95, 99, 100)
        );
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
        assert_eq!(Percentiles::of(vec![7]).p99, 7);
    }

    #[test]
    fn the_servers_series_are_read_from_prometheus_text() {
        let text = "# HELP switchboard_calls_live Calls live.\n\
            # TYPE switchboard_calls_live gauge\n\
            switchboard_calls_live 12\n\
            switchboard_process_resident_memory_bytes 1048576\n\
            switchboard_process_cpu_seconds 3.5\n\
            switchboard_audio_inbound_lag_seconds_bucket{le=\"0.005\"} 90\n\
            switchboard_audio_inbound_lag_seconds_bucket{le=\"0.01\"} 99\n\
            switchboard_audio_inbound_lag_seconds_bucket{le=\"+Inf\"} 100\n\
            switchboard_calls_total{outcome=\"completed\"} 4\n";
        let s = parse_metrics(text, 2.0);
        assert_eq!(s.live_calls, 12.0);
        assert_eq!(s.resident_bytes, 1_048_576.0);
        assert_eq!(s.cpu_seconds, 3.5);
        assert_eq!(
            s.lag_buckets,
            vec![(0.005, 90.0), (0.01, 99.0), (f64::INFINITY, 100.0)]
        );
        // 99 of 100 in the run fall within 10 ms.
        assert_eq!(bucket_quantile(&[], &s.lag_buckets, 0.99), Some(0.01));
        // Only what the run added counts: 10 new, all within 5 ms.
        let before = [(0.005, 80.0), (0.01, 89.0), (f64::INFINITY, 90.0)];
        assert_eq!(bucket_quantile(&before, &s.lag_buckets, 0.99), Some(0.005));
        assert_eq!(bucket_quantile(&s.lag_buckets, &s.lag_buckets, 0.99), None);
    }

    #[test]
    fn call_minutes_integrate_the_live_gauge() {
        let at = |t_s: f64, live_calls: f64| Sample {
            t_s,
            live_calls,
            ..Sample::default()
        };
        // 60 s at 10 calls, ramping up from 0 over the first 6 s.
        let samples = [at(0.0, 0.0), at(6.0, 10.0), at(66.0, 10.0)];
        assert!((call_minutes(&samples) - 10.5).abs() < 1e-9);
    }

    #[test]
    fn failures_group_without_their_sids() {
        let text = format!("stream MZ{} of CA{} closed", "a".repeat(32), "0".repeat(32));
        assert_eq!(without_sids(&text), "stream MZ… of CA… closed");
        assert_eq!(without_sids("naïve CA12"), "naïve CA12");
    }

    #[test]
    fn every_call_comes_from_a_new_number() {
        assert_eq!(caller_number(0), "+15552000000");
        assert_eq!(caller_number(1999), "+15552001999");
        assert_eq!(caller_number(7_999_999), "+15559999999");
        assert_eq!(caller_number(8_000_000), "+15552000000");
    }
}
