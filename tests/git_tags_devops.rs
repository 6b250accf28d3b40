//! Azure DevOps git tags, with the real managed identity credential against
//! the managed identity endpoint stand-in (tests/common/identity.rs) and a
//! loopback Azure DevOps that keeps refs, answers the refs API as the
//! service does (one result per update, `staleOldObjectId` for a ref that
//! exists, a sign-in page for a token it does not take), and checks every
//! request and answer against Microsoft's published Azure DevOps REST
//! specification (`specification/git/7.1/git.json`, operations
//! `Refs_Update Refs` and `Refs_List`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::identity::{self, IdentityEndpoint};
use common::openapi::{self, Exchange};
use image_factory::azure::identity::Identity;
use image_factory::domain::git_tag::{TagName, TagOutcome};
use image_factory::domain::run::RepositoryRef;
use image_factory::ports::git::GitTags;
use image_factory::web::azure_devops::AzureDevOpsTags;
use serde_json::{Value, json};

const A: &str = "33b55f7cb7e7e245323987634f960cf4a6e6bc74";
const B: &str = "44b55f7cb7e7e245323987634f960cf4a6e6bc74";
const PROJECT: &str = "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c";
const REPOSITORY: &str = "278d5cd2-584d-4b63-824a-2ba458937249";
const NO_OBJECT: &str = "0000000000000000000000000000000000000000";

#[derive(Default)]
struct State {
    commits: BTreeSet<String>,
    refs: BTreeMap<String, String>,
    /// Whether the identity may create tags.
    denied: bool,
    failures: Vec<u16>,
    operations: Vec<String>,
    violations: Vec<String>,
    tokens: Vec<String>,
}

#[derive(Clone)]
struct DevOps {
    state: Arc<Mutex<State>>,
    /// The token the service takes.
    token: Arc<Mutex<String>>,
}

impl DevOps {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn serve(&self) -> String {
        let devops = self.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let devops = devops.clone();
                async move { devops.answer(method, uri, headers, body) }
            },
        );
        common::serve_loopback(app).await
    }

    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let query: BTreeMap<String, String> =
            serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
        let request: Option<Value> = if body.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&body).unwrap_or(Value::String("<not JSON>".into())))
        };
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        self.state().tokens.push(bearer.clone());
        if bearer != *self.token.lock().unwrap_or_else(|e| e.into_inner()) {
            // What the service answers a token it does not take: a sign-in page.
            return (
                StatusCode::NON_AUTHORITATIVE_INFORMATION,
                [("content-type", "text/html")],
                "<html>Azure DevOps Services | Sign In</html>",
            )
                .into_response();
        }
        let operation = if method == Method::POST {
            "Refs_Update Refs"
        } else {
            "Refs_List"
        };
        let (status, answer) = self.route(&method, &query, request.as_ref());
        // The specification describes the list without the `{count, value}`
        // envelope every list answer has (its own examples show it).
        let described = match (&answer["value"], answer["count"].as_u64()) {
            (Value::Array(items), Some(count)) if count as usize == items.len() => {
                Value::Array(items.clone())
            }
            _ => answer.clone(),
        };
        let exchange = Exchange {
            method: method.to_string(),
            path: uri.path().to_string(),
            query,
            request,
            status,
            answer: described,
        };
        let mut state = self.state();
        if let Err(broken) = openapi::azure_devops_git().check(operation, &exchange) {
            state.violations.push(format!("{operation}: {broken:?}"));
        }
        if exchange.query.get("api-version").map(String::as_str)
            != Some(openapi::azure_devops_git().version())
        {
            state
                .violations
                .push(format!("{operation}: api-version {:?}", exchange.query));
        }
        state.operations.push(operation.to_string());
        (
            StatusCode::from_u16(status).expect("status"),
            axum::Json(answer),
        )
            .into_response()
    }

    fn route(
        &self,
        method: &Method,
        query: &BTreeMap<String, String>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut state = self.state();
        if !state.failures.is_empty() {
            let status = state.failures.remove(0);
            return (
                status,
                json!({ "$id": "1", "message": "The service is unavailable.", "typeKey": "ServiceUnavailableException", "errorCode": 0 }),
            );
        }
        if method == Method::GET {
            let prefix = format!("refs/{}", query.get("filter").cloned().unwrap_or_default());
            let value: Vec<Value> = state
                .refs
                .iter()
                .filter(|(name, _)| name.starts_with(&prefix))
                .map(|(name, id)| json!({ "name": name, "objectId": id, "url": "https://dev.azure.com/x" }))
                .collect();
            return (200, json!({ "value": value, "count": value.len() }));
        }
        let updates = body.and_then(Value::as_array).cloned().unwrap_or_default();
        let mut results = Vec::new();
        for update in updates {
            let name = update["name"].as_str().unwrap_or_default().to_string();
            let old = update["oldObjectId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let new = update["newObjectId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let current = state.refs.get(&name).cloned().unwrap_or(NO_OBJECT.into());
            let status = if state.denied {
                "createTagPermissionRequired"
            } else if current != old {
                "staleOldObjectId"
            } else if !state.commits.contains(&new) {
                "unresolvableToCommit"
            } else {
                state.refs.insert(name.clone(), new.clone());
                "succeeded"
            };
            results.push(json!({
                "repositoryId": REPOSITORY,
                "name": name,
                "oldObjectId": old,
                "newObjectId": new,
                "isLocked": false,
                "updateStatus": status,
                "success": status == "succeeded"
            }));
        }
        (200, json!({ "value": results, "count": results.len() }))
    }
}

