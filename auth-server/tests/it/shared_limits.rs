//! Rate limits shared across replicas through Redis (`rate_limit.redis_url`): two
//! auth-server replicas on one database and one real Redis count one budget, and a Redis
//! that is down, or hangs, never turns a login into a 500; `rate_limit.redis_failure`
//! decides what the limits do meanwhile, `/readyz` says so, and the limits are shared
//! again once Redis answers.
//!
//! Each test uses a key prefix of its own and deletes its keys ([`TestRedis`]). Without
//! a reachable Redis the tests skip, unless `AUTH_TEST_REDIS_URL` is set.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_server::ratelimit::RedisFailure;
use auth_server::settings::ClientConfig;
use auth_server::Settings;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::*;

const ATTACKER: &str = "203.0.113.7";

/// Replicas behind a load balancer: one database (they share the stored master secret
/// that names the keys) and one Redis; each with a port and metrics listener of its own.
struct Replicas {
    a: TestApp,
    b: TestApp,
    /// The client registered on the shared database (usable on both).
    client_id: String,
    _dir: tempfile::TempDir,
}

/// A public client from the configuration: it exists without a registration (which
/// is itself rate limited, and refused while the limits fail closed).
const CLIENT_ID: &str = "replica-test";

/// Shares the limits through `redis_url`, behind a balancer on 127.0.0.1 (so that
/// `X-Forwarded-For` names the client).
fn share_limits(s: &mut Settings, redis_url: &str, prefix: &str) {
    s.server.trusted_proxies = vec!["127.0.0.1".into()];
    s.rate_limit.redis_url = shared::Secret::new(redis_url);
    s.rate_limit.redis_prefix = prefix.into();
    s.clients.push(ClientConfig {
        client_id: CLIENT_ID.into(),
        client_name: "Replica Test".into(),
        redirect_uris: vec![REDIRECT.into()],
        ..Default::default()
    });
}

async fn replicas(redis_url: &str, prefix: &str, tweak: impl Fn(&mut Settings)) -> Replicas {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let mut settings = test_settings(&db);
    share_limits(&mut settings, redis_url, prefix);
    tweak(&mut settings);
    // One after the other: the first creates the database and its keys, the second
    // finds them, as a replica joining a running deployment does.
    let a = start(settings.clone()).await;
    let b = start(settings).await;
    Replicas {
        client_id: CLIENT_ID.into(),
        a,
        b,
        _dir: dir,
    }
}

/// One replica with its own database (the outage tests need only one).
async fn replica(
    redis_url: &str,
    prefix: &str,
    tweak: impl FnOnce(&mut Settings),
) -> (TestApp, String) {
    let app = spawn_with(|s| {
        share_limits(s, redis_url, prefix);
        tweak(s);
    })
    .await;
    (app, CLIENT_ID.into())
}

/// One login attempt on `app` from `address`: the status of the `POST /login` and its
/// page.
async fn attempt(
    app: &TestApp,
    client_id: &str,
    address: &str,
    (user, password): (&str, &str),
) -> (StatusCode, String) {
    let mut browser = Browser::at(address);
    let (status, _, html) = browser
        .get(app, &authorize_url(app, client_id, &[("prompt", "login")]))
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (status, _, body) = submit_login(app, &mut browser, &html, user, password).await;
    (status, body)
}

fn signed_in(status: StatusCode) -> bool {
    status == StatusCode::OK || status == StatusCode::SEE_OTHER
}

