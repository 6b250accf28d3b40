//! A Resource Manager stand-in for contract tests: a real axum server on
//! loopback that answers a script of responses, records every request
//! (method, path and query, bearer token, body), and a credential that hands
//! out a fixed token. Every request and every scripted reply is checked
//! against the operation it addresses in the vendored REST API
//! specifications (`spec_validator`): a request the specifications refuse
//! (unknown path, method or api-version, unknown or read-only property) is
//! answered as Resource Manager answers it (404 or 400 with its error body),
//! and the test fails when the server is dropped, naming the operation, the
//! JSON path and the rule. Replies are matched on method and exact path.
//! Long-running operation monitors (`.../operations/...`,
//! `.../operationresults/...`) are part of Resource Manager's async protocol,
//! not of any specification: they are served unchecked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use image_factory::azure::arm::{ArmClient, Patience, Sleeper};
use image_factory::azure::compute::GalleryImage;
use image_factory::azure::{Azure, AzureSettings, ReaperSettings, TestVmSettings};
use serde_json::Value;

use super::spec_validator::{self, Exchange, Violations};

/// The versions of the gallery image the contract tests work on.
pub const VERSIONS: &str = "/subscriptions/sub-1/resourceGroups/rg-img-gallery/providers/Microsoft.Compute/galleries/acg_shared/images/windows-web-base/versions";

/// The gallery image whose versions are [`VERSIONS`], in the gallery of [`ArmServer::azure`].
pub fn gallery_image() -> GalleryImage {
    GalleryImage {
        subscription_id: "sub-1".into(),
        resource_group: "rg-img-gallery".into(),
        gallery: "acg_shared".into(),
        image: "windows-web-base".into(),
    }
}

/// The token every test credential hands out.
pub const TOKEN: &str = "contract-test-token";

/// A credential returning [`TOKEN`].
#[derive(Debug)]
pub struct FixedCredential;

#[async_trait::async_trait]
impl TokenCredential for FixedCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            TOKEN,
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// One scripted answer: served to the first request whose method and path
/// (no query; letter case ignored, as Resource Manager does) match.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The method expected.
    pub method: Method,
    /// The path expected (no query).
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// Headers answered; `{base}` here and in the body is replaced by the server's URL.
    pub headers: Vec<(String, String)>,
    /// The body answered (`Value::Null`: empty).
    pub body: Value,
}

