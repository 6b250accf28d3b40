//! Sign-in in front of the factory, as the handler sees it: a local factory
//! with `IMAGE_FACTORY_SIGN_IN=entra`, sent the `X-MS-CLIENT-PRINCIPAL`
//! header App Service authentication sends (Base64 JSON with `auth_typ`,
//! `claims`, `name_typ` and `role_typ`, the Entra ID app roles as `roles`
//! claims). The handler refuses the runs API and the dashboard without a
//! principal it can read, and operator actions (out-of-band runs, decisions
//! recorded for an approver, rollbacks) without the operator role; the
//! operator token plays no part. The webhook and the approval links, which
//! sign-in leaves out, work without a principal; a signed-in user opening an
//! approval link must be the approver it was issued to, named by email
//! through the deployment's directory. And the command line, talking to a
//! deployed factory, sends the function key and an Entra ID token from the
//! identity, never printing either, and reports a sign-in redirect instead
//! of following it.

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::identity::{self, IdentityEndpoint};
use common::{Factory, OPERATOR_TOKEN, Options, copy_example};
use image_factory::domain::approvers::Directory;
use image_factory::domain::principal::{MAPPED_ROLE_CLAIM, OPERATOR_ROLE};
use image_factory::domain::run::{RunId, RunStatus};
use serde_json::{Value, json};

const ALICE_OID: &str = "5b5450db-eb26-4c1a-981c-ba1d25f0483d";

