//! A tiny, thread-safe Prometheus registry rendering the text exposition format 0.0.4.
//!
//! Built for hot paths: recording a value on an existing label combination takes a shared
//! read lock, one hash of the label values and one or two atomic operations; the exclusive
//! lock is taken only the first time a label combination is seen. Each metric keeps at most
//! `max_series` label combinations; further combinations are folded into one series whose
//! label values are all [`OVERFLOW_LABEL_VALUE`], so a hostile client cannot grow memory
//! without bound by inventing label values.
//!
//! Nothing here panics: a wrong number of label values is padded with `""` or truncated,
//! invalid metric or label names are sanitised, and registering a name twice returns the
//! existing metric when its kind and labels match.
//!
//! ```
//! use shared::metrics::Registry;
//! let registry = Registry::new();
//! let requests = registry.counter("http_requests_total", "HTTP requests.", &["method", "status"]);
//! requests.inc(&["GET", "200"]);
//! let latency = registry.histogram("http_request_duration_seconds", "Latency.", &["route"], &[0.01, 0.1, 1.0]);
//! latency.observe(&["/token"], 0.02);
//! let text = registry.render();
//! assert!(text.contains("http_requests_total{method=\"GET\",status=\"200\"} 1\n"));
//! assert!(text.contains("http_request_duration_seconds_bucket{route=\"/token\",le=\"0.1\"} 1\n"));
//! ```

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// The `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Default cap on label combinations per metric.
pub const DEFAULT_MAX_SERIES: usize = 2000;

/// Label value used for every label of the series that absorbs combinations beyond the cap.
pub const OVERFLOW_LABEL_VALUE: &str = "__overflow__";

/// Latency buckets in seconds, from 0.5 ms to 10 s; suitable for HTTP handlers.
pub const DEFAULT_LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `count` buckets starting at `start`, each `factor` times the previous one.
/// Returns an empty list for nonsensical arguments (start ≤ 0, factor ≤ 1).
pub fn exponential_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    if !(start > 0.0 && factor > 1.0 && start.is_finite() && factor.is_finite()) {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(count);
    let mut v = start;
    for _ in 0..count {
        out.push(v);
        v *= factor;
    }
    out
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Series cells
// ---------------------------------------------------------------------------------------------

/// An f64 stored in an `AtomicU64` as its bit pattern.
#[derive(Debug, Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    fn store(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    fn add(&self, delta: f64) {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + delta).to_bits();
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }
}

trait Cell: Send + Sync + 'static {
    fn new(buckets: usize) -> Self;
}

#[derive(Debug, Default)]
struct CounterCell(AtomicU64);

impl Cell for CounterCell {
    fn new(_: usize) -> Self {
        Self::default()
    }
}

#[derive(Debug, Default)]
struct GaugeCell(AtomicF64);

impl Cell for GaugeCell {
    fn new(_: usize) -> Self {
        Self::default()
    }
}

#[derive(Debug)]
struct HistogramCell {
    /// Non-cumulative counts; one per finite bound plus a last one for `+Inf`.
    counts: Box<[AtomicU64]>,
    sum: AtomicF64,
}

