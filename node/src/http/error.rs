//! The API's errors: an HTTP status and a JSON body naming what went
//! wrong and, for a batch, the entry and field path.

use http_body_util::Full;
use hyper::{
    body::Bytes,
    header::{HeaderValue, ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE},
    Response, StatusCode,
};

/// A refused request. Its body is
/// `{"error": CODE, "message": TEXT, "entry": N, "field": PATH}`
/// (`entry` and `field` only when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (`unauthorized`, `bad_json`...).
    pub code: &'static str,
    /// What went wrong, for a human.
    pub message: String,
    /// 0-based index of the offending batch entry.
    pub entry: Option<usize>,
    /// Path of the offending field in the request body, e.g.
    /// `requests[3].backend.weight`.
    pub field: Option<String>,
    /// The methods the path allows (for 405).
    pub allow: Option<String>,
}

impl ApiError {
    /// An error without entry or field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            entry: None,
            field: None,
            allow: None,
        }
    }

    /// The same error, about `field` of batch entry `entry`.
    pub fn at(mut self, entry: Option<usize>, field: impl Into<String>) -> Self {
        self.entry = entry;
        self.field = Some(field.into());
        self
    }

    /// The JSON response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut body = serde_json::json!({ "error": self.code, "message": self.message });
        if let Some(entry) = self.entry {
            body["entry"] = entry.into();
        }
        if let Some(field) = &self.field {
            body["field"] = field.as_str().into();
        }
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(ALLOW, allow);
        }
        response
    }
}

/// A JSON response with `status`.
pub(super) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    // A Value always serializes; the fallback only keeps this total.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
