//! Password guessing is throttled per (username, address) and per address, never per
//! username alone: strangers cannot lock a user out, a browser that signed in before
//! (device cookie) keeps signing in, and every refusal takes as long as a password check.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;

const ATTACKER: &str = "203.0.113.7";
const USER: &str = "198.51.100.20";

/// An app behind a trusted proxy on 127.0.0.1, so `X-Forwarded-For` names the client.
async fn behind_proxy(tweak: impl FnOnce(&mut auth_server::Settings)) -> (TestApp, String) {
    let app = spawn_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
        tweak(s);
    })
    .await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap().to_string();
    (app, client_id)
}

/// One login attempt of `browser` on a forced login page: the answer's status and how
/// long the `POST /login` took.
async fn attempt(
    app: &TestApp,
    browser: &mut Browser,
    client_id: &str,
    (user, password): (&str, &str),
) -> (StatusCode, Duration) {
    let (status, _, html) = browser
        .get(app, &authorize_url(app, client_id, &[("prompt", "login")]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let started = Instant::now();
    let (status, _, _) = submit_login(app, browser, &html, user, password).await;
    (status, started.elapsed())
}

fn signed_in(status: StatusCode) -> bool {
    status == StatusCode::OK || status == StatusCode::SEE_OTHER
}

/// Failed attempts until the address is throttled for `user`; the number it took (the
/// budget, plus what it regained meanwhile: it refills continuously).
async fn exhaust(app: &TestApp, client_id: &str, address: &str, user: &str) -> usize {
    for n in 0..100 {
        let mut attacker = Browser::at(address);
        let (status, _) = attempt(app, &mut attacker, client_id, (user, "wrong-guess")).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return n;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    panic!("{address} was never throttled for {user}");
}

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_the_user_out_elsewhere() {
    // The default budgets: 20 failures per (username, address) and minute.
    let (app, client_id) = behind_proxy(|_| {}).await;
    assert!(exhaust(&app, &client_id, ATTACKER, "demo").await >= 20);
    // The attacker's address is throttled, even with the right password ...
    let (status, _) = attempt(
        &app,
        &mut Browser::at(ATTACKER),
        &client_id,
        ("demo", "demo123"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // ... and no one else is locked out.
    let mut user = Browser::at(USER);
    let (status, _) = attempt(&app, &mut user, &client_id, ("demo", "demo123")).await;
    assert!(signed_in(status), "the user was locked out: {status}");
    let (status, _) = attempt(
        &app,
        &mut Browser::at("192.0.2.44"),
        &client_id,
        ("demo", "demo123"),
    )
    .await;
    assert!(signed_in(status), "{status}");
}

#[tokio::test]
async fn a_browser_that_signed_in_before_signs_in_while_strangers_guess_from_its_address() {
    // Small budgets refill slowly (one try every 20 s): the steps below cannot race a refill.
    let (app, client_id) = behind_proxy(|s| {
        s.rate_limit.login_per_user_per_minute = 3;
        s.rate_limit.login_per_device_per_minute = 3;
    })
    .await;
    // The user signs in once (an office behind one NAT address) and gets a device cookie.
    let mut known = Browser::at(USER);
    let (status, _) = attempt(&app, &mut known, &client_id, ("demo", "demo123")).await;
    assert!(signed_in(status), "{status}");
    assert!(
        known.cookies.contains_key("as_device"),
        "{:?}",
        known.cookies
    );
    // A stranger at the same address spends the budget for `demo` there.
    assert_eq!(exhaust(&app, &client_id, USER, "demo").await, 3);
    let (status, _) = attempt(
        &app,
        &mut Browser::at(USER),
        &client_id,
        ("demo", "demo123"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // A forged device cookie makes no known device.
    let mut forged = Browser::at(USER);
    forged
        .cookies
        .insert("as_device".into(), "bm90LXNlYWxlZA.demo".into());
    let (status, _) = attempt(&app, &mut forged, &client_id, ("demo", "demo123")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The known browser is not a stranger: it signs in.
    let (status, _) = attempt(&app, &mut known, &client_id, ("demo", "demo123")).await;
    assert!(
        signed_in(status),
        "the known browser was locked out: {status}"
    );
    // A stolen device cookie has a budget of its own: it cannot guess freely.
    let mut thief = known.clone();
    thief.forwarded_for = Some("192.0.2.99".into());
    for _ in 0..3 {
        let (status, _) = attempt(&app, &mut thief, &client_id, ("demo", "guess")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = attempt(&app, &mut thief, &client_id, ("demo", "guess")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The cookie vouches for `demo` only: for another username the thief is a stranger
    // with that address's budget.
    let (status, _) = attempt(&app, &mut thief, &client_id, ("admin", "admin123")).await;
    assert!(signed_in(status), "{status}");
}

#[tokio::test]
async fn unknown_usernames_are_throttled_exactly_like_known_ones() {
    let (app, client_id) = behind_proxy(|s| s.rate_limit.login_per_user_per_minute = 3).await;
    // A budget of 3 refills one try every 20 s: the count is exact here.
    assert_eq!(exhaust(&app, &client_id, ATTACKER, "demo").await, 3);
    assert_eq!(exhaust(&app, &client_id, ATTACKER, "nobody-here").await, 3);
    // Another address has its own budget for both: no answer tells which one exists.
    for user in ["demo", "nobody-here"] {
        let (status, _) = attempt(&app, &mut Browser::at(USER), &client_id, (user, "wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user}");
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn every_refusal_takes_as_long_as_a_password_check() {
    // The attacker's address is throttled by its address budget; the other answers
    // come from addresses and usernames with budget left.
    let (app, client_id) = behind_proxy(|s| {
        s.rate_limit.login_per_user_per_minute = 1000;
        s.rate_limit.login_per_ip_per_minute = 3;
    })
    .await;
    // Warm up (connections, the first hash).
    let _ = attempt(
        &app,
        &mut Browser::at("192.0.2.1"),
        &client_id,
        ("demo", "x"),
    )
    .await;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    let mut throttled = Vec::new();
    exhaust(&app, &client_id, ATTACKER, "demo").await;
    for i in 0..7 {
        // Other usernames and addresses than the throttled pair, so that only the
        // throttled answers are refused by the limiter.
        let address = format!("192.0.2.{}", 10 + i);
        let (status, took) = attempt(
            &app,
            &mut Browser::at(&address),
            &client_id,
            ("admin", "wrong"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        wrong.push(took);
        let nobody = format!("nobody-{i}");
        let (status, took) = attempt(
            &app,
            &mut Browser::at(&address),
            &client_id,
            (&nobody, "wrong"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        unknown.push(took);
        let (status, took) = attempt(
            &app,
            &mut Browser::at(ATTACKER),
            &client_id,
            ("demo", "wrong"),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        throttled.push(took);
    }
    let (wrong, unknown, throttled) = (median(wrong), median(unknown), median(throttled));
    // Generous bounds: scheduling noise on a loaded machine moves single answers, not
    // the medians by half.
    assert!(
        unknown * 2 >= wrong,
        "unknown user {unknown:?} vs wrong password {wrong:?}"
    );
    assert!(
        throttled * 2 >= wrong,
        "throttled {throttled:?} vs wrong password {wrong:?}"
    );
}