impl Cell for HistogramCell {
    fn new(buckets: usize) -> Self {
        Self {
            counts: (0..=buckets).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Families
// ---------------------------------------------------------------------------------------------

struct Series<C> {
    labels: Box<[String]>,
    cell: C,
}

struct Family<C> {
    name: String,
    help: String,
    label_names: Vec<String>,
    /// Histogram upper bounds (finite, sorted, deduplicated); empty for other kinds.
    bounds: Vec<f64>,
    max_series: usize,
    hasher: RandomState,
    /// Series by hash of their label values; collisions live in the small vector.
    series: RwLock<HashMap<u64, Vec<Arc<Series<C>>>>>,
    /// Count of series (excluding the overflow series), kept under the write lock.
    len: AtomicU64,
}

impl<C: Cell> Family<C> {
    fn new(
        name: &str,
        help: &str,
        label_names: &[&str],
        bounds: Vec<f64>,
        max_series: usize,
    ) -> Self {
        Self {
            name: sanitize_metric_name(name),
            help: help.to_owned(),
            label_names: label_names.iter().map(|l| sanitize_label_name(l)).collect(),
            bounds,
            max_series: max_series.max(1),
            hasher: RandomState::new(),
            series: RwLock::new(HashMap::new()),
            len: AtomicU64::new(0),
        }
    }

    fn same_shape(&self, label_names: &[&str], bounds: &[f64]) -> bool {
        self.label_names.len() == label_names.len()
            && self
                .label_names
                .iter()
                .zip(label_names)
                .all(|(a, b)| *a == sanitize_label_name(b))
            && self.bounds == bounds
    }

    fn hash(&self, values: &[&str]) -> u64 {
        self.hasher.hash_one(values)
    }

    fn matches(series: &Series<C>, values: &[&str]) -> bool {
        series.labels.len() == values.len() && series.labels.iter().zip(values).all(|(a, b)| a == b)
    }

    /// Runs `f` on the series for `values`, creating it if needed.
    fn with<R>(&self, values: &[&str], f: impl FnOnce(&C) -> R) -> R {
        let n = self.label_names.len();
        if values.len() == n {
            self.with_exact(values, f)
        } else {
            // Wrong arity: pad with "" or truncate. Rare (a programming error), so the
            // allocation does not matter.
            let fixed: Vec<&str> = (0..n)
                .map(|i| values.get(i).copied().unwrap_or(""))
                .collect();
            self.with_exact(&fixed, f)
        }
    }

    fn with_exact<R>(&self, values: &[&str], f: impl FnOnce(&C) -> R) -> R {
        let h = self.hash(values);
        {
            let map = read(&self.series);
            if let Some(s) = map
                .get(&h)
                .and_then(|v| v.iter().find(|s| Self::matches(s, values)))
            {
                return f(&s.cell);
            }
        }
        let series = self.get_or_create(h, values);
        f(&series.cell)
    }

    fn get_or_create(&self, h: u64, values: &[&str]) -> Arc<Series<C>> {
        let mut map = write(&self.series);
        if let Some(s) = map
            .get(&h)
            .and_then(|v| v.iter().find(|s| Self::matches(s, values)))
        {
            return s.clone();
        }
        if self.len.load(Ordering::Relaxed) >= self.max_series as u64 {
            let overflow: Vec<&str> = vec![OVERFLOW_LABEL_VALUE; values.len()];
            let oh = self.hash(&overflow);
            if let Some(s) = map
                .get(&oh)
                .and_then(|v| v.iter().find(|s| Self::matches(s, &overflow)))
            {
                return s.clone();
            }
            let s = Arc::new(Series {
                labels: overflow.iter().map(|v| (*v).to_owned()).collect(),
                cell: C::new(self.bounds.len()),
            });
            map.entry(oh).or_default().push(s.clone());
            return s;
        }
        let s = Arc::new(Series {
            labels: values.iter().map(|v| (*v).to_owned()).collect(),
            cell: C::new(self.bounds.len()),
        });
        map.entry(h).or_default().push(s.clone());
        self.len.fetch_add(1, Ordering::Relaxed);
        s
    }

    /// Reads a series without creating it.
    fn peek<R>(&self, values: &[&str], f: impl FnOnce(&C) -> R) -> Option<R> {
        let map = read(&self.series);
        map.get(&self.hash(values))
            .and_then(|v| v.iter().find(|s| Self::matches(s, values)))
            .map(|s| f(&s.cell))
    }

    fn handle(&self, values: &[&str]) -> Arc<Series<C>> {
        let n = self.label_names.len();
        let fixed: Vec<&str> = (0..n)
            .map(|i| values.get(i).copied().unwrap_or(""))
            .collect();
        let h = self.hash(&fixed);
        {
            let map = read(&self.series);
            if let Some(s) = map
                .get(&h)
                .and_then(|v| v.iter().find(|s| Self::matches(s, &fixed)))
            {
                return s.clone();
            }
        }
        self.get_or_create(h, &fixed)
    }

    /// A snapshot of the series, sorted by label values for a stable output.
    fn snapshot(&self) -> Vec<Arc<Series<C>>> {
        let map = read(&self.series);
        let mut all: Vec<Arc<Series<C>>> = map.values().flatten().cloned().collect();
        drop(map);
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        all
    }

    fn write_header(&self, out: &mut String, kind: &str) {
        out.push_str("# HELP ");
        out.push_str(&self.name);
        out.push(' ');
        escape_help(out, &self.help);
        out.push('\n');
        out.push_str("# TYPE ");
        out.push_str(&self.name);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
    }

    /// Writes `name{labels[,extra]} ` (with the trailing space).
    fn write_sample_prefix(
        &self,
        out: &mut String,
        suffix: &str,
        labels: &[String],
        extra: Option<(&str, &str)>,
    ) {
        out.push_str(&self.name);
        out.push_str(suffix);
        let has_labels = !self.label_names.is_empty() || extra.is_some();
        if has_labels {
            out.push('{');
            let mut first = true;
            for (name, value) in self.label_names.iter().zip(labels.iter()) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(name);
                out.push_str("=\"");
                escape_label_value(out, value);
                out.push('"');
            }
            if let Some((name, value)) = extra {
                if !first {
                    out.push(',');
                }
                out.push_str(name);
                out.push_str("=\"");
                escape_label_value(out, value);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
    }
}

impl Family<CounterCell> {
    fn render(&self, out: &mut String) {
        self.write_header(out, "counter");
        for s in self.snapshot() {
            self.write_sample_prefix(out, "", &s.labels, None);
            let _ = writeln!(out, "{}", s.cell.0.load(Ordering::Relaxed));
        }
    }
}

impl Family<GaugeCell> {
    fn render(&self, out: &mut String) {
        self.write_header(out, "gauge");
        for s in self.snapshot() {
            self.write_sample_prefix(out, "", &s.labels, None);
            write_float(out, s.cell.0.load());
            out.push('\n');
        }
    }
}

impl Family<HistogramCell> {
    fn render(&self, out: &mut String) {
        self.write_header(out, "histogram");
        let mut le = String::new();
        for s in self.snapshot() {
            // Read every bucket once so that the cumulative counts, `+Inf` and `_count`
            // agree with each other even while observations race with rendering.
            let counts: Vec<u64> = s
                .cell
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect();
            let mut cumulative = 0u64;
            for (i, count) in counts.iter().enumerate() {
                cumulative += count;
                le.clear();
                match self.bounds.get(i) {
                    Some(b) => write_float(&mut le, *b),
                    None => le.push_str("+Inf"),
                }
                self.write_sample_prefix(out, "_bucket", &s.labels, Some(("le", &le)));
                let _ = writeln!(out, "{cumulative}");
            }
            self.write_sample_prefix(out, "_sum", &s.labels, None);
            write_float(out, s.cell.sum.load());
            out.push('\n');
            self.write_sample_prefix(out, "_count", &s.labels, None);
            let _ = writeln!(out, "{cumulative}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Public handles
// ---------------------------------------------------------------------------------------------

/// A counter family with labels. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct CounterVec(Arc<Family<CounterCell>>);

/// One series of a counter, bound to fixed label values: the fastest way to count.
#[derive(Clone)]
pub struct Counter(Arc<Series<CounterCell>>);

impl CounterVec {
    /// Adds one to the series with these label values (in the order of the label names).
    pub fn inc(&self, values: &[&str]) {
        self.inc_by(values, 1);
    }

    /// Adds `n` to the series with these label values.
    pub fn inc_by(&self, values: &[&str], n: u64) {
        self.0.with(values, |c| c.0.fetch_add(n, Ordering::Relaxed));
    }

    /// The current value of a series (0 if it was never touched).
    pub fn get(&self, values: &[&str]) -> u64 {
        self.0
            .peek(values, |c| c.0.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// A handle on one series, so later increments skip the label lookup.
    pub fn with_labels(&self, values: &[&str]) -> Counter {
        Counter(self.0.handle(values))
    }

    /// The metric name as rendered.
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.cell.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.cell.0.load(Ordering::Relaxed)
    }
}

/// A gauge family with labels. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct GaugeVec(Arc<Family<GaugeCell>>);

/// One series of a gauge, bound to fixed label values.
#[derive(Clone)]
pub struct Gauge(Arc<Series<GaugeCell>>);

impl GaugeVec {
    pub fn set(&self, values: &[&str], v: f64) {
        self.0.with(values, |c| c.0.store(v));
    }
    pub fn add(&self, values: &[&str], delta: f64) {
        self.0.with(values, |c| c.0.add(delta));
    }
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1.0);
    }
    pub fn dec(&self, values: &[&str]) {
        self.add(values, -1.0);
    }
    pub fn get(&self, values: &[&str]) -> f64 {
        self.0.peek(values, |c| c.0.load()).unwrap_or(0.0)
    }
    pub fn with_labels(&self, values: &[&str]) -> Gauge {
        Gauge(self.0.handle(values))
    }
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.cell.0.store(v);
    }
    pub fn add(&self, delta: f64) {
        self.0.cell.0.add(delta);
    }
    pub fn inc(&self) {
        self.add(1.0);
    }
    pub fn dec(&self) {
        self.add(-1.0);
    }
    pub fn get(&self) -> f64 {
        self.0.cell.0.load()
    }
}

/// A histogram family with labels. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct HistogramVec(Arc<Family<HistogramCell>>);

/// One series of a histogram, bound to fixed label values.
#[derive(Clone)]
pub struct Histogram {
    series: Arc<Series<HistogramCell>>,
    family: Arc<Family<HistogramCell>>,
}

fn observe_cell(bounds: &[f64], cell: &HistogramCell, value: f64) {
    if value.is_nan() {
        return;
    }
    // First bucket whose upper bound is >= value ("le" is inclusive); past the end = +Inf.
    let idx = bounds.partition_point(|b| *b < value);
    if let Some(c) = cell.counts.get(idx) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    cell.sum.add(value);
}

impl HistogramVec {
    /// Records one observation (NaN is ignored).
    pub fn observe(&self, values: &[&str], value: f64) {
        let bounds = &self.0.bounds;
        self.0.with(values, |c| observe_cell(bounds, c, value));
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, values: &[&str], d: Duration) {
        self.observe(values, d.as_secs_f64());
    }

    /// (count, sum) of a series.
    pub fn get(&self, values: &[&str]) -> (u64, f64) {
        self.0
            .peek(values, |c| {
                let count = c.counts.iter().map(|a| a.load(Ordering::Relaxed)).sum();
                (count, c.sum.load())
            })
            .unwrap_or((0, 0.0))
    }

    pub fn with_labels(&self, values: &[&str]) -> Histogram {
        Histogram {
            series: self.0.handle(values),
            family: self.0.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl Histogram {
    pub fn observe(&self, value: f64) {
        observe_cell(&self.family.bounds, &self.series.cell, value);
    }
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }
}

// ---------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
enum AnyFamily {
    Counter(Arc<Family<CounterCell>>),
    Gauge(Arc<Family<GaugeCell>>),
    Histogram(Arc<Family<HistogramCell>>),
}

impl AnyFamily {
    fn name(&self) -> &str {
        match self {
            AnyFamily::Counter(f) => &f.name,
            AnyFamily::Gauge(f) => &f.name,
            AnyFamily::Histogram(f) => &f.name,
        }
    }
}

/// A set of metrics rendered together. Cheap to clone (an `Arc`); share one per process
/// (e.g. in actix `web::Data`).
#[derive(Clone)]
pub struct Registry {
    families: Arc<RwLock<Vec<AnyFamily>>>,
    max_series: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = read(&self.families)
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        f.debug_struct("Registry")
            .field("metrics", &names)
            .field("max_series", &self.max_series)
            .finish()
    }
}

impl Registry {
    /// A registry whose metrics keep at most [`DEFAULT_MAX_SERIES`] label combinations each.
    pub fn new() -> Self {
        Self::with_max_series(DEFAULT_MAX_SERIES)
    }

    /// A registry whose metrics keep at most `max_series` label combinations each (≥ 1).
    pub fn with_max_series(max_series: usize) -> Self {
        Self {
            families: Arc::new(RwLock::new(Vec::new())),
            max_series: max_series.max(1),
        }
    }

    /// Registers (or returns the already registered) counter `name`. Counter names should
    /// end in `_total`. If `name` is taken by a metric of another kind or shape, a detached
    /// counter is returned (it works but is not rendered) and a warning is logged.
    pub fn counter(&self, name: &str, help: &str, label_names: &[&str]) -> CounterVec {
        let mut families = write(&self.families);
        let sanitized = sanitize_metric_name(name);
        if let Some(existing) = families.iter().find(|f| f.name() == sanitized) {
            if let AnyFamily::Counter(f) = existing {
                if f.same_shape(label_names, &[]) {
                    return CounterVec(f.clone());
                }
            }
            log::warn!("metric {sanitized} registered twice with different kinds or labels");
            return CounterVec(Arc::new(Family::new(
                name,
                help,
                label_names,
                Vec::new(),
                self.max_series,
            )));
        }
        let f = Arc::new(Family::new(
            name,
            help,
            label_names,
            Vec::new(),
            self.max_series,
        ));
        families.push(AnyFamily::Counter(f.clone()));
        CounterVec(f)
    }

    /// Registers (or returns the already registered) gauge `name`.
    pub fn gauge(&self, name: &str, help: &str, label_names: &[&str]) -> GaugeVec {
        let mut families = write(&self.families);
        let sanitized = sanitize_metric_name(name);
        if let Some(existing) = families.iter().find(|f| f.name() == sanitized) {
            if let AnyFamily::Gauge(f) = existing {
                if f.same_shape(label_names, &[]) {
                    return GaugeVec(f.clone());
                }
            }
            log::warn!("metric {sanitized} registered twice with different kinds or labels");
            return GaugeVec(Arc::new(Family::new(
                name,
                help,
                label_names,
                Vec::new(),
                self.max_series,
            )));
        }
        let f = Arc::new(Family::new(
            name,
            help,
            label_names,
            Vec::new(),
            self.max_series,
        ));
        families.push(AnyFamily::Gauge(f.clone()));
        GaugeVec(f)
    }

    /// Registers (or returns the already registered) histogram `name` with these upper
    /// bounds. Bounds are sorted and deduplicated; NaN and infinite bounds are dropped (`+Inf`
    /// is always implicit). A label named `le` is renamed `le_` (it is reserved).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let mut bounds: Vec<f64> = buckets.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(|a, b| a.total_cmp(b));
        bounds.dedup();
        let label_names: Vec<&str> = label_names
            .iter()
            .map(|l| if *l == "le" { "le_" } else { *l })
            .collect();
        let mut families = write(&self.families);
        let sanitized = sanitize_metric_name(name);
        if let Some(existing) = families.iter().find(|f| f.name() == sanitized) {
            if let AnyFamily::Histogram(f) = existing {
                if f.same_shape(&label_names, &bounds) {
                    return HistogramVec(f.clone());
                }
            }
            log::warn!("metric {sanitized} registered twice with different kinds or labels");
            return HistogramVec(Arc::new(Family::new(
                name,
                help,
                &label_names,
                bounds,
                self.max_series,
            )));
        }
        let f = Arc::new(Family::new(
            name,
            help,
            &label_names,
            bounds,
            self.max_series,
        ));
        families.push(AnyFamily::Histogram(f.clone()));
        HistogramVec(f)
    }

    /// Renders every metric in the text exposition format 0.0.4, in registration order,
    /// series sorted by label values. Serve it with [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        let families: Vec<AnyFamily> = read(&self.families).clone();
        let mut out = String::with_capacity(256 * families.len().max(1));
        for f in &families {
            match f {
                AnyFamily::Counter(f) => f.render(&mut out),
                AnyFamily::Gauge(f) => f.render(&mut out),
                AnyFamily::Histogram(f) => f.render(&mut out),
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Text-format helpers
// ---------------------------------------------------------------------------------------------

/// Metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`; anything else becomes `_`.
fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// Label names match `[a-zA-Z_][a-zA-Z0-9_]*`; anything else becomes `_`.
fn sanitize_label_name(name: &str) -> String {
    sanitize(name, false)
}

fn sanitize(name: &str, colon_ok: bool) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphabetic()
                || c == '_'
                || (colon_ok && c == ':')
                || (i > 0 && c.is_ascii_digit());
            if ok {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// HELP text: escape `\` and line feed.
fn escape_help(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Label values: escape `\`, `"` and line feed.
fn escape_label_value(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Floats as Prometheus expects them: `+Inf`, `-Inf`, `NaN`, otherwise the shortest
/// round-tripping decimal (`1`, `0.005`, `1e-7`).
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e15) {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn counter_renders_help_type_and_labels() {
        let r = Registry::new();
        let c = r.counter("requests_total", "Requests served.", &["method", "status"]);
        c.inc(&["GET", "200"]);
        c.inc_by(&["POST", "500"], 3);
        c.inc(&["GET", "200"]);
        assert_eq!(
            r.render(),
            "# HELP requests_total Requests served.\n\
             # TYPE requests_total counter\n\
             requests_total{method=\"GET\",status=\"200\"} 2\n\
             requests_total{method=\"POST\",status=\"500\"} 3\n"
        );
        assert_eq!(c.get(&["GET", "200"]), 2);
        assert_eq!(c.get(&["PUT", "200"]), 0);
        assert!(
            !r.render().contains("PUT"),
            "reading must not create a series"
        );
    }

    #[test]
    fn metric_without_labels_has_no_braces() {
        let r = Registry::new();
        let c = r.counter("up_total", "x", &[]);
        c.inc(&[]);
        assert!(r.render().ends_with("\nup_total 1\n"), "{}", r.render());
    }

    #[test]
    fn untouched_metric_renders_header_only() {
        let r = Registry::new();
        let _c = r.counter("never_total", "never", &["a"]);
        assert_eq!(
            r.render(),
            "# HELP never_total never\n# TYPE never_total counter\n"
        );
    }

    #[test]
    fn escaping_of_help_and_label_values() {
        let r = Registry::new();
        let c = r.counter("esc_total", "line1\nback\\slash \"quotes\" stay", &["v"]);
        c.inc(&["a\"b\\c\nd"]);
        let text = r.render();
        assert!(
            text.contains("# HELP esc_total line1\\nback\\\\slash \"quotes\" stay\n"),
            "{text}"
        );
        assert!(
            text.contains("esc_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn invalid_names_are_sanitised() {
        let r = Registry::new();
        let c = r.counter("9bad-name.total", "x", &["bad-label", "1x"]);
        c.inc(&["a", "b"]);
        let text = r.render();
        assert!(
            text.contains("_bad_name_total{bad_label=\"a\",_x=\"b\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let r = Registry::new();
        let h = r.histogram("lat_seconds", "Latency.", &["route"], &[0.1, 0.5, 1.0]);
        for v in [0.05, 0.1, 0.3, 2.0] {
            h.observe(&["/t"], v);
        }
        let expected = "# HELP lat_seconds Latency.\n\
            # TYPE lat_seconds histogram\n\
            lat_seconds_bucket{route=\"/t\",le=\"0.1\"} 2\n\
            lat_seconds_bucket{route=\"/t\",le=\"0.5\"} 3\n\
            lat_seconds_bucket{route=\"/t\",le=\"1\"} 3\n\
            lat_seconds_bucket{route=\"/t\",le=\"+Inf\"} 4\n\
            lat_seconds_sum{route=\"/t\"} 2.45\n\
            lat_seconds_count{route=\"/t\"} 4\n";
        assert_eq!(r.render(), expected);
        assert_eq!(h.get(&["/t"]).0, 4);
    }

    #[test]
    fn histogram_without_labels_and_unsorted_buckets() {
        let r = Registry::new();
        let h = r.histogram("h", "h", &[], &[1.0, f64::INFINITY, 0.5, 1.0, f64::NAN]);
        h.observe(&[], 0.7);
        h.observe(&[], f64::NAN);
        let text = r.render();
        assert!(text.contains("h_bucket{le=\"0.5\"} 0\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("h_sum 0.7\nh_count 1\n"), "{text}");
        assert_eq!(text.matches("_bucket").count(), 3);
    }

    #[test]
    fn histogram_le_label_is_renamed() {
        let r = Registry::new();
        let h = r.histogram("h2", "h", &["le"], &[1.0]);
        h.observe(&["x"], 0.5);
        assert!(r.render().contains("h2_bucket{le_=\"x\",le=\"1\"} 1\n"));
    }

    #[test]
    fn gauge_set_inc_dec() {
        let r = Registry::new();
        let g = r.gauge("in_flight", "In flight.", &["kind"]);
        g.set(&["a"], 2.5);
        g.inc(&["b"]);
        g.inc(&["b"]);
        g.dec(&["b"]);
        let handle = g.with_labels(&["c"]);
        handle.set(f64::INFINITY);
        let text = r.render();
        assert!(text.contains("# TYPE in_flight gauge\n"));
        assert!(text.contains("in_flight{kind=\"a\"} 2.5\n"), "{text}");
        assert!(text.contains("in_flight{kind=\"b\"} 1\n"), "{text}");
        assert!(text.contains("in_flight{kind=\"c\"} +Inf\n"), "{text}");
    }

    #[test]
    fn float_formatting() {
        let mut s = String::new();
        for v in [
            0.0,
            1.0,
            -2.5,
            0.005,
            1e-7,
            1e20,
            f64::NAN,
            f64::NEG_INFINITY,
        ] {
            write_float(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "0 1 -2.5 0.005 1e-7 1e20 NaN -Inf ");
    }

    #[test]
    fn cardinality_is_capped_with_an_overflow_series() {
        let r = Registry::with_max_series(3);
        let c = r.counter("capped_total", "x", &["user"]);
        for i in 0..10 {
            c.inc(&[&format!("u{i}")]);
        }
        c.inc(&["u0"]); // existing series still counted
        let text = r.render();
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(series, 4, "{text}");
        assert!(
            text.contains("capped_total{user=\"__overflow__\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("capped_total{user=\"u0\"} 2\n"), "{text}");
    }

    #[test]
    fn wrong_arity_is_padded_or_truncated_not_a_panic() {
        let r = Registry::new();
        let c = r.counter("arity_total", "x", &["a", "b"]);
        c.inc(&["x"]);
        c.inc(&["x", "y", "z"]);
        let text = r.render();
        assert!(text.contains("arity_total{a=\"x\",b=\"\"} 1\n"), "{text}");
        assert!(text.contains("arity_total{a=\"x\",b=\"y\"} 1\n"), "{text}");
    }

    #[test]
    fn registering_twice_returns_the_same_metric() {
        let r = Registry::new();
        let a = r.counter("twice_total", "x", &["l"]);
        let b = r.counter("twice_total", "x", &["l"]);
        a.inc(&["v"]);
        b.inc(&["v"]);
        assert_eq!(a.get(&["v"]), 2);
        // Same name, other kind: a detached metric, still usable, not rendered twice.
        let g = r.gauge("twice_total", "x", &["l"]);
        g.set(&["v"], 5.0);
        let text = r.render();
        assert_eq!(text.matches("# TYPE twice_total").count(), 1);
        assert!(text.contains("twice_total{l=\"v\"} 2\n"));
    }

    #[test]
    fn handles_share_the_series() {
        let r = Registry::new();
        let c = r.counter("handle_total", "x", &["l"]);
        let h = c.with_labels(&["v"]);
        h.inc();
        h.inc_by(4);
        c.inc(&["v"]);
        assert_eq!(h.get(), 6);
        let hist = r.histogram("handle_seconds", "x", &[], DEFAULT_LATENCY_BUCKETS);
        let hh = hist.with_labels(&[]);
        hh.observe_duration(Duration::from_millis(3));
        assert_eq!(hist.get(&[]).0, 1);
    }

    #[test]
    fn concurrent_increments_are_not_lost() {
        let r = Registry::new();
        let c = r.counter("conc_total", "x", &["t"]);
        let h = r.histogram("conc_seconds", "x", &["t"], &[0.5]);
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let c = c.clone();
                let h = h.clone();
                std::thread::spawn(move || {
                    let label = if i % 2 == 0 { "even" } else { "odd" };
                    for _ in 0..10_000 {
                        c.inc(&[label]);
                        h.observe(&[label], 0.25);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(&["even"]) + c.get(&["odd"]), 40_000);
        let (count, sum) = h.get(&["even"]);
        assert_eq!(count, 20_000);
        assert!((sum - 5000.0).abs() < 1e-6);
    }

    #[test]
    fn exponential_buckets_work() {
        assert_eq!(exponential_buckets(1.0, 2.0, 4), vec![1.0, 2.0, 4.0, 8.0]);
        assert!(exponential_buckets(0.0, 2.0, 4).is_empty());
        assert!(exponential_buckets(1.0, 1.0, 4).is_empty());
    }
}
