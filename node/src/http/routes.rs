//! Which request goes where: the route table, authentication, the body
//! cap, and each endpoint's answer through the daemon's admin handler.

use std::time::Duration;

use edgelb_consensus::{CommandError, ConsensusError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    body::{Body, Bytes, Incoming},
    header::{AUTHORIZATION, CONTENT_LENGTH},
    HeaderMap, Request, Response, StatusCode,
};
use serde::Deserialize;

use super::{documents, error::json_response, ApiError};
use crate::{
    admin::{
        protocol::{Request as AdminRequest, Response as AdminResponse},
        server::{constant_time_eq, AdminHandler},
    },
    daemon::admin_handler::{batch_command, Handler, WriteRefusal},
};

/// How long a client has to send a request's body once its headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    State,
    Status,
    Stats,
    Batch,
}

/// One route of the API: a method and a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path, e.g. `/v1/state`.
    pub path: &'static str,
    endpoint: Endpoint,
}

/// Every route the server answers (the rest is 404, or 405 for another
/// method on a known path); `deploy/openapi.json` documents each.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/v1/state",
        endpoint: Endpoint::State,
    },
    Route {
        method: "GET",
        path: "/v1/status",
        endpoint: Endpoint::Status,
    },
    Route {
        method: "GET",
        path: "/v1/stats",
        endpoint: Endpoint::Stats,
    },
    Route {
        method: "POST",
        path: "/v1/batch",
        endpoint: Endpoint::Batch,
    },
];

/// `POST /v1/batch`'s body: `Request::Batch` of the admin protocol
/// without its `op` tag.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    #[serde(default)]
    expect_version: Option<u64>,
    requests: Vec<AdminRequest>,
}

/// The API over one daemon.
pub struct Api {
    handler: Handler,
    token: Vec<u8>,
    max_body: u64,
}

impl Api {
    /// The API answering through `handler`, for clients presenting `token`,
    /// taking bodies of at most `max_body` bytes.
    pub fn new(handler: Handler, token: &str, max_body: u32) -> Self {
        Self {
            handler,
            token: token.as_bytes().to_vec(),
            max_body: u64::from(max_body),
        }
    }

