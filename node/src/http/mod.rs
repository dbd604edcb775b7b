//! The JSON HTTP API for automation: the same operations as the admin
//! protocol's reads and batches, over HTTP/1.1 on a second port
//! (`[http]` in the node configuration, off unless `http.listen` is set),
//! authenticated with the admin token (`Authorization: Bearer TOKEN`).
//!
//! Routes are listed in [`ROUTES`] and documented in `deploy/openapi.json`.
//! `server` accepts connections and bounds them in time; `routes` turns a
//! request into an answer through the daemon's admin handler, so a batch
//! is validated and committed exactly as an admin `Request::Batch` is;
//! `documents` shapes the JSON answers and `error` the JSON errors.

pub mod documents;
mod error;
mod routes;
pub mod server;

pub use self::{
    error::ApiError,
    routes::{Api, Route, ROUTES},
};