impl Reply {
    /// A reply to `method path` with `status` and `body`.
    pub fn new(method: Method, path: &str, status: u16, body: Value) -> Reply {
        Reply {
            method,
            path: path.to_string(),
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Its method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

#[derive(Default)]
struct Script {
    replies: Vec<Reply>,
    seen: Vec<Seen>,
    base: String,
    violations: Violations,
}

/// The running server.
pub struct ArmServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    script: Arc<Mutex<Script>>,
    violations: Violations,
}

impl Drop for ArmServer {
    fn drop(&mut self) {
        self.violations.assert_none();
    }
}

impl ArmServer {
    /// Starts a server answering `replies` in order of matching.
    pub async fn start(replies: Vec<Reply>) -> ArmServer {
        spec_validator::ready().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let violations = Violations::default();
        let script = Arc::new(Mutex::new(Script {
            replies,
            seen: Vec::new(),
            base: base.clone(),
            violations: violations.clone(),
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(script.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ArmServer {
            base,
            script,
            violations,
        }
    }

    /// The exchanges the specifications refused so far (taken: the server
    /// then no longer fails the test for them).
    pub fn take_violations(&self) -> Vec<spec_validator::Violation> {
        self.violations.take()
    }

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().expect("lock").seen.clone()
    }

    /// Replies not yet served.
    pub fn unserved(&self) -> Vec<Reply> {
        self.script.lock().expect("lock").replies.clone()
    }

    /// The factory's Azure access through this server: subscription `sub-1`,
    /// the gallery `acg_shared` in `rg-img-gallery`, no build job, `test_vm`;
    /// and the waits its client's sleeper was asked for.
    pub fn azure(&self, test_vm: TestVmSettings) -> (Azure, Arc<Mutex<Vec<Duration>>>) {
        let (arm, waits) = self.client();
        let settings = AzureSettings {
            endpoint: self.base.clone(),
            subscription_id: "sub-1".into(),
            gallery_resource_group: Some("rg-img-gallery".into()),
            gallery: Some("acg_shared".into()),
            build_job: None,
            test_vm,
            reaper: ReaperSettings::default(),
        };
        (Azure { settings, arm }, waits)
    }

    /// A client for this server with a sleeper that records the waits asked for.
    pub fn client(&self) -> (ArmClient, Arc<Mutex<Vec<Duration>>>) {
        let waits = Arc::new(Mutex::new(Vec::new()));
        let recorder = waits.clone();
        let sleeper: Sleeper = Arc::new(move |d| {
            recorder.lock().expect("lock").push(d);
            Box::pin(async {})
        });
        let patience = Patience {
            throttle_retries: 3,
            max_retry_after: Duration::from_secs(60),
            poll_interval: Duration::from_secs(10),
            max_polls: 5,
        };
        let client = ArmClient::new(&self.base, Arc::new(FixedCredential), sleeper, patience)
            .expect("client");
        (client, waits)
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut script = script.lock().expect("lock");
    script.seen.push(Seen {
        method: method.clone(),
        uri: uri.to_string(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: serde_json::from_slice(&body).ok(),
    });
    let request_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let monitor = is_operation_monitor(uri.path());
    let exchange =
        |status: u16, response_headers: Vec<(String, String)>, response_body: Value| Exchange {
            method: method.to_string(),
            url: format!("https://management.azure.com{uri}"),
            request_headers: Vec::new(),
            request_body: request_body.clone(),
            status,
            response_headers,
            response_body,
        };
    let Some(index) = script
        .replies
        .iter()
        .position(|r| r.method == method && uri.path().eq_ignore_ascii_case(&r.path))
    else {
        if !monitor
            && let Err(violation) = spec_validator::check(&exchange(200, Vec::new(), Value::Null))
            && (violation.is_routing() || violation.in_request())
        {
            let (status, body) = violation.arm_answer();
            script.violations.push(violation);
            return (
                StatusCode::from_u16(status).expect("status"),
                axum::Json(body),
            )
                .into_response();
        }
        return (
            StatusCode::NOT_IMPLEMENTED,
            format!("no scripted reply for {method} {uri}"),
        )
            .into_response();
    };
    let mut reply = script.replies.remove(index);
    if !reply.body.is_null() {
        let text = reply.body.to_string().replace("{base}", &script.base);
        reply.body = serde_json::from_str(&text).expect("still JSON");
    }
    if !monitor {
        let headers = reply
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.replace("{base}", &script.base)))
            .collect();
        if let Err(violation) =
            spec_validator::check(&exchange(reply.status, headers, reply.body.clone()))
        {
            let refused = violation.is_routing() || violation.in_request();
            let answer = violation.arm_answer();
            script.violations.push(violation);
            if refused {
                // Resource Manager refuses the request: the scripted reply
                // stays unserved.
                script.replies.insert(index, reply);
                let (status, body) = answer;
                return (
                    StatusCode::from_u16(status).expect("status"),
                    axum::Json(body),
                )
                    .into_response();
            }
        }
    }
    let mut response = if reply.body.is_null() {
        StatusCode::from_u16(reply.status)
            .expect("status")
            .into_response()
    } else {
        (
            StatusCode::from_u16(reply.status).expect("status"),
            axum::Json(reply.body.clone()),
        )
            .into_response()
    };
    for (name, value) in &reply.headers {
        let value = value.replace("{base}", &script.base);
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    response
}

/// True for the URLs Resource Manager hands out to follow a long-running
/// operation (`Azure-AsyncOperation`, `Location`): not in any specification.
fn is_operation_monitor(path: &str) -> bool {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(str::to_ascii_lowercase)
        .collect();
    segments.iter().rev().skip(1).any(|s| {
        s.ends_with("operations")
            || s.ends_with("operationresults")
            || s.ends_with("operationstatuses")
    })
}

/// The GalleryRP 2024-03-03 example the gallery version replies are made from.
pub const GALLERY_VERSION_EXAMPLE: &str = "specification/compute/resource-manager/Microsoft.Compute/GalleryRP/stable/2024-03-03/examples/galleryExamples/GalleryImageVersion_Get.json";

/// A gallery image version as Resource Manager returns it: the GalleryRP
/// 2024-03-03 `GalleryImageVersion_Get` example's answer with this version's
/// id, name, state, latest flag, publication date and target regions (name,
/// replica count), and no policy violation.
pub fn gallery_version(
    id: &str,
    name: &str,
    state: &str,
    excluded: bool,
    published: &str,
    regions: &[(&str, u32)],
) -> serde_json::Value {
    let example = spec_validator::example(GALLERY_VERSION_EXAMPLE);
    let mut version = example["responses"]["200"]["body"].clone();
    let regions: Vec<serde_json::Value> = regions
        .iter()
        .map(|(region, replicas)| {
            serde_json::json!({ "name": region, "regionalReplicaCount": replicas, "storageAccountType": "Standard_LRS", "excludeFromLatest": excluded })
        })
        .collect();
    version["id"] = id.into();
    version["name"] = name.into();
    version["location"] = "West Europe".into();
    let properties = &mut version["properties"];
    properties["provisioningState"] = state.into();
    let profile = &mut properties["publishingProfile"];
    profile["targetRegions"] = regions.into();
    profile["excludeFromLatest"] = excluded.into();
    profile["publishedDate"] = published.into();
    properties["storageProfile"]["source"]["id"] =
        "/subscriptions/sub-1/resourceGroups/rg-build/providers/Microsoft.Compute/images/img"
            .into();
    properties["safetyProfile"]["reportedForPolicyViolation"] = false.into();
    if let Some(safety) = properties["safetyProfile"].as_object_mut() {
        safety.remove("policyViolations");
    }
    version
}

/// Tags_UpdateAtScope (Microsoft.Resources 2021-04-01,
/// `PATCH {scope}/providers/Microsoft.Resources/tags/default`): 200 with the
/// `TagsResource` wrapper holding `tags`.
pub fn tags_updated(scope: &str, tags: serde_json::Value) -> Reply {
    let path = format!("{scope}/providers/Microsoft.Resources/tags/default");
    Reply::new(
        Method::PATCH,
        &path,
        200,
        serde_json::json!({
            "id": path,
            "name": "default",
            "type": "Microsoft.Resources/tags",
            "properties": { "tags": tags }
        }),
    )
}