/// The header App Service sends for an Entra ID user: `role_typ` names the
/// mapped role type, the app roles arrive as `roles` claims.
fn principal(user: &str, oid: &str, roles: &[&str]) -> String {
    let mut claims = vec![
        json!({"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid}),
        json!({"typ": "preferred_username", "val": user}),
        json!({"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", "val": user}),
        json!({"typ": "name", "val": "Someone Example"}),
    ];
    claims.extend(roles.iter().map(|r| json!({"typ": "roles", "val": r})));
    STANDARD.encode(
        serde_json::to_vec(&json!({
            "auth_typ": "aad",
            "claims": claims,
            "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            "role_typ": MAPPED_ROLE_CLAIM,
        }))
        .unwrap(),
    )
}

/// A factory with sign-in on and `platform-lead` mapped to alice.
async fn signed_in_factory(images: &std::path::Path) -> Factory {
    let mut options = Options::with_images(images);
    options.tweak = Box::new(|app| {
        let mut settings = (*app.settings).clone();
        settings.sign_in = true;
        settings.approvers = Directory::parse("platform-lead=alice@contoso.com").unwrap();
        app.settings = Arc::new(settings);
    });
    Factory::start_with(options).await
}

/// Run `id` once it has `status`, read from the store (the runs API wants
/// a principal now).
async fn wait_for(
    factory: &Factory,
    id: &RunId,
    status: RunStatus,
) -> image_factory::domain::run::Run {
    for _ in 0..600 {
        if let Ok(stored) = factory.app.store.get(id).await
            && stored.value.status == status
        {
            return stored.value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("run {id} is not {status} within a minute")
}

async fn status_and_text(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_need_a_readable_principal_and_operator_actions_the_operator_role_not_the_token() {
    let images = tempfile::TempDir::new().unwrap();
    copy_example(images.path(), "example");
    let factory = signed_in_factory(images.path()).await;
    let get = |path: &str, header: Option<String>| {
        let mut request = factory.http.get(format!("{}{path}", factory.url));
        if let Some(value) = header {
            request = request.header("X-MS-CLIENT-PRINCIPAL", value);
        }
        async move { status_and_text(request.send().await.unwrap()).await }
    };
    let reader = principal(
        "bob@contoso.com",
        "0b0b0b0b-0000-4000-8000-000000000002",
        &[],
    );
    let operator = principal("alice@contoso.com", ALICE_OID, &["Reader", OPERATOR_ROLE]);

    // Reads: none without a principal, none with one that is not one.
    for path in [
        "/api/runs",
        "/api/runs?view=fleet",
        "/api/dashboard",
        "/api/dashboard/fleet",
    ] {
        let (status, text) = get(path, None).await;
        assert_eq!(status, 401, "{path}: {text}");
        assert!(text.contains("sign in first"), "{path}: {text}");
        for malformed in [
            "%%% not base64".to_string(),
            STANDARD.encode(b"{\"auth_typ\": \"aad\", \"claims\": "),
            STANDARD.encode(json!({"auth_typ": "aad", "claims": []}).to_string()),
        ] {
            let (status, text) = get(path, Some(malformed.clone())).await;
            assert_eq!(status, 401, "{path} {malformed}: {text}");
            assert!(text.contains("X-MS-CLIENT-PRINCIPAL"), "{text}");
        }
        let (status, text) = get(path, Some(reader.clone())).await;
        assert_eq!(status, 200, "{path}: {text}");
    }

    // Operator actions: the token alone no longer opens them.
    let trigger = |header: Option<String>, token: bool| {
        let mut request = factory
            .http
            .post(format!("{}/api/runs", factory.url))
            .json(&json!({"image": "example", "reason": "CVE-2026-1234", "actor": "mallory"}));
        if let Some(value) = header {
            request = request.header("X-MS-CLIENT-PRINCIPAL", value);
        }
        if token {
            request = request.bearer_auth(OPERATOR_TOKEN);
        }
        async move { status_and_text(request.send().await.unwrap()).await }
    };
    let (status, text) = trigger(None, true).await;
    assert_eq!(status, 401, "{text}");
    let (status, text) = trigger(Some(reader.clone()), true).await;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("bob@contoso.com does not hold the app role ImageFactory.Operator"),
        "{text}"
    );
    let (status, text) = trigger(Some(operator.clone()), false).await;
    assert_eq!(status, 202, "{text}");
    let id: RunId = serde_json::from_str::<Value>(&text).unwrap()["runId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let run = factory.app.store.get(&id).await.unwrap().value;
    assert_eq!(
        run.trigger.actor.as_deref(),
        Some("alice@contoso.com"),
        "the principal is recorded, never the name the body claims"
    );

    // Recording an approver's decision is an operator action: the operator
    // who recorded it is kept beside it.
    let waiting = wait_for(&factory, &id, RunStatus::WaitingForApproval).await;
    let decide = |header: String| {
        factory
            .http
            .post(format!("{}/api/runs/{}", factory.url, waiting.id))
            .header("X-MS-CLIENT-PRINCIPAL", header)
            .json(&json!({"decision": "approve", "as": "platform-lead", "comment": "by phone"}))
            .send()
    };
    let (status, text) = status_and_text(decide(reader.clone()).await.unwrap()).await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = status_and_text(decide(operator.clone()).await.unwrap()).await;
    assert_eq!(status, 200, "{text}");
    let decided = factory.app.store.get(&id).await.unwrap().value;
    assert_eq!(decided.decisions.len(), 1);
    assert_eq!(decided.decisions[0].via, "cli");
    assert_eq!(
        decided.decisions[0].recorded_by.as_deref(),
        Some("alice@contoso.com")
    );

    // A rollback is an operator action too: refused without the role,
    // authorised with it (and then refused on its merits, changing nothing).
    let rollback = |header: String| {
        factory
            .http
            .post(format!("{}/api/images/example/rollback", factory.url))
            .header("X-MS-CLIENT-PRINCIPAL", header)
            .json(&json!({"to": "2001.101.0", "reason": "test"}))
            .send()
    };
    let (status, text) = status_and_text(rollback(reader).await.unwrap()).await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = status_and_text(rollback(operator).await.unwrap()).await;
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains("not a version this factory released"),
        "{text}"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_and_approval_links_work_without_sign_in_and_a_signed_in_approver_must_be_the_linked_one()
 {
    let images = tempfile::TempDir::new().unwrap();
    copy_example(images.path(), "example");
    let factory = signed_in_factory(images.path()).await;
    // The webhook proves itself with its signature; no principal.
    let commit = "5151515151515151515151515151515151515151";
    let answer = factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    assert_eq!(answer.status(), 202);
    let id: RunId = format!("push-example-{commit}").parse().unwrap();
    let run = wait_for(&factory, &id, RunStatus::WaitingForApproval).await;
    let link = factory.approval_link(&run.id, "platform-lead");

    // The link's page needs no principal, and says whom it records for.
    let (status, page) = status_and_text(factory.http.get(&link).send().await.unwrap()).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(
            "Your decision is recorded for <strong>platform-lead (alice@contoso.com)</strong>"
        ),
        "{page}"
    );
    let decide = |header: String| {
        factory
            .http
            .post(&link)
            .header("X-MS-CLIENT-PRINCIPAL", header)
            .form(&[("decision", "approve")])
            .send()
    };
    // Someone else signed in, or a principal that cannot be read: refused.
    let (status, text) = status_and_text(
        decide(principal(
            "bob@contoso.com",
            "0b0b0b0b-0000-4000-8000-000000000002",
            &[OPERATOR_ROLE],
        ))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    let (status, _) = status_and_text(decide("garbage".into()).await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(
        factory
            .app
            .store
            .get(&run.id)
            .await
            .unwrap()
            .value
            .decisions
            .is_empty(),
        "nothing was decided"
    );
    // Alice, signed in (the directory names her by address): recorded.
    let (status, text) = status_and_text(
        decide(principal("Alice@Contoso.com", ALICE_OID, &[]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let decided = factory.app.store.get(&run.id).await.unwrap().value;
    assert_eq!(decided.decisions.len(), 1);
    assert_eq!(decided.decisions[0].approver, "platform-lead");
    factory.stop().await;
}

/// What a loopback stand-in of a deployed factory saw of one request.
#[derive(Clone, Debug, Default)]
struct Seen {
    path: String,
    function_key: Option<String>,
    authorization: Option<String>,
}

/// A stand-in of a deployed factory: records every request; `GET /api/runs`
/// answers an empty page, `POST /api/runs` answers 500 with `said` (an
/// answer the command line prints), anything under `/api/dashboard`
/// redirects to the sign-in page.
async fn deployed_stand_in(said: &'static str) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let record = Arc::clone(&record);
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                record.lock().unwrap().push(Seen {
                    path: uri.path().to_string(),
                    function_key: header("x-functions-key"),
                    authorization: header("authorization"),
                });
                use axum::response::IntoResponse;
                match (method.as_str(), uri.path()) {
                    ("GET", "/api/runs") => {
                        axum::Json(json!({"runs": [], "continuation": null})).into_response()
                    }
                    ("POST", _) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(json!({"error": said})),
                    )
                        .into_response(),
                    _ => (
                        axum::http::StatusCode::FOUND,
                        [(
                            "location",
                            "/.auth/login/aad?post_login_redirect_uri=/api/runs",
                        )],
                    )
                        .into_response(),
                }
            }
        },
    );
    (common::serve_loopback(app).await, seen)
}

/// Runs the command line with `args` and `env`, no other factory settings.
async fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let data = tempfile::TempDir::new().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"));
    command
        .args(args)
        .env("IMAGE_FACTORY_DATA", data.path())
        .env_remove("IMAGE_FACTORY_URL")
        .env_remove("IMAGE_FACTORY_OPERATOR_TOKEN")
        .env_remove("IMAGE_FACTORY_FUNCTION_KEY")
        .env_remove("IMAGE_FACTORY_API_SCOPE")
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("IDENTITY_ENDPOINT")
        .env_remove("IDENTITY_HEADER");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().await.unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_sends_the_function_key_and_an_entra_token_never_prints_them_and_reports_a_sign_in_redirect()
 {
    const KEY: &str = "function-key-0123456789abcdef";
    let endpoint = IdentityEndpoint::default();
    let identity_url = endpoint.serve().await;
    let (url, seen) = deployed_stand_in("operator refused for testing").await;
    let scope = "api://11111111-aaaa-4bbb-8ccc-222222222222/.default";
    let token = identity::token_for("api://11111111-aaaa-4bbb-8ccc-222222222222");
    let deployed = [
        ("IMAGE_FACTORY_FUNCTION_KEY", KEY),
        ("IMAGE_FACTORY_API_SCOPE", scope),
        ("IDENTITY_ENDPOINT", identity_url.as_str()),
        ("IDENTITY_HEADER", identity::HEADER_SECRET),
        ("IMAGE_FACTORY_OPERATOR_TOKEN", OPERATOR_TOKEN),
    ];

    // A read carries the key and the token for the app's scope.
    let (ok, said) = cli(&["runs", "list", "--url", &url], &deployed).await;
    assert!(ok, "{said}");
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first.path, "/api/runs");
    assert_eq!(first.function_key.as_deref(), Some(KEY));
    assert_eq!(
        first.authorization.as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    let asked: Vec<String> = endpoint
        .requests()
        .iter()
        .map(|r| r.resource.clone())
        .collect();
    assert_eq!(asked, ["api://11111111-aaaa-4bbb-8ccc-222222222222"]);

    // An operator action carries the Entra token, not the operator token,
    // and a refusal prints the factory's words, never a credential.
    let (ok, said) = cli(
        &[
            "trigger", "--url", &url, "--image", "example", "--reason", "x",
        ],
        &deployed,
    )
    .await;
    assert!(!ok);
    assert!(said.contains("operator refused for testing"), "{said}");
    let post = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        post.authorization.as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(post.function_key.as_deref(), Some(KEY));
    for secret in [KEY, token.as_str(), OPERATOR_TOKEN] {
        assert!(!said.contains(secret), "printed a credential: {said}");
    }

    // Without a scope, the operator token speaks for the operator.
    let (ok, _) = cli(
        &[
            "rollback", "--url", &url, "--image", "example", "--to", "1.2.3", "--reason", "x",
        ],
        &[
            ("IMAGE_FACTORY_FUNCTION_KEY", KEY),
            ("IMAGE_FACTORY_OPERATOR_TOKEN", OPERATOR_TOKEN),
        ],
    )
    .await;
    assert!(!ok);
    let post = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(post.path, "/api/images/example/rollback");
    assert_eq!(
        post.authorization.as_deref(),
        Some(format!("Bearer {OPERATOR_TOKEN}").as_str())
    );

    // A redirect to sign in is reported, not followed.
    let before = seen.lock().unwrap().len();
    let (ok, said) = cli(
        &["runs", "logs", "push-example-0123", "--url", &url],
        &[("IMAGE_FACTORY_FUNCTION_KEY", KEY)],
    )
    .await;
    assert!(!ok);
    assert!(
        said.contains("sent the request to sign in (HTTP 302)")
            && said.contains("set IMAGE_FACTORY_API_SCOPE"),
        "{said}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        before + 1,
        "the redirect was not followed"
    );
    assert!(!said.contains(KEY), "{said}");
}