/// Failed logins for `user` from `address`, alternating between the replicas, until
/// one refuses: the number answered before that.
async fn failures_until_throttled(r: &Replicas, address: &str, user: &str) -> usize {
    for n in 0..50 {
        let app = if n % 2 == 0 { &r.a } else { &r.b };
        let (status, body) = attempt(app, &r.client_id, address, (user, "wrong-guess")).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return n;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    panic!("{address} was never throttled for {user}");
}

async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

/// Polls `/readyz` until `status` (the probe asks Redis once a second).
async fn await_readiness(app: &TestApp, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = readyz(app).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        if body["status"] == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never became {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn register(app: &TestApp, address: &str) -> reqwest::Response {
    app.http
        .post(app.url("/register"))
        .header("x-forwarded-for", address)
        .json(&serde_json::json!({
            "client_name": "Shared Limits",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .unwrap()
}

/// A port nothing listens on: connections to it are refused.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn failed_logins_split_across_replicas_hit_the_configured_total() {
    let Some(redis) = test_redis("logins").await else {
        return;
    };
    // 5 per minute refill one try every 12 s: the count below is exact.
    let r = replicas(&redis.url, &redis.prefix, |s| {
        s.rate_limit.login_per_user_per_minute = 5;
    })
    .await;
    // Per process, alternating replicas would allow 5 + 5; shared, 5 in all.
    assert_eq!(failures_until_throttled(&r, ATTACKER, "demo").await, 5);
    // Both replicas refuse now, even the right password, with a Retry-After.
    for app in [&r.a, &r.b] {
        let (status, _) = attempt(app, &r.client_id, ATTACKER, ("demo", "demo123")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    // Usernames that do not exist count exactly the same way.
    assert_eq!(
        failures_until_throttled(&r, ATTACKER, "nobody-here").await,
        5
    );
    // The budget is per (username, address): the user signs in from elsewhere, on
    // either replica.
    for app in [&r.a, &r.b] {
        let (status, _) = attempt(app, &r.client_id, "198.51.100.20", ("demo", "demo123")).await;
        assert!(signed_in(status), "the user was locked out: {status}");
    }
    // Redis holds hashed keys under the prefix: no username or address in clear.
    let keys = redis.keys();
    assert!(keys.iter().any(|k| k.contains(":login_user:")), "{keys:?}");
    for key in &keys {
        assert!(key.starts_with(&format!("{}:", redis.prefix)), "{key}");
        for clear in ["demo", "nobody", "203.0.113", "198.51.100"] {
            assert!(!key[redis.prefix.len()..].contains(clear), "{key}");
        }
    }
    for (name, app) in [("a", &r.a), ("b", &r.b)] {
        let (_, body) = readyz(app).await;
        assert_eq!(body["status"], "ok", "replica {name}: {body}");
        assert_eq!(body["rate_limits"]["backend"], "redis", "{body}");
        assert_eq!(body["rate_limits"]["reachable"], true, "{body}");
    }
}

#[tokio::test]
async fn a_per_address_budget_is_shared_across_replicas() {
    let Some(redis) = test_redis("per-address").await else {
        return;
    };
    let r = replicas(&redis.url, &redis.prefix, |s| {
        s.rate_limit.register_per_ip_per_minute = 4;
    })
    .await;
    let address = "192.0.2.77";
    for n in 0..4 {
        let app = if n % 2 == 0 { &r.a } else { &r.b };
        assert_eq!(
            register(app, address).await.status(),
            StatusCode::CREATED,
            "{n}"
        );
    }
    for app in [&r.a, &r.b] {
        let res = register(app, address).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        // One unit per 15 s, as the per-process limiter would say.
        let retry: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((13..=15).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(
        register(&r.b, "192.0.2.78").await.status(),
        StatusCode::CREATED,
        "another address has its own budget"
    );
}

#[tokio::test]
async fn redis_unreachable_falls_back_to_per_process_limits_and_says_so() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let (app, client_id) = replica(&url, "auth-test:down", |s| {
        s.rate_limit.login_per_user_per_minute = 3;
    })
    .await;
    // Logins are answered (never a 500), and counted in this process meanwhile.
    for _ in 0..3 {
        let (status, body) = attempt(&app, &client_id, ATTACKER, ("demo", "wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, _) = attempt(&app, &client_id, ATTACKER, ("demo", "wrong")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = attempt(&app, &client_id, "198.51.100.20", ("demo", "demo123")).await;
    assert!(signed_in(status), "{status}");
    assert_eq!(app.client_credentials(None).await["token_type"], "Bearer");
    let body = await_readiness(&app, "degraded").await;
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["rate_limits"]["reachable"], false, "{body}");
    assert_eq!(body["rate_limits"]["on_failure"], "local", "{body}");
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains("Redis") && reasons.contains("connection refused"),
        "{body}"
    );
    assert!(body["rate_limits"]["unreachable_since"].is_i64(), "{body}");
}

#[tokio::test]
async fn redis_unreachable_with_failure_open_limits_nothing() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let (app, client_id) = replica(&url, "auth-test:open", |s| {
        s.rate_limit.login_per_user_per_minute = 2;
        s.rate_limit.redis_failure = RedisFailure::Open;
    })
    .await;
    for _ in 0..5 {
        let (status, body) = attempt(&app, &client_id, ATTACKER, ("demo", "wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let body = await_readiness(&app, "degraded").await;
    assert_eq!(body["rate_limits"]["on_failure"], "open", "{body}");
}

#[tokio::test]
async fn redis_unreachable_with_failure_closed_refuses_with_503() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let (app, client_id) = replica(&url, "auth-test:closed", |s| {
        s.rate_limit.redis_failure = RedisFailure::Closed;
    })
    .await;
    // The browser gets the login page again, saying why, with a Retry-After.
    let mut browser = Browser::at(ATTACKER);
    let (status, _, html) = browser
        .get(
            &app,
            &authorize_url(&app, &client_id, &[("prompt", "login")]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, page) = submit_login(&app, &mut browser, &html, "demo", "demo123").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
    assert!(page.contains("not possible right now"), "{page}");
    assert!(headers.contains_key("retry-after"));
    // The token endpoint answers an OAuth error.
    let res = app
        .http
        .post(app.url("/token"))
        .basic_auth("mcp-server", Some("demo-mcp-server-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    let res = register(&app, ATTACKER).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // What is not rate limited is served as usual.
    let res = app.http.get(app.url("/jwks.json")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = await_readiness(&app, "degraded").await;
    assert_eq!(body["rate_limits"]["on_failure"], "closed", "{body}");
    assert!(body["reasons"].to_string().contains("refused"), "{body}");
}

/// What the relay does with the traffic to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Forwards both ways.
    Up,
    /// Closes every connection (Redis stopped).
    Down,
    /// Keeps connections open and answers nothing (Redis hung, or a network black hole).
    Stalled,
}

/// A TCP relay in front of the real Redis that the test can cut.
struct Relay {
    port: u16,
    link: Arc<watch::Sender<Link>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(redis_url: &str) -> Relay {
        let target = redis::Client::open(redis_url)
            .unwrap()
            .get_connection_info()
            .addr()
            .to_string();
        let target: SocketAddr = tokio::net::lookup_host(target)
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (link, _) = watch::channel(Link::Up);
        let link = Arc::new(link);
        let links = link.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, target, links.subscribe()));
            }
        });
        Relay { port, link, task }
    }

    fn url(&self, redis_url: &str) -> String {
        // The test Redis's database and credentials, through the relay's port.
        let mut url = url::Url::parse(redis_url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, mut link: watch::Receiver<Link>) {
    let current = *link.borrow_and_update();
    match current {
        Link::Down => {
            let _ = client.shutdown().await;
            return;
        }
        Link::Stalled => {
            let _ = link.wait_for(|l| *l != Link::Stalled).await;
            return;
        }
        Link::Up => {}
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return;
    };
    let cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => None,
        changed = link.wait_for(|l| *l != Link::Up) => changed.ok().map(|l| *l),
    };
    if cut == Some(Link::Stalled) {
        // Hold both ends open, silent, until the link changes again.
        let _ = link.wait_for(|l| *l != Link::Stalled).await;
    }
}

#[tokio::test]
async fn limits_survive_a_hanging_redis_and_are_shared_again_when_it_returns() {
    let Some(redis) = test_redis("outage").await else {
        return;
    };
    let relay = Relay::start(&redis.url).await;
    // 2 per minute: one unit back every 30 s, longer than this test takes.
    let r = replicas(&relay.url(&redis.url), &redis.prefix, |s| {
        s.rate_limit.register_per_ip_per_minute = 2;
    })
    .await;
    await_readiness(&r.a, "ok").await;
    let address = "192.0.2.91";
    assert_eq!(register(&r.a, address).await.status(), StatusCode::CREATED);

    // Redis hangs: requests do not (the limiter waits 200 ms, then counts locally).
    relay.set(Link::Stalled);
    let started = Instant::now();
    let (status, body) = attempt(&r.a, &r.client_id, ATTACKER, ("demo", "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = attempt(&r.b, &r.client_id, "198.51.100.20", ("demo", "demo123")).await;
    assert!(signed_in(status), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "logins waited for the hung Redis: {:?}",
        started.elapsed()
    );
    for app in [&r.a, &r.b] {
        let body = await_readiness(app, "degraded").await;
        assert!(body["reasons"].to_string().contains("Redis"), "{body}");
    }

    // Redis stopped: the same, by refused connections.
    relay.set(Link::Down);
    assert_eq!(r.a.client_credentials(None).await["token_type"], "Bearer");

    // Redis is back: both replicas notice by themselves, and the budget spent before
    // the outage still counts (1 of 2 spent, so 1 more across both replicas).
    relay.set(Link::Up);
    await_readiness(&r.a, "ok").await;
    await_readiness(&r.b, "ok").await;
    assert_eq!(register(&r.b, address).await.status(), StatusCode::CREATED);
    assert_eq!(
        register(&r.a, address).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
