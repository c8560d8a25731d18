//! Two mcp-server replicas behind one resource URL (what a load balancer presents), both
//! trusting the same authorization server. A legacy session lives in the replica that
//! opened it; when the balancer loses affinity, the other replica must answer the spec's
//! 404 with a JSON-RPC error, so the client initializes again, and must never serve the
//! request on some other session or fail with a 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_server::Application;
use serde_json::{json, Value};

use crate::mcp::{initialize_body, rpc_response, test_settings, LEGACY_VERSION};
use crate::support::FakeAs;

/// The MCP URL clients use: the balancer's, shared by every replica.
const BALANCED_RESOURCE: &str = "http://mcp.replicas.test/mcp";

struct Replica {
    url: String,
    metrics_url: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Replica {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// A replica named `route` (`transport.session_route`).
async fn replica(fake: &FakeAs, route: &str, direct_tool_calls: bool) -> Replica {
    let mut settings = test_settings(fake);
    settings.server.resource = BALANCED_RESOURCE.into();
    settings.transport.session_route = route.into();
    settings.transport.direct_tool_calls = direct_tool_calls;
    let app = Application::build(settings).await.expect("build a replica");
    assert_eq!(app.resource(), BALANCED_RESOURCE);
    let replica = Replica {
        url: format!("http://127.0.0.1:{}/mcp", app.port()),
        metrics_url: format!("http://{}/metrics", app.metrics_addr().expect("metrics on")),
        handle: app.handle(),
    };
    tokio::spawn(app.server());
    replica
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn legacy(
    http: &reqwest::Client,
    method: reqwest::Method,
    replica: &Replica,
    token: &str,
    session: &str,
) -> reqwest::RequestBuilder {
    http.request(method, &replica.url)
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .header("Mcp-Session-Id", session)
        .header("MCP-Protocol-Version", LEGACY_VERSION)
}

async fn open_session(http: &reqwest::Client, replica: &Replica, token: &str) -> String {
    let response = http
        .post(&replica.url)
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let init = rpc_response(response).await;
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-server", "{init}");
    let initialized = legacy(http, reqwest::Method::POST, replica, token, &session)
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(initialized.status(), 202);
    session
}

fn hello_call(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "hello_world", "arguments": {}}})
}

/// Status, the session header of the answer and its JSON-RPC message.
async fn send(request: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let body = if response.status().is_success() {
        rpc_response(response).await
    } else {
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        assert!(
            content_type.starts_with("application/json"),
            "{status} answered as {content_type:?}: {text}"
        );
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, session, body)
}

/// The spec's answer to a session this replica does not have.
fn assert_session_not_found(what: &str, (status, session, body): &(u16, Option<String>, Value)) {
    assert_eq!(*status, 404, "{what}: {body}");
    assert!(session.is_none(), "{what}: no session is offered instead");
    assert_eq!(body["jsonrpc"], "2.0", "{what}: {body}");
    assert_eq!(body["id"], Value::Null, "{what}: {body}");
    assert_eq!(body["error"]["code"], -32600, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("session")),
        "{what}: {body}"
    );
    assert!(body.get("result").is_none(), "{what}: {body}");
}

