//! The JSON HTTP API (`[http]`) against a real 3-node cluster (edgelb-sim's
//! namespaces, real `lbnode` daemons with XDP attached), spoken from the
//! client namespace over real sockets: every route of `deploy/openapi.json`
//! exists and every route the server has is documented; no or a wrong
//! token is 401 with nothing applied; a 210-entry batch is exactly one new
//! version on every node with one digest; invalid batches name the entry
//! and field with the version unchanged; oversized bodies are 413; a batch
//! sent to a follower is committed; garbage and stalled requests do not
//! stop the server answering the next one.
//!
//! Needs root and the workspace binaries:
//! `cargo build --release -p edgelb-node -p edgelb-sim` first.

mod support;

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use edgelb_node::http::ROUTES;
use edgelb_sim::cluster::{backend_addr, in_namespace, lb_addr, Cluster, HTTP_PORT};
use serde_json::{json, Value};
use support::{all_at, ok, settled_cluster};

const VIPS: usize = 10;
const BACKENDS: usize = 20;
/// Longest a single exchange may take (a batch commits through Raft).
const EXCHANGE: Duration = Duration::from_secs(20);

/// A TCP connection to node `i`'s HTTP API, opened in the client namespace
/// (the socket stays in it once returned).
fn connect(cluster: &Cluster, i: usize) -> TcpStream {
    let addr = SocketAddr::from((lb_addr(i), HTTP_PORT));
    let s = in_namespace(cluster.client.name(), move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(3))
    })
    .expect("namespace thread")
    .expect("connect to the HTTP API");
    s.set_read_timeout(Some(EXCHANGE)).unwrap();
    s.set_write_timeout(Some(EXCHANGE)).unwrap();
    s
}

/// One answer: status code, header block and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// Sends `raw` on a new connection and reads the answer to the end (every
/// request the helpers build says `Connection: close`).
///
/// A server that answers before reading a body (401, 413) closes with the
/// body unread, which the kernel turns into a reset: the answer read
/// before it counts, and so does a send cut short by it.
fn exchange(cluster: &Cluster, i: usize, raw: &[u8]) -> Answer {
    let mut s = connect(cluster, i);
    let sent = s.write_all(raw);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let read = loop {
        match s.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(e),
        }
    };
    assert!(
        !bytes.is_empty(),
        "no answer (send: {sent:?}, read: {read:?})"
    );
    parse_answer(&bytes)
}