    /// Answers one request; every failure is a JSON error.
    pub async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match self.route(request).await {
            Ok(body) => json_response(StatusCode::OK, &body),
            Err(e) => e.into_response(),
        }
    }

    async fn route(&self, request: Request<Incoming>) -> Result<serde_json::Value, ApiError> {
        let path = request.uri().path();
        let on_path: Vec<&Route> = ROUTES.iter().filter(|r| r.path == path).collect();
        if on_path.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route {path} (see deploy/openapi.json)"),
            ));
        }
        let Some(route) = on_path
            .iter()
            .find(|r| r.method == request.method().as_str())
        else {
            let allow = on_path
                .iter()
                .map(|r| r.method)
                .collect::<Vec<_>>()
                .join(", ");
            let mut e = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{path} takes {allow}, not {}", request.method()),
            );
            e.allow = Some(allow);
            return Err(e);
        };
        // Before the body is read: a stranger cannot make us buffer it.
        self.authenticate(request.headers())?;
        match route.endpoint {
            Endpoint::State => self.state().await,
            Endpoint::Status => self.read(AdminRequest::Status).await,
            Endpoint::Stats => self.read(AdminRequest::Stats).await,
            Endpoint::Batch => {
                let body = self.body(request).await?;
                self.batch(&body).await
            }
        }
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        match presented {
            Some(token) if constant_time_eq(token.trim_ascii(), &self.token) => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong admin token",
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "no admin token: send `Authorization: Bearer TOKEN`",
            )),
        }
    }

    /// The body, at most `max_body` bytes, within [`BODY_TIMEOUT`].
    async fn body(&self, request: Request<Incoming>) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the body exceeds {} bytes (http.max_body_bytes)",
                    self.max_body
                ),
            )
        };
        // A declared length over the cap is refused before any byte is read.
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body) {
            return Err(too_large());
        }
        let body = request.into_body();
        if body.size_hint().lower() > self.max_body {
            return Err(too_large());
        }
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("the body did not arrive within {BODY_TIMEOUT:?}"),
            )),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("reading the body: {e}"),
            )),
        }
    }

    /// `GET /v1/state`: a linearizable read at the leader, as `lbctl export`.
    async fn state(&self) -> Result<serde_json::Value, ApiError> {
        match self.handler.handle(AdminRequest::VipList).await {
            AdminResponse::Vips {
                version,
                vips,
                settings,
                connection,
            } => documents::state(version, &settings, &connection, vips)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e)),
            other => Err(unexpected(other)),
        }
    }

    /// `GET /v1/status` and `GET /v1/stats`.
    async fn read(&self, request: AdminRequest) -> Result<serde_json::Value, ApiError> {
        match self.handler.handle(request).await {
            AdminResponse::Status(s) => Ok(documents::status(&s)),
            AdminResponse::Stats(r) => Ok(documents::stats(&r)),
            other => Err(unexpected(other)),
        }
    }

    /// `POST /v1/batch`: the admin protocol's `Request::Batch`.
    async fn batch(&self, body: &[u8]) -> Result<serde_json::Value, ApiError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let parsed: BatchBody = serde_path_to_error::deserialize(&mut de).map_err(bad_json)?;
        de.end().map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("invalid JSON body: {e}"),
            )
        })?;
        let command = batch_command(parsed.expect_version, &parsed.requests).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_a_write",
                e.to_string(),
            )
            .at(Some(e.index), format!("requests[{}].op", e.index))
        })?;
        match self.handler.submit(command).await {
            Ok(version) => Ok(serde_json::json!({ "version": version })),
            Err(e) => Err(refusal(e, &parsed.requests)),
        }
    }
}

/// A body that is not JSON for [`BatchBody`]: 400, naming the field path
/// (and the entry, when the path is inside one).
fn bad_json(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let entry = path
        .strip_prefix("requests[")
        .and_then(|rest| rest.split(']').next())
        .and_then(|n| n.parse().ok());
    let message = format!("invalid JSON body: {inner}");
    let error = ApiError::new(StatusCode::BAD_REQUEST, "bad_json", message);
    if path == "." || path.is_empty() {
        error
    } else {
        error.at(entry, path)
    }
}

/// The HTTP form of a refused write.
fn refusal(e: WriteRefusal, requests: &[AdminRequest]) -> ApiError {
    let message = e.to_string();
    match e {
        WriteRefusal::Capacity(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "capacity", message)
        }
        WriteRefusal::Consensus(ConsensusError::Rejected(CommandError::InBatch {
            index,
            field,
            ..
        })) => {
            // The command's fields are the request's, except that a
            // `settings_set` holds them under `settings`.
            let field = match requests.get(index) {
                Some(AdminRequest::SettingsSet { .. }) if !field.starts_with("settings") => {
                    format!("settings.{field}")
                }
                _ => field,
            };
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", message)
                .at(Some(index), format!("requests[{index}].{field}"))
        }
        WriteRefusal::Consensus(ConsensusError::Rejected(CommandError::VersionMismatch {
            ..
        })) => ApiError::new(StatusCode::CONFLICT, "version_mismatch", message)
            .at(None, "expect_version"),
        WriteRefusal::Consensus(ConsensusError::Rejected(_)) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", message)
        }
        WriteRefusal::Consensus(ConsensusError::NoLeader(_)) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message)
        }
        WriteRefusal::Consensus(ConsensusError::Indeterminate(_)) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown", message)
        }
        WriteRefusal::Consensus(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
        }
    }
}

/// An admin answer a read did not expect: its error (no leader, the data
/// plane unreadable) as 503.
fn unexpected(response: AdminResponse) -> ApiError {
    match response {
        AdminResponse::Error { message } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected admin answer {other:?}"),
        ),
    }
}
