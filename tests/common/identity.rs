//! The managed identity endpoint of App Service and Container Apps, as the
//! platform serves it to a container: `GET $IDENTITY_ENDPOINT?resource=..&
//! api-version=2019-08-01[&client_id=..]` with the `X-IDENTITY-HEADER` secret
//! from `IDENTITY_HEADER`, answering `access_token`, `expires_on`,
//! `resource`, `token_type` and `client_id`. Blob Storage tokens are shaped
//! as Entra ID's (an unsigned JWT whose issuer, audience and lifetime Azurite
//! checks; [`StorageToken`] makes them bad on purpose); every other resource
//! gets its own recognisable token ([`token_for`]), so a test can tell which
//! token reached which service. Every request and every token is recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::azurite::storage_token;

/// The path the stand-in serves tokens on.
pub const PATH: &str = "/msi/token";
/// The value of `IDENTITY_HEADER` the platform gives the container.
pub const HEADER_SECRET: &str = "platform-secret-header";
/// The client id of the user-assigned identity (`AZURE_CLIENT_ID`).
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";

/// The token the stand-in issues for `resource`.
pub fn token_for(resource: &str) -> String {
    let readable: String = resource
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("mi-token-for-{readable}")
}

/// The Blob Storage resource.
const STORAGE: &str = "https://storage.azure.com";

/// What the endpoint hands out for Blob Storage.
#[derive(Clone, Copy, Debug, Default)]
pub enum StorageToken {
    /// A current token for the resource asked for.
    #[default]
    Valid,
    /// A token whose lifetime ended (its `exp` is past; the endpoint still
    /// says it is good for an hour).
    Expired,
    /// A current token for another resource (Key Vault).
    WrongAudience,
    /// No token at all (an empty `access_token`).
    Missing,
}

/// One token request.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The `resource` asked for.
    pub resource: String,
    /// The `client_id` asked for, if any.
    pub client_id: Option<String>,
}

/// The endpoint's state: what was asked, and what it refuses.
#[derive(Clone, Default)]
pub struct IdentityEndpoint {
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    refused: Arc<Mutex<Vec<String>>>,
    storage: Arc<Mutex<StorageToken>>,
    issued: Arc<Mutex<Vec<String>>>,
}

impl IdentityEndpoint {
    /// Serves a fresh endpoint on `runtime` and points this process's
    /// managed identity credential at it (`IDENTITY_ENDPOINT`,
    /// `IDENTITY_HEADER`). Only for a binary's single test, before the
    /// runtime runs anything: the environment is set while no other thread
    /// reads it.
    pub fn serve_for_process(runtime: &tokio::runtime::Runtime) -> IdentityEndpoint {
        let endpoint = IdentityEndpoint::default();
        let url = runtime.block_on(endpoint.serve());
        // SAFETY: the caller is the only test of its binary, and no thread of
        // the runtime reads the environment while it is idle: the managed
        // identity credential reads these when it is built, later.
        unsafe {
            std::env::set_var("IDENTITY_ENDPOINT", &url);
            std::env::set_var("IDENTITY_HEADER", HEADER_SECRET);
        }
        endpoint
    }

    /// Every token request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().expect("lock").clone()
    }

    /// From now on, Blob Storage tokens are `token`.
    pub fn set_storage_token(&self, token: StorageToken) {
        *self.storage.lock().expect("lock") = token;
    }

    /// Every token handed out so far (none may leak).
    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().expect("lock").clone()
    }

    /// From now on, requests for `resource` fail at once (400, as for an
    /// identity the app does not have; a 500 would be retried for seconds).
    pub fn refuse(&self, resource: &str) {
        self.refused
            .lock()
            .expect("lock")
            .push(resource.to_string());
    }

    /// Answers one request of `PATH`.
    pub fn answer(&self, query: &BTreeMap<String, String>, headers: &HeaderMap) -> Response {
        let secret_ok = headers
            .get("x-identity-header")
            .is_some_and(|v| v.as_bytes() == HEADER_SECRET.as_bytes());
        let resource = query.get("resource").cloned().unwrap_or_default();
        if !secret_ok
            || resource.is_empty()
            || query.get("api-version").map(String::as_str) != Some("2019-08-01")
        {
            return StatusCode::BAD_REQUEST.into_response();
        }
        self.requests.lock().expect("lock").push(TokenRequest {
            resource: resource.clone(),
            client_id: query.get("client_id").cloned(),
        });
        if self.refused.lock().expect("lock").contains(&resource) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "statusCode": 400, "message": "Unable to load the proper Managed Identity." })),
            )
                .into_response();
        }
        let expires = chrono::Utc::now() + chrono::Duration::hours(1);
        let token = if resource.trim_end_matches('/') == STORAGE {
            match *self.storage.lock().expect("lock") {
                StorageToken::Valid => storage_token(&resource, 3600),
                StorageToken::Expired => storage_token(&resource, -300),
                StorageToken::WrongAudience => storage_token("https://vault.azure.net", 3600),
                StorageToken::Missing => String::new(),
            }
        } else {
            token_for(&resource)
        };
        self.issued.lock().expect("lock").push(token.clone());
        axum::Json(json!({
            "access_token": token,
            "expires_on": expires.timestamp().to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": CLIENT_ID
        }))
        .into_response()
    }

    /// Serves the endpoint alone on loopback; answers its `IDENTITY_ENDPOINT` URL.
    pub async fn serve(&self) -> String {
        let endpoint = self.clone();
        let app = axum::Router::new().route(
            PATH,
            axum::routing::get(
                move |axum::extract::Query(query): axum::extract::Query<
                    BTreeMap<String, String>,
                >,
                      headers: HeaderMap| {
                    let endpoint = endpoint.clone();
                    async move { endpoint.answer(&query, &headers) }
                },
            ),
        );
        format!("{}{PATH}", super::serve_loopback(app).await)
    }
}