#[test]
fn the_factorys_identity_tags_azure_devops_commits_and_never_moves_a_tag() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let identity_endpoint = IdentityEndpoint::serve_for_process(&runtime);
    runtime.block_on(async {
        let devops = DevOps {
            state: Arc::default(),
            token: Arc::new(Mutex::new(identity::token_for(
                "499b84ac-1321-427f-aa17-267ca6975798",
            ))),
        };
        devops.state().commits = [A, B].map(String::from).into();
        let base = devops.serve().await;
        let credential = Identity::Managed {
            client_id: Some(identity::CLIENT_ID.to_string()),
        }
        .credential()
        .expect("managed identity credential");
        // The loopback service stands for an Azure DevOps Server the settings name.
        let tags = AzureDevOpsTags::new(credential.clone(), Some(&base)).expect("adapter");
        let repo = RepositoryRef::AzureDevOps {
            organization_url: format!("{base}/fabrikam"),
            project: PROJECT.into(),
            repository_id: REPOSITORY.into(),
        };
        let name = TagName::new("example", &"1.2.3").expect("tag");

        assert_eq!(
            tags.tag(Some(&repo), &name, A).await,
            Ok(TagOutcome::Tagged)
        );
        assert_eq!(devops.state().refs["refs/tags/example/1.2.3"], A);
        assert_eq!(
            tags.tag(Some(&repo), &name, A).await,
            Ok(TagOutcome::AlreadyThere)
        );
        assert_eq!(
            tags.tag(Some(&repo), &name, B).await,
            Ok(TagOutcome::Conflict { existing: A.into() })
        );
        assert_eq!(
            devops.state().refs["refs/tags/example/1.2.3"],
            A,
            "never moved"
        );

        // The identity lacks Create tag: permanent, naming the permission.
        devops.state().denied = true;
        let other = TagName::new("example", &"1.2.4").expect("tag");
        let err = tags.tag(Some(&repo), &other, A).await.expect_err("denied");
        assert!(
            !err.transient && err.message.contains("Create tag"),
            "{err:?}"
        );
        devops.state().denied = false;

        // A commit the repository does not have: permanent.
        let unknown = "5555555555555555555555555555555555555555";
        let err = tags
            .tag(Some(&repo), &other, unknown)
            .await
            .expect_err("unknown");
        assert!(
            !err.transient && err.message.contains("unresolvableToCommit"),
            "{err:?}"
        );

        // The service down: transient.
        devops.state().failures = vec![503];
        let err = tags.tag(Some(&repo), &other, A).await.expect_err("503");
        assert!(err.transient, "{err:?}");
        assert_eq!(
            tags.tag(Some(&repo), &other, A).await,
            Ok(TagOutcome::Tagged)
        );

        // An identity the organization does not know: a sign-in page, permanent.
        let taken = std::mem::replace(
            &mut *devops.token.lock().expect("lock"),
            "another identity's token".into(),
        );
        let err = tags.tag(Some(&repo), &other, A).await.expect_err("203");
        assert!(!err.transient && err.message.contains("203"), "{err:?}");
        assert!(
            err.message.contains("add the identity to the organization"),
            "{err:?}"
        );
        *devops.token.lock().expect("lock") = taken;

        // An organization outside Azure DevOps' hosts never sees the token.
        let cloud_only = AzureDevOpsTags::new(credential, None).expect("adapter");
        let requests_before = devops.state().tokens.len();
        let err = cloud_only
            .tag(Some(&repo), &other, A)
            .await
            .expect_err("untrusted");
        assert!(
            !err.transient && err.message.contains("not sent there"),
            "{err:?}"
        );
        assert_eq!(devops.state().tokens.len(), requests_before);

        // Every token the fake saw was the identity's token for Azure DevOps.
        let state = devops.state();
        let token = devops.token.lock().expect("lock").clone();
        assert!(
            state.tokens.iter().all(|t| *t == token),
            "{:?}",
            state.tokens
        );
        assert!(
            identity_endpoint
                .requests()
                .iter()
                .all(|r| r.resource == "499b84ac-1321-427f-aa17-267ca6975798"),
            "{:?}",
            identity_endpoint
                .requests()
                .iter()
                .map(|r| &r.resource)
                .collect::<Vec<_>>()
        );
        assert!(state.operations.contains(&"Refs_List".to_string()));
        assert!(state.violations.is_empty(), "{:#?}", state.violations);
    });
}
