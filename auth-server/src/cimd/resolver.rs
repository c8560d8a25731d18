//! Fetches, validates and caches client metadata documents.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use url::{Host, Url};

use super::address::{find_refusal, ip_allowed, ResolveRefusal, VettingResolver};
use super::{
    cache_lifetime, is_cimd_client_id_with, parse_client_id, validate_document, CimdError,
    CimdSettings, ClientMetadataDocument,
};

struct CacheEntry {
    doc: Arc<ClientMetadataDocument>,
    expires: Instant,
}

type Flight = Arc<OnceCell<Result<Arc<ClientMetadataDocument>, CimdError>>>;

/// Fetches, validates and caches client metadata documents. Cheap to share (`Arc` it or put
/// it in `web::Data`); all methods take `&self`.
pub struct CimdResolver {
    settings: CimdSettings,
    client: reqwest::Client,
    cache: Option<Mutex<lru::LruCache<String, CacheEntry>>>,
    inflight: Mutex<HashMap<String, Flight>>,
}

impl std::fmt::Debug for CimdResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CimdResolver")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CimdResolver {
    pub fn new(settings: &CimdSettings) -> Result<Self, CimdError> {
        if settings.timeout_ms == 0 {
            return Err(CimdError::Config("cimd.timeout_ms must be > 0".into()));
        }
        if settings.max_document_bytes == 0 {
            return Err(CimdError::Config(
                "cimd.max_document_bytes must be > 0".into(),
            ));
        }
        let timeout = Duration::from_millis(settings.timeout_ms);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!settings.allow_insecure_cimd_for_tests)
            .dns_resolver(VettingResolver {
                allow_insecure: settings.allow_insecure_cimd_for_tests,
            })
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("mcp-auth-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CimdError::Config(format!("HTTP client: {e}")))?;
        let cache = NonZeroUsize::new(settings.max_cache_entries)
            .map(|cap| Mutex::new(lru::LruCache::new(cap)));
        Ok(Self {
            settings: settings.clone(),
            client,
            cache,
            inflight: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> &CimdSettings {
        &self.settings
    }

    /// Whether `s` is a URL client id under this resolver's settings (false when disabled).
    pub fn is_cimd_client_id(&self, s: &str) -> bool {
        self.settings.enabled
            && is_cimd_client_id_with(s, self.settings.allow_insecure_cimd_for_tests)
    }

    /// Forgets a cached document (e.g. after an admin action).
    pub fn invalidate(&self, client_id_url: &str) {
        if let Some(cache) = &self.cache {
            lock(cache).pop(client_id_url);
        }
    }

    /// Number of cached documents (expired ones included until evicted).
    pub fn cached_len(&self) -> usize {
        self.cache.as_ref().map(|c| lock(c).len()).unwrap_or(0)
    }

    /// The validated document for `client_id_url`, from the cache or fetched. Concurrent
    /// calls for the same URL share one fetch.
    pub async fn resolve(&self, client_id_url: &str) -> Result<ClientMetadataDocument, CimdError> {
        if !self.settings.enabled {
            return Err(CimdError::Disabled);
        }
        let url = parse_client_id(client_id_url, self.settings.allow_insecure_cimd_for_tests)
            .ok_or(CimdError::InvalidClientId)?;
        if let Some(doc) = self.cached(client_id_url) {
            return Ok((*doc).clone());
        }

        let flight = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(client_id_url) {
                Some(f) => Some(f.clone()),
                // Bounded: past this many distinct concurrent URLs, fetch without sharing.
                None if inflight.len() < self.settings.max_cache_entries.max(64) => {
                    let f: Flight = Arc::new(OnceCell::new());
                    inflight.insert(client_id_url.to_owned(), f.clone());
                    Some(f)
                }
                None => None,
            }
        };
        let Some(flight) = flight else {
            return self
                .fetch_and_cache(client_id_url, &url)
                .await
                .map(|d| (*d).clone());
        };
        let result = flight
            .get_or_init(|| self.fetch_and_cache(client_id_url, &url))
            .await
            .clone();
        {
            let mut inflight = lock(&self.inflight);
            if inflight
                .get(client_id_url)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                inflight.remove(client_id_url);
            }
        }
        result.map(|d| (*d).clone())
    }

    fn cached(&self, key: &str) -> Option<Arc<ClientMetadataDocument>> {
        let cache = self.cache.as_ref()?;
        let mut cache = lock(cache);
        match cache.get(key) {
            Some(entry) if entry.expires > Instant::now() => Some(entry.doc.clone()),
            Some(_) => {
                cache.pop(key);
                None
            }
            None => None,
        }
    }

    async fn fetch_and_cache(
        &self,
        client_id_url: &str,
        url: &Url,
    ) -> Result<Arc<ClientMetadataDocument>, CimdError> {
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let (doc, lifetime) = tokio::time::timeout(timeout, self.fetch(client_id_url, url))
            .await
            .map_err(|_| CimdError::Timeout)??;
        let doc = Arc::new(doc);
        if let (Some(cache), Some(lifetime)) = (&self.cache, lifetime) {
            lock(cache).put(
                client_id_url.to_owned(),
                CacheEntry {
                    doc: doc.clone(),
                    expires: Instant::now() + lifetime,
                },
            );
        }
        Ok(doc)
    }

    async fn fetch(
        &self,
        client_id_url: &str,
        url: &Url,
    ) -> Result<(ClientMetadataDocument, Option<Duration>), CimdError> {
        let allow_insecure = self.settings.allow_insecure_cimd_for_tests;
        let host_display = url.host_str().unwrap_or_default().to_owned();
        // IP literals never reach the resolver: vet them here.
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            if !ip_allowed(ip, allow_insecure) {
                return Err(CimdError::ForbiddenAddress(host_display));
            }
        }

        let mut response = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.map_reqwest_error(&e, &host_display))?;

        let status = response.status();
        if status.is_redirection() {
            return Err(CimdError::Redirect);
        }
        if !status.is_success() {
            return Err(CimdError::HttpStatus(status.as_u16()));
        }
        let cap = self.settings.max_document_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return Err(CimdError::TooLarge(cap));
        }
        let lifetime = cache_lifetime(
            response
                .headers()
                .get_all(reqwest::header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            self.settings.default_cache_secs,
            self.settings.max_cache_secs,
        );
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.map_reqwest_error(&e, &host_display))?
        {
            if body.len() + chunk.len() > cap {
                return Err(CimdError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        let doc = validate_document(client_id_url, &body)?;
        Ok((doc, lifetime))
    }

    fn map_reqwest_error(&self, e: &reqwest::Error, host: &str) -> CimdError {
        if let Some(refusal) = find_refusal(e) {
            return match refusal {
                ResolveRefusal::Forbidden(_) => CimdError::ForbiddenAddress(host.to_owned()),
                ResolveRefusal::Unresolvable(_) => CimdError::Dns(host.to_owned()),
            };
        }
        if e.is_timeout() {
            CimdError::Timeout
        } else if e.is_connect() {
            CimdError::Fetch("could not connect".into())
        } else if e.is_redirect() {
            CimdError::Redirect
        } else if e.is_body() || e.is_decode() {
            CimdError::Fetch("the response body could not be read".into())
        } else {
            log::debug!("CIMD fetch of {host} failed: {e}");
            CimdError::Fetch("request failed".into())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::cimd::DocumentError;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const ID: &str = "https://app.example.com/client.json";

    // ----- tests over real HTTP on 127.0.0.1 -----

    #[derive(Clone)]
    struct Canned {
        status: &'static str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        delay: Duration,
    }

    fn ok_json(body: Vec<u8>) -> Canned {
        Canned {
            status: "200 OK",
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
            delay: Duration::ZERO,
        }
    }

    /// A tiny HTTP/1.1 server: `routes(base_url)` maps a path to a canned answer.
    struct TestServer {
        base: String,
        hits: Arc<AtomicUsize>,
        handle: tokio::task::JoinHandle<()>,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.handle.abort();
        }
    }

    async fn serve(routes: impl Fn(&str) -> HashMap<String, Canned>) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let routes = Arc::new(routes(&base));
        let hits = Arc::new(AtomicUsize::new(0));
        let hits2 = hits.clone();
        let handle = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let routes = routes.clone();
                let hits = hits2.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let text = String::from_utf8_lossy(&buf);
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let canned = routes.get(&path).cloned().unwrap_or(Canned {
                        status: "404 Not Found",
                        headers: vec![],
                        body: b"nope".to_vec(),
                        delay: Duration::ZERO,
                    });
                    tokio::time::sleep(canned.delay).await;
                    let mut head = format!(
                        "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        canned.status,
                        canned.body.len()
                    );
                    for (k, v) in &canned.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&canned.body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        TestServer { base, hits, handle }
    }

    fn body_for(id: &str, extra: serde_json::Value) -> Vec<u8> {
        let mut v = serde_json::json!({
            "client_id": id,
            "client_name": "Test Client",
            "redirect_uris": ["http://127.0.0.1:9999/callback"],
        });
        for (k, val) in extra.as_object().unwrap() {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val.clone();
            }
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn insecure(timeout_ms: u64) -> CimdResolver {
        CimdResolver::new(&CimdSettings {
            allow_insecure_cimd_for_tests: true,
            timeout_ms,
            ..CimdSettings::default()
        })
        .unwrap()
    }

    fn routes(base: &str) -> HashMap<String, Canned> {
        let mut m = HashMap::new();
        m.insert(
            "/valid.json".into(),
            ok_json(body_for(
                &format!("{base}/valid.json"),
                serde_json::json!({}),
            )),
        );
        m.insert(
            "/mismatch.json".into(),
            ok_json(body_for(
                "https://other.example.com/client.json",
                serde_json::json!({}),
            )),
        );
        m.insert(
            "/missing.json".into(),
            ok_json(body_for(
                &format!("{base}/missing.json"),
                serde_json::json!({"redirect_uris": null}),
            )),
        );
        m.insert(
            "/secret.json".into(),
            ok_json(body_for(
                &format!("{base}/secret.json"),
                serde_json::json!({"token_endpoint_auth_method": "client_secret_basic"}),
            )),
        );
        let big = body_for(
            &format!("{base}/big.json"),
            serde_json::json!({"padding": "x".repeat(70_000)}),
        );
        m.insert("/big.json".into(), ok_json(big));
        m.insert(
            "/redirect.json".into(),
            Canned {
                status: "302 Found",
                headers: vec![("Location".into(), format!("{base}/valid.json"))],
                body: vec![],
                delay: Duration::ZERO,
            },
        );
        let mut slow = ok_json(body_for(
            &format!("{base}/slow.json"),
            serde_json::json!({}),
        ));
        slow.delay = Duration::from_secs(3);
        m.insert("/slow.json".into(), slow);
        m.insert(
            "/html.json".into(),
            Canned {
                status: "200 OK",
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: b"<html>hi</html>".to_vec(),
                delay: Duration::ZERO,
            },
        );
        let mut nostore = ok_json(body_for(
            &format!("{base}/nostore.json"),
            serde_json::json!({}),
        ));
        nostore
            .headers
            .push(("Cache-Control".into(), "no-store".into()));
        m.insert("/nostore.json".into(), nostore);
        let mut cached = ok_json(body_for(
            &format!("{base}/cached.json"),
            serde_json::json!({}),
        ));
        cached
            .headers
            .push(("Cache-Control".into(), "public, max-age=600".into()));
        m.insert("/cached.json".into(), cached);
        let mut concurrent = ok_json(body_for(
            &format!("{base}/concurrent.json"),
            serde_json::json!({}),
        ));
        concurrent.delay = Duration::from_millis(200);
        m.insert("/concurrent.json".into(), concurrent);
        m
    }

    #[tokio::test]
    async fn fetch_outcomes_with_the_test_switch() {
        let server = serve(routes).await;
        let r = insecure(5000);
        let b = &server.base;

        let d = r.resolve(&format!("{b}/valid.json")).await.unwrap();
        assert_eq!(d.client_id, format!("{b}/valid.json"));
        assert_eq!(d.metadata.client_name.as_deref(), Some("Test Client"));
        assert_eq!(
            d.metadata.redirect_uris,
            vec!["http://127.0.0.1:9999/callback"]
        );

        let e = r.resolve(&format!("{b}/mismatch.json")).await.unwrap_err();
        assert!(
            matches!(e, CimdError::Document(DocumentError::Invalid(ref m)) if m.contains("does not match")),
            "{e}"
        );
        let e = r.resolve(&format!("{b}/missing.json")).await.unwrap_err();
        assert!(e.to_string().contains("redirect_uris is missing"), "{e}");
        let e = r.resolve(&format!("{b}/secret.json")).await.unwrap_err();
        assert!(e.to_string().contains("token_endpoint_auth_method"), "{e}");
        let e = r.resolve(&format!("{b}/big.json")).await.unwrap_err();
        assert_eq!(e, CimdError::TooLarge(65536));
        let e = r.resolve(&format!("{b}/redirect.json")).await.unwrap_err();
        assert_eq!(e, CimdError::Redirect);
        let e = r.resolve(&format!("{b}/html.json")).await.unwrap_err();
        assert!(
            matches!(e, CimdError::Document(DocumentError::InvalidJson(_))),
            "{e}"
        );
        let e = r.resolve(&format!("{b}/absent.json")).await.unwrap_err();
        assert_eq!(e, CimdError::HttpStatus(404));
        // Not a CIMD URL at all.
        let e = r.resolve(&format!("{b}/")).await.unwrap_err();
        assert_eq!(e, CimdError::InvalidClientId);
    }

    #[tokio::test]
    async fn oversized_body_without_content_length_is_cut_while_streaming() {
        // A chunked response: no Content-Length, so the cap must be enforced on the stream.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut tmp = [0u8; 4096];
            let _ = sock.read(&mut tmp).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = vec![b' '; 8192];
            for _ in 0..64 {
                let head = format!("{:x}\r\n", chunk.len());
                if sock.write_all(head.as_bytes()).await.is_err()
                    || sock.write_all(&chunk).await.is_err()
                    || sock.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
            }
            let _ = sock.write_all(b"0\r\n\r\n").await;
        });
        let r = CimdResolver::new(&CimdSettings {
            allow_insecure_cimd_for_tests: true,
            max_document_bytes: 10_000,
            ..CimdSettings::default()
        })
        .unwrap();
        let e = r
            .resolve(&format!("http://127.0.0.1:{port}/stream.json"))
            .await
            .unwrap_err();
        assert_eq!(e, CimdError::TooLarge(10_000));
        handle.abort();
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let server = serve(routes).await;
        let r = insecure(300);
        let started = Instant::now();
        let e = r
            .resolve(&format!("{}/slow.json", server.base))
            .await
            .unwrap_err();
        assert_eq!(e, CimdError::Timeout);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn loopback_is_refused_without_the_test_switch() {
        let server = serve(routes).await;
        let r = CimdResolver::new(&CimdSettings::default()).unwrap();
        let port = server.base.rsplit(':').next().unwrap();
        // http is not a CIMD URL at all without the switch.
        assert!(!r.is_cimd_client_id(&format!("{}/valid.json", server.base)));
        assert_eq!(
            r.resolve(&format!("{}/valid.json", server.base))
                .await
                .unwrap_err(),
            CimdError::InvalidClientId
        );
        // https to a loopback literal or to a name that resolves to loopback: refused
        // before any connection is made.
        for url in [
            format!("https://127.0.0.1:{port}/valid.json"),
            format!("https://[::1]:{port}/valid.json"),
            format!("https://[::ffff:7f00:1]:{port}/valid.json"),
            format!("https://localhost:{port}/valid.json"),
            "https://169.254.169.254/latest/meta-data".to_owned(),
            "https://10.0.0.1/client.json".to_owned(),
        ] {
            let e = r.resolve(&url).await.unwrap_err();
            assert!(matches!(e, CimdError::ForbiddenAddress(_)), "{url}: {e}");
        }
        assert_eq!(
            server.hits.load(Ordering::SeqCst),
            0,
            "no request may reach the server"
        );
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_pass_the_resolver_with_the_switch() {
        let server = serve(routes).await;
        let port = server.base.rsplit(':').next().unwrap();
        let base = format!("http://localhost:{port}");
        // The document's client_id must be the localhost URL, which the canned routes don't
        // have; a mismatch error proves the fetch went through the vetting resolver.
        let e = insecure(5000)
            .resolve(&format!("{base}/valid.json"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[tokio::test]
    async fn cache_honours_cache_control_and_shares_inflight_fetches() {
        let server = serve(routes).await;
        let r = insecure(5000);
        let b = &server.base;
        let before = server.hits.load(Ordering::SeqCst);
        r.resolve(&format!("{b}/cached.json")).await.unwrap();
        r.resolve(&format!("{b}/cached.json")).await.unwrap();
        assert_eq!(
            server.hits.load(Ordering::SeqCst) - before,
            1,
            "max-age=600 is cached"
        );
        assert_eq!(r.cached_len(), 1);
        r.invalidate(&format!("{b}/cached.json"));
        assert_eq!(r.cached_len(), 0);

        let before = server.hits.load(Ordering::SeqCst);
        r.resolve(&format!("{b}/nostore.json")).await.unwrap();
        r.resolve(&format!("{b}/nostore.json")).await.unwrap();
        assert_eq!(
            server.hits.load(Ordering::SeqCst) - before,
            2,
            "no-store is not cached"
        );

        let before = server.hits.load(Ordering::SeqCst);
        let url = format!("{b}/concurrent.json");
        let results = futures_util::future::join_all((0..8).map(|_| r.resolve(&url))).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(
            server.hits.load(Ordering::SeqCst) - before,
            1,
            "one fetch for 8 concurrent calls"
        );
        assert!(lock(&r.inflight).is_empty());
    }

    #[tokio::test]
    async fn disabled_resolver_refuses() {
        let r = CimdResolver::new(&CimdSettings {
            enabled: false,
            ..CimdSettings::default()
        })
        .unwrap();
        assert!(!r.is_cimd_client_id(ID));
        assert_eq!(r.resolve(ID).await.unwrap_err(), CimdError::Disabled);
    }

    #[test]
    fn settings_defaults_and_partial_toml() {
        let s: CimdSettings =
            serde_json::from_str(r#"{"allow_insecure_cimd_for_tests": true}"#).unwrap();
        assert!(s.enabled && s.allow_insecure_cimd_for_tests);
        assert_eq!(s.timeout_ms, 5000);
        assert_eq!(s.max_document_bytes, 65536);
        assert!(CimdResolver::new(&CimdSettings {
            timeout_ms: 0,
            ..CimdSettings::default()
        })
        .is_err());
    }
}
