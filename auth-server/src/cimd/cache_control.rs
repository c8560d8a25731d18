//! How long a fetched metadata document may be cached, from its `Cache-Control` header.

use std::time::Duration;

/// How long a response may be cached, from its `Cache-Control` header values. `None` means
/// "do not cache" (`no-store`, `no-cache`, `max-age=0`); no `max-age` gives `default_secs`;
/// any lifetime is clamped to `max_secs`.
pub fn cache_lifetime<'a>(
    cache_control: impl IntoIterator<Item = &'a str>,
    default_secs: u64,
    max_secs: u64,
) -> Option<Duration> {
    let mut max_age: Option<u64> = None;
    for header in cache_control {
        for directive in header.split(',') {
            let directive = directive.trim();
            let (name, value) = match directive.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return None;
            }
            if name.eq_ignore_ascii_case("max-age") {
                // An unparsable max-age is treated as stale (RFC 9111 §4.2.1); a huge one
                // saturates and is clamped below. The first valid occurrence wins.
                let parsed = value.and_then(|v| {
                    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                        Some(v.parse::<u64>().unwrap_or(u64::MAX))
                    } else {
                        None
                    }
                });
                if max_age.is_none() {
                    max_age = Some(parsed.unwrap_or(0));
                }
            }
        }
    }
    let secs = max_age.unwrap_or(default_secs).min(max_secs);
    (secs > 0).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_parsing() {
        let d = |h: &[&str]| cache_lifetime(h.iter().copied(), 300, 86400);
        assert_eq!(d(&[]), Some(Duration::from_secs(300)));
        assert_eq!(d(&["public"]), Some(Duration::from_secs(300)));
        assert_eq!(d(&["max-age=60"]), Some(Duration::from_secs(60)));
        assert_eq!(d(&["public, MAX-AGE=120"]), Some(Duration::from_secs(120)));
        assert_eq!(d(&["max-age=\"90\""]), Some(Duration::from_secs(90)));
        assert_eq!(d(&["max-age=999999999"]), Some(Duration::from_secs(86400)));
        assert_eq!(
            d(&["max-age=99999999999999999999999"]),
            Some(Duration::from_secs(86400))
        );
        assert_eq!(d(&["max-age=0"]), None);
        assert_eq!(d(&["max-age=abc"]), None);
        assert_eq!(d(&["max-age=-5"]), None);
        assert_eq!(d(&["no-store"]), None);
        assert_eq!(d(&["max-age=60, no-store"]), None);
        assert_eq!(d(&["no-cache"]), None);
        assert_eq!(d(&["public", "No-Store"]), None);
        assert_eq!(
            d(&["max-age=30", "max-age=600"]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(cache_lifetime([], 0, 86400), None);
        assert_eq!(cache_lifetime([], 500, 100), Some(Duration::from_secs(100)));
    }
}
