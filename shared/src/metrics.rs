//! Prometheus metrics on the `prometheus` crate: one [`Registry`] per server, rendered in the
//! text exposition format 0.0.4.
//!
//! The wrappers only make recording infallible: `prometheus`' `with_label_values` panics on a
//! wrong number of label values, so they use the checked lookup and log the mistake
//! instead. Label values must come from small fixed sets (see [`method_label`]): the crate
//! keeps every combination it has seen.

use std::time::Duration;

use actix_web::http::Method;
use prometheus::core::{Collector, MetricVec, MetricVecBuilder};

pub use prometheus::{exponential_buckets, Error, IntCounter};

/// The `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets in seconds, from 0.5 ms to 10 s; suitable for HTTP handlers.
pub const DEFAULT_LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// An HTTP method as a label value: the standard methods by name, any other `other`, so
/// that clients cannot grow the label set by inventing methods.
pub fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", |m| m.as_str())
}

/// The series of `vec` with these label values; a wrong number of values is logged.
fn series<B: MetricVecBuilder>(vec: &MetricVec<B>, labels: &[&str]) -> Option<B::M> {
    vec.get_metric_with_label_values(labels)
        .inspect_err(|e| {
            let desc = vec.desc();
            let name = desc.first().map_or("?", |d| d.fq_name.as_str());
            log::warn!("metric {name}: {e}");
        })
        .ok()
}

/// A set of metrics rendered together. Cheap to clone; share one per server.
#[derive(Clone, Default, Debug)]
pub struct Registry(prometheus::Registry);

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn add<C: Collector + Clone + 'static>(&self, metric: C) -> Result<C, Error> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    /// Registers counter `name` (which should end in `_total`).
    pub fn counter(&self, name: &str, help: &str, labels: &[&str]) -> Result<CounterVec, Error> {
        let opts = prometheus::Opts::new(name, help);
        let vec = self.add(prometheus::IntCounterVec::new(opts, labels)?)?;
        Ok(CounterVec(vec))
    }

    pub fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec, Error> {
        let opts = prometheus::Opts::new(name, help);
        let vec = self.add(prometheus::GaugeVec::new(opts, labels)?)?;
        Ok(GaugeVec(vec))
    }

    /// Registers histogram `name` with these bucket upper bounds (`+Inf` is implicit).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, Error> {
        let opts = prometheus::HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let vec = self.add(prometheus::HistogramVec::new(opts, labels)?)?;
        Ok(HistogramVec(vec))
    }

    /// Every series that has been recorded, in the text format; serve it with
    /// [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&self.0.gather(), &mut out) {
            log::warn!("rendering metrics failed: {e}");
        }
        out
    }
}

#[derive(Clone, Debug)]
pub struct CounterVec(prometheus::IntCounterVec);

impl CounterVec {
    /// Adds one to the series with these label values (in the order of the label names).
    pub fn inc(&self, labels: &[&str]) {
        if let Some(series) = self.with_labels(labels) {
            series.inc();
        }
    }

    /// One series, resolved once so that a hot path counts with a single atomic add.
    pub fn with_labels(&self, labels: &[&str]) -> Option<IntCounter> {
        series(&self.0, labels)
    }
}

#[derive(Clone, Debug)]
pub struct GaugeVec(prometheus::GaugeVec);

impl GaugeVec {
    pub fn set(&self, labels: &[&str], value: f64) {
        if let Some(series) = series(&self.0, labels) {
            series.set(value);
        }
    }
}

#[derive(Clone, Debug)]
pub struct HistogramVec(prometheus::HistogramVec);

impl HistogramVec {
    pub fn observe(&self, labels: &[&str], value: f64) {
        if let Some(series) = series(&self.0, labels) {
            series.observe(value);
        }
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, labels: &[&str], elapsed: Duration) {
        self.observe(labels, elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let registry = Registry::new();
        let requests = registry
            .counter("requests_total", "Requests served.", &["method", "status"])
            .unwrap();
        requests.inc(&["GET", "200"]);
        requests.inc(&["GET", "200"]);
        let latency = registry
            .histogram("latency_seconds", "Latency.", &["route"], &[0.1, 1.0])
            .unwrap();
        latency.observe_duration(&["/t"], Duration::from_millis(50));
        let sessions = registry.gauge("sessions", "Sessions.", &[]).unwrap();
        sessions.set(&[], 3.0);
        let text = registry.render();
        assert!(text
            .contains("# HELP requests_total Requests served.\n# TYPE requests_total counter\n"));
        assert!(
            text.contains("requests_total{method=\"GET\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{route=\"/t\",le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_count{route=\"/t\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("sessions 3\n"), "{text}");
    }

    #[test]
    fn a_wrong_label_count_is_dropped_not_a_panic() {
        let registry = Registry::new();
        let c = registry.counter("arity_total", "x", &["a", "b"]).unwrap();
        c.inc(&["only one"]);
        assert!(c.with_labels(&["x", "y", "z"]).is_none());
        assert!(!registry.render().contains("arity_total{"));
        let h = registry
            .histogram("arity_seconds", "x", &["a"], &[1.0])
            .unwrap();
        h.observe(&[], 0.5);
        registry.gauge("arity", "x", &["a"]).unwrap().set(&[], 1.0);
    }

    #[test]
    fn handles_share_the_series_and_names_are_unique() {
        let registry = Registry::new();
        let c = registry.counter("handle_total", "x", &["l"]).unwrap();
        let handle = c.with_labels(&["v"]).unwrap();
        handle.inc();
        c.inc(&["v"]);
        assert_eq!(handle.get(), 2);
        assert!(registry.counter("handle_total", "x", &["l"]).is_err());
        assert!(registry.counter("bad name", "x", &[]).is_err());
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let invented = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