async fn metric_lines(http: &reqwest::Client, replica: &Replica, name: &str) -> Vec<String> {
    let text = http
        .get(&replica.metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_session_of_another_replica_gets_404_and_the_client_starts_over() {
    // Both paths of the bridge: calls it answers itself and calls rmcp answers.
    for direct_tool_calls in [true, false] {
        let fake = FakeAs::start().await;
        let a = replica(&fake, "mcp-a", direct_tool_calls).await;
        let b = replica(&fake, "mcp-b", direct_tool_calls).await;
        let http = client();
        let alice = fake.token("alice", "mcp:read", BALANCED_RESOURCE);
        let label = |what: &str| format!("{what} (direct_tool_calls = {direct_tool_calls})");

        let on_a = open_session(&http, &a, &alice).await;
        // The id names its replica, which is what lets a balancer keep it there.
        assert!(on_a.starts_with("mcp-a."), "{on_a}");
        let (status, _, body) =
            send(legacy(&http, reqwest::Method::POST, &a, &alice, &on_a).json(&hello_call(2)))
                .await;
        assert_eq!(status, 200, "{body}");

        // The balancer lost affinity (or A is gone and its sessions with it): every
        // kind of session request reaches B. The same id with B's route is no more
        // B's session than the original.
        let post =
            send(legacy(&http, reqwest::Method::POST, &b, &alice, &on_a).json(&hello_call(3)));
        assert_session_not_found(&label("tools/call"), &post.await);
        let list = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"});
        let post = send(legacy(&http, reqwest::Method::POST, &b, &alice, &on_a).json(&list));
        assert_session_not_found(&label("tools/list"), &post.await);
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let post = send(legacy(&http, reqwest::Method::POST, &b, &alice, &on_a).json(&note));
        assert_session_not_found(&label("a notification"), &post.await);
        let stream = send(
            legacy(&http, reqwest::Method::GET, &b, &alice, &on_a)
                .header("Accept", "text/event-stream"),
        );
        assert_session_not_found(&label("the GET stream"), &stream.await);
        let delete = send(legacy(&http, reqwest::Method::DELETE, &b, &alice, &on_a));
        assert_session_not_found(&label("DELETE"), &delete.await);
        let renamed = on_a.replacen("mcp-a.", "mcp-b.", 1);
        let post =
            send(legacy(&http, reqwest::Method::POST, &b, &alice, &renamed).json(&hello_call(4)));
        assert_session_not_found(&label("the id under B's route"), &post.await);

        // B's 404s ended nothing on A: the session still works where it lives.
        let (status, _, body) =
            send(legacy(&http, reqwest::Method::POST, &a, &alice, &on_a).json(&hello_call(5)))
                .await;
        assert_eq!(status, 200, "{}: {body}", label("A keeps the session"));

        // The client's recovery: a new session on B, served there.
        let on_b = open_session(&http, &b, &alice).await;
        assert!(on_b.starts_with("mcp-b."), "{on_b}");
        let (status, _, body) =
            send(legacy(&http, reqwest::Method::POST, &b, &alice, &on_b).json(&hello_call(6)))
                .await;
        assert_eq!(status, 200, "{body}");
        let text = body["result"]["content"][0]["text"].as_str().unwrap_or("");
        assert!(
            text.contains("alice"),
            "{}: {body}",
            label("served as alice")
        );

        // Another user's session is never served: unknown on the replica that does not
        // hold it (404), refused on the one that does (403), and still bob's afterwards.
        let bob = fake.token("bob", "mcp:read", BALANCED_RESOURCE);
        let bobs = open_session(&http, &b, &bob).await;
        let (status, _, body) =
            send(legacy(&http, reqwest::Method::POST, &a, &alice, &bobs).json(&hello_call(7)))
                .await;
        assert_eq!(status, 404, "{}: {body}", label("bob's session on A"));
        let (status, _, body) =
            send(legacy(&http, reqwest::Method::POST, &b, &alice, &bobs).json(&hello_call(8)))
                .await;
        assert_eq!(status, 403, "{}: {body}", label("bob's session on B"));
        let (status, _, body) =
            send(legacy(&http, reqwest::Method::POST, &b, &bob, &bobs).json(&hello_call(9))).await;
        assert_eq!(status, 200, "{body}");
        let text = body["result"]["content"][0]["text"].as_str().unwrap_or("");
        assert!(text.contains("bob"), "{}: {body}", label("served as bob"));

        // Nothing on B failed: 404s and one 403, no 5xx, one session per subject.
        let requests = metric_lines(&http, &b, "mcp_server_http_requests_total").await;
        assert!(
            requests.iter().any(|l| l.contains("status=\"404\"")),
            "{requests:?}"
        );
        assert!(
            !requests.iter().any(|l| l.contains("status=\"5")),
            "{}: {requests:?}",
            label("no 5xx on B")
        );
        let sessions = metric_lines(&http, &b, "mcp_server_sessions").await;
        assert!(
            sessions.iter().any(|l| l.ends_with(" 2")),
            "{}: {sessions:?}",
            label("B holds alice's and bob's sessions only")
        );
    }
}