fn parse_answer(bytes: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    Answer {
        status,
        // Header names are case-insensitive: compare them in lower case.
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn request(
    cluster: &Cluster,
    i: usize,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: lb{i}\r\nConnection: close\r\n");
    if let Some(t) = token {
        let _ = write!(raw, "Authorization: Bearer {t}\r\n");
    }
    if let Some(b) = body {
        let _ = write!(
            raw,
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
    } else {
        raw.push_str("\r\n");
    }
    exchange(cluster, i, raw.as_bytes())
}

fn vip_key(v: usize) -> Value {
    json!({ "address": "192.0.2.10", "port": 8000 + v, "protocol": "Tcp" })
}

fn add_backend(v: usize, b: usize, weight: i64) -> Value {
    json!({ "op": "backend_add", "vip": vip_key(v),
            "backend": { "address": backend_addr(b + 1).to_string(), "weight": weight, "state": "Active" } })
}

/// 10 VIPs x 20 backends (the sim's real hosts, so health checks pass and
/// the table moves only by our writes): 210 entries.
fn big_batch() -> Vec<Value> {
    let mut requests = Vec::new();
    for v in 0..VIPS {
        requests.push(json!({ "op": "vip_add", "key": vip_key(v),
            "flags": { "hash_without_source_port": false, "hash_dst_port_only": false },
            "encapsulation": "IpIp" }));
        for b in 0..BACKENDS {
            requests.push(add_backend(v, b, 10 + b as i64));
        }
    }
    requests
}

/// The (METHOD, path) pairs `deploy/openapi.json` documents.
fn documented_routes() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(include_str!("../../deploy/openapi.json"))
        .expect("deploy/openapi.json is JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

#[test]
fn http_api_on_a_real_cluster() {
    let (cluster, v0) = settled_cluster(BACKENDS);
    let token = std::fs::read_to_string(&cluster.token_file).unwrap();
    let token = token.trim();

    // --- the document and the server have the same routes, and each answers.
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(documented_routes(), served, "deploy/openapi.json vs ROUTES");
    for (method, path) in &served {
        let body = (method == "POST").then_some(r#"{"requests": []}"#);
        let refused = request(&cluster, 1, method, path, None, body);
        assert_eq!(refused.status, 401, "{method} {path}: {refused:?}");
        assert!(
            refused.head.contains("www-authenticate: bearer"),
            "{refused:?}"
        );
        let wrong = request(
            &cluster,
            2,
            method,
            path,
            Some("not-the-token-0123456789"),
            body,
        );
        assert_eq!(wrong.status, 401, "{method} {path}: {wrong:?}");
        assert_eq!(wrong.json()["error"], "unauthorized");
        let answer = request(&cluster, 3, method, path, Some(token), body);
        assert_eq!(answer.status, 200, "{method} {path}: {answer:?}");
        assert!(
            answer.head.contains("content-type: application/json"),
            "{answer:?}"
        );
        answer.json();
    }
    // An empty batch changes nothing: no version.
    assert_eq!(cluster.current_version().unwrap(), v0);

    // --- 404 / 405 as HTTP says.
    let missing = request(&cluster, 1, "GET", "/v1/nope", Some(token), None);
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.json()["error"], "not_found");
    let wrong_method = request(&cluster, 1, "GET", "/v1/batch", Some(token), None);
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
    assert!(
        wrong_method.head.contains("allow: post"),
        "{wrong_method:?}"
    );
    let delete = request(&cluster, 1, "DELETE", "/v1/state", Some(token), None);
    assert_eq!(delete.status, 405, "{delete:?}");

    // --- the 210-entry batch without a token, then with a wrong one: nothing.
    let batch = json!({ "expect_version": v0, "requests": big_batch() }).to_string();
    for t in [None, Some("sim-admin-token-0123456788")] {
        let r = request(&cluster, 1, "POST", "/v1/batch", t, Some(&batch));
        assert_eq!(r.status, 401, "{r:?}");
    }
    assert_eq!(cluster.current_version().unwrap(), v0);

    // --- with the token: exactly one new version on every node, one digest.
    let r = request(&cluster, 1, "POST", "/v1/batch", Some(token), Some(&batch));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["version"].as_u64(), Some(v0 + 1), "{r:?}");
    let d1 = all_at(&cluster, v0 + 1);

    // --- GET state is `lbctl export`'s document, as JSON.
    let state = request(&cluster, 2, "GET", "/v1/state", Some(token), None);
    assert_eq!(state.status, 200, "{state:?}");
    let mut state = state.json();
    assert_eq!(state["version"].as_u64(), Some(v0 + 1));
    assert_eq!(state["vips"].as_array().map(Vec::len), Some(VIPS));
    let exported: toml::Value = toml::from_str(&ok(&cluster, 3, &["export"])).expect("export");
    state.as_object_mut().unwrap().remove("version");
    assert_eq!(state, serde_json::to_value(exported).unwrap());

    // --- GET status and stats name every node / VIP.
    let status = request(&cluster, 3, "GET", "/v1/status", Some(token), None).json();
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{status}");
    for n in nodes {
        assert_eq!(
            n["report"]["table_digest"].as_str(),
            Some(d1.as_str()),
            "{status}"
        );
        assert_eq!(n["report"]["xdp"][0]["interface"], "eth0", "{status}");
    }
    let stats = request(&cluster, 1, "GET", "/v1/stats", Some(token), None).json();
    assert_eq!(
        stats["vips"].as_array().map(Vec::len),
        Some(VIPS),
        "{stats}"
    );
    assert!(stats["vips"][0]["vip"].as_str().unwrap().ends_with("/tcp"));
    assert!(stats["drops"].is_object(), "{stats}");

    // --- invalid batches: 400/409/422 naming entry and field, nothing applied.
    let v = v0 + 1;
    let fresh_vip = json!({ "op": "vip_add", "key": vip_key(50),
        "flags": { "hash_without_source_port": false, "hash_dst_port_only": false },
        "encapsulation": "IpIp" });
    let cases: Vec<(String, u16, &str, Option<u64>, &str)> = vec![
        (
            json!({ "requests": [fresh_vip, add_backend(50, 0, 5), add_backend(50, 1, 0)] })
                .to_string(),
            422,
            "rejected",
            Some(2),
            "requests[2].backend.weight",
        ),
        (
            json!({ "requests": [fresh_vip, add_backend(50, 0, 5), add_backend(50, 0, 6)] })
                .to_string(),
            422,
            "rejected",
            Some(2),
            "requests[2].backend.address",
        ),
        (
            json!({ "requests": [fresh_vip, add_backend(7, 0, 5)] }).to_string(),
            422,
            "rejected",
            Some(1),
            "requests[1].backend.address",
        ),
        (
            json!({ "requests": [fresh_vip, { "op": "status" }] }).to_string(),
            422,
            "not_a_write",
            Some(1),
            "requests[1].op",
        ),
        (
            json!({ "expect_version": v0, "requests": [fresh_vip] }).to_string(),
            409,
            "version_mismatch",
            None,
            "expect_version",
        ),
        (
            json!({ "requests": [fresh_vip], "extra": 1 }).to_string(),
            400,
            "bad_json",
            None,
            "extra",
        ),
        (
            json!({ "requests": [fresh_vip, add_backend(50, 0, -3)] }).to_string(),
            400,
            "bad_json",
            Some(1),
            "requests[1]",
        ),
    ];
    for (body, status, code, entry, field) in &cases {
        let r = request(&cluster, 2, "POST", "/v1/batch", Some(token), Some(body));
        assert_eq!(r.status, *status, "{body}: {r:?}");
        let e = r.json();
        assert_eq!(e["error"], *code, "{body}: {e}");
        assert_eq!(e["entry"].as_u64(), *entry, "{body}: {e}");
        assert!(
            e["field"].as_str().is_some_and(|f| f.starts_with(field)),
            "{body}: {e}"
        );
        assert!(!e["message"].as_str().unwrap_or("").is_empty(), "{e}");
    }
    for garbage in ["{\"requests\": [", "not json", ""] {
        let r = request(&cluster, 2, "POST", "/v1/batch", Some(token), Some(garbage));
        assert_eq!(r.status, 400, "{garbage:?}: {r:?}");
        let e = r.json();
        assert_eq!(e["error"], "bad_json", "{e}");
        assert!(e["message"].as_str().unwrap().contains("line 1"), "{e}");
    }
    assert_eq!(cluster.current_version().unwrap(), v);
    assert_eq!(all_at(&cluster, v), d1);

    // --- oversized: a declared body over the 1 MiB default cap is refused
    // before it is read; a chunked one once the cap is passed.
    let declared = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        (1 << 20) + 1
    );
    let r = exchange(&cluster, 1, declared.as_bytes());
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.json()["error"], "too_large");
    let r = request(&cluster, 1, "GET", "/v1/state", None, None);
    assert_eq!(r.status, 401, "the server still answers: {r:?}");
    assert_eq!(cluster.current_version().unwrap(), v);

    // --- a batch sent to a follower is committed (through the leader).
    let leader = cluster.leader().expect("leader");
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let set_weight = json!({ "expect_version": v, "requests": [{ "op": "backend_set_weight",
        "vip": vip_key(3), "address": backend_addr(1).to_string(), "weight": 500 }] })
    .to_string();
    let r = request(
        &cluster,
        follower,
        "POST",
        "/v1/batch",
        Some(token),
        Some(&set_weight),
    );
    assert_eq!(r.status, 200, "follower {follower}: {r:?}");
    assert_eq!(r.json()["version"].as_u64(), Some(v + 1));
    let d2 = all_at(&cluster, v + 1);
    assert_ne!(d1, d2);
    let state = request(&cluster, leader, "GET", "/v1/state", Some(token), None).json();
    let weight = &state["vips"][3]["backends"][0];
    assert_eq!(weight["address"], backend_addr(1).to_string(), "{state}");
    assert_eq!(weight["weight"], 500, "{state}");

    // --- garbage bytes and stalled requests do not stop the server.
    let garbage = exchange(&cluster, 1, b"\x00\x01\x02 garbage \xff\r\n\r\n");
    assert_eq!(garbage.status, 400, "{garbage:?}");
    // Headers that never finish, and a body that never arrives.
    let mut stalled_head = connect(&cluster, 1);
    stalled_head
        .write_all(b"GET /v1/state HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut stalled_body = connect(&cluster, 1);
    write!(
        stalled_body,
        "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 100\r\n\r\n{{\"requests\""
    )
    .unwrap();
    // Meanwhile the next request is answered at once.
    let r = request(&cluster, 1, "GET", "/v1/status", Some(token), None);
    assert_eq!(r.status, 200, "{r:?}");
    // The stalled ones are closed within bounded time (408 or a close),
    // and the partial batch applied nothing.
    for (name, mut s) in [("headers", stalled_head), ("body", stalled_body)] {
        let mut rest = Vec::new();
        let read = s.read_to_end(&mut rest);
        assert!(
            read.is_ok(),
            "stalled {name}: not closed by the server: {read:?}"
        );
        let text = String::from_utf8_lossy(&rest);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "stalled {name}: {text}"
        );
    }
    let r = request(&cluster, 1, "GET", "/v1/state", Some(token), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["version"].as_u64(), Some(v + 1));
}
