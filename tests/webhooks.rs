//! Push webhooks as the providers send them: GitHub's own samples (from the
//! `@octokit/webhooks-examples` package) and Microsoft's documented Azure
//! DevOps `git.push` sample, delivered to the real HTTP front.

mod common;

use base64::Engine;
use common::{AZURE_DEVOPS_SECRET, Factory, GITHUB_SECRET, Options, sign};
use image_factory::domain::run::{RepositoryRef, RunStatus};
use serde_json::Value;

/// GitHub's samples of one event.
fn github_samples(event: &str) -> Vec<Value> {
    let path = common::repo_root().join(
        "tests/webhook-samples/node_modules/@octokit/webhooks-examples/api.github.com/index.json",
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/setup.sh to install the webhook samples",
            path.display()
        )
    });
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let entry = all
        .into_iter()
        .find(|e| e["name"] == event)
        .expect("event in the samples");
    entry["examples"].as_array().unwrap().clone()
}

async fn deliver_github(factory: &Factory, event: &str, body: &str) -> (u16, Value) {
    let response = factory
        .http
        .post(format!("{}/api/hooks/github", factory.url))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header("X-Hub-Signature-256", sign(GITHUB_SECRET, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

fn master_factory_options() -> Options {
    Options {
        branches: vec!["master".into()],
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn githubs_own_ping_and_push_samples_are_answered_and_start_only_what_they_should() {
    let factory = Factory::start_with(master_factory_options()).await;
    for ping in github_samples("ping") {
        let (status, answer) = deliver_github(&factory, "ping", &ping.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["pong"], true);
    }
    // Tag pushes, deleted refs and a push that only touches README.md: nothing to build.
    let samples = github_samples("push");
    assert!(samples.len() >= 5);
    for push in &samples {
        let (status, answer) = deliver_github(&factory, "push", &push.to_string()).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(
            answer["runs"],
            serde_json::json!([]),
            "{} {}",
            push["ref"],
            answer
        );
    }
    assert_eq!(factory.runs().await.len(), 0);

    // The same real push, its commit now touching the example image.
    let mut push = samples
        .iter()
        .find(|p| p["ref"] == "refs/heads/master" && !p["deleted"].as_bool().unwrap_or(true))
        .cloned()
        .expect("a branch push sample");
    push["commits"][0]["modified"] = serde_json::json!(["images/example/scripts/provision.sh"]);
    let (status, answer) = deliver_github(&factory, "push", &push.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["runs"][0]["runId"].as_str().unwrap().to_string();
    let after = push["after"].as_str().unwrap();
    assert_eq!(id, format!("push-example-{after}"));
    let run = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    assert_eq!(
        run.trigger.actor.as_deref(),
        push["pusher"]["name"].as_str()
    );
    assert_eq!(run.trigger.branch.as_deref(), Some("master"));
    // The head commit's message is kept for the release notes.
    assert_eq!(
        run.trigger.message.as_deref(),
        push["head_commit"]["message"].as_str()
    );
    assert!(run.trigger.message.is_some());
    // The repository pushed to is recorded: the released commit is tagged there.
    let full_name = push["repository"]["full_name"].as_str().unwrap();
    let (owner, repo) = full_name.split_once('/').unwrap();
    assert_eq!(
        run.trigger.repository,
        Some(RepositoryRef::GitHub {
            owner: owner.into(),
            repo: repo.into()
        })
    );

    // GitHub redelivers: nothing new.
    let (_, again) = deliver_github(&factory, "push", &push.to_string()).await;
    assert_eq!(again["runs"][0]["new"], false);
    assert_eq!(factory.runs().await.len(), 1);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tampered_variant_of_a_real_github_push_is_refused() {
    let factory = Factory::start_with(master_factory_options()).await;
    let mut push = github_samples("push")
        .into_iter()
        .find(|p| p["ref"] == "refs/heads/master")
        .unwrap();
    push["commits"][0]["modified"] = serde_json::json!(["images/example/build.pkr.hcl"]);
    let body = push.to_string();
    let good = sign(GITHUB_SECRET, body.as_bytes());
    let variants: Vec<(&str, String, String)> = vec![
        (
            "body changed after signing",
            body.replacen("master", "main", 1),
            good.clone(),
        ),
        ("one byte appended", format!("{body} "), good.clone()),
        (
            "truncated",
            body[..body.len() / 2].to_string(),
            good.clone(),
        ),
        (
            "signature of another body",
            body.clone(),
            sign(GITHUB_SECRET, b"{}"),
        ),
        ("signature upper-cased", body.clone(), good.to_uppercase()),
        (
            "signature cut short",
            body.clone(),
            good[..good.len() - 1].to_string(),
        ),
        ("empty signature", body.clone(), String::new()),
    ];
    for (name, body, signature) in variants {
        let response = factory
            .http
            .post(format!("{}/api/hooks/github", factory.url))
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{name}");
    }
    let oversized = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let (status, _) = deliver_github(&factory, "push", &oversized).await;
    assert_eq!(status, 413);
    assert_eq!(factory.runs().await.len(), 0);
    assert_eq!(factory.bus().depth("stage-validate").await.unwrap(), 0);
    factory.stop().await;
}

fn devops_sample() -> String {
    std::fs::read_to_string(
        common::repo_root().join("tests/fixtures/webhooks/azure-devops-git-push.json"),
    )
    .unwrap()
}

async fn deliver_devops(
    factory: &Factory,
    auth: Option<(&str, &str)>,
    body: String,
) -> (u16, Value) {
    let mut request = factory
        .http
        .post(format!("{}/api/hooks/azure-devops", factory.url))
        .body(body);
    match auth {
        Some(("basic", secret)) => {
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("servicehook:{secret}"));
            request = request.header("Authorization", format!("Basic {credentials}"));
        }
        Some((header, secret)) => request = request.header(header, secret),
        None => {}
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_azure_devops_push_builds_every_image_and_is_authenticated_by_its_shared_secret() {
    let factory = Factory::start_with(master_factory_options()).await;
    for (name, auth, status) in [
        ("no credentials", None, 401),
        ("wrong basic password", Some(("basic", "guess")), 401),
        ("wrong header", Some(("X-Hook-Secret", "guess")), 401),
    ] {
        let (got, answer) = deliver_devops(&factory, auth, devops_sample()).await;
        assert_eq!(got, status, "{name}: {answer}");
        assert!(!answer.to_string().contains(AZURE_DEVOPS_SECRET));
    }
    let other_event = devops_sample().replace("\"git.push\"", "\"build.complete\"");
    let (status, answer) = deliver_devops(
        &factory,
        Some(("X-Hook-Secret", AZURE_DEVOPS_SECRET)),
        other_event,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let (status, _) = deliver_devops(
        &factory,
        Some(("X-Hook-Secret", AZURE_DEVOPS_SECRET)),
        "<xml/>".into(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(factory.runs().await.len(), 0);

    let (status, answer) = deliver_devops(
        &factory,
        Some(("basic", AZURE_DEVOPS_SECRET)),
        devops_sample(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["runs"][0]["runId"],
        "push-example-33b55f7cb7e7e245323987634f960cf4a6e6bc74"
    );
    let run = factory
        .wait_status(
            "push-example-33b55f7cb7e7e245323987634f960cf4a6e6bc74",
            RunStatus::WaitingForApproval,
        )
        .await;
    assert_eq!(run.trigger.source, "azure-devops");
    assert_eq!(run.trigger.actor.as_deref(), Some("Jamal Hartnett"));
    assert_eq!(
        run.trigger.commit.as_deref(),
        Some("33b55f7cb7e7e245323987634f960cf4a6e6bc74")
    );
    // The pushed commit's comment, for the release notes.
    assert_eq!(
        run.trigger.message.as_deref(),
        Some("Fixed bug in web.config file")
    );
    // The repository, its project and the organization, from the payload.
    assert_eq!(
        run.trigger.repository,
        Some(RepositoryRef::AzureDevOps {
            organization_url: "https://fabrikam-fiber-inc.visualstudio.com/DefaultCollection"
                .into(),
            project: "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c".into(),
            repository_id: "278d5cd2-584d-4b63-824a-2ba458937249".into(),
        })
    );
    factory.stop().await;
}

/// POSTs `body` as a GitHub push with `signature`; the status and the answer.
async fn deliver_bytes(factory: &Factory, body: Vec<u8>, signature: String) -> (u16, Value) {
    let response = factory
        .http
        .post(format!("{}/api/hooks/github", factory.url))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signature_covers_the_bytes_received_and_a_signed_body_that_is_not_utf8_is_refused() {
    let factory = Factory::start().await;
    // A push whose pusher's name holds a byte that is not UTF-8: decoded
    // lossily it is still a valid push, but not the bytes that were signed.
    let mut body = common::github_push(
        "0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad",
        &["images/example/build.pkr.hcl"],
        "main",
    )
    .replace("\"Codertocat\"", "\"Codertocat\u{1}\"")
    .into_bytes();
    let at = body.iter().position(|b| *b == 1).unwrap();
    body[at] = 0xff;
    let lossy = String::from_utf8_lossy(&body).into_owned();
    assert_ne!(lossy.as_bytes(), body.as_slice());

    let (status, answer) = deliver_bytes(&factory, body.clone(), sign(GITHUB_SECRET, &body)).await;
    assert_eq!(status, 400, "signed, not UTF-8: {answer}");
    assert!(answer.to_string().contains("UTF-8"), "{answer}");
    let (status, answer) = deliver_bytes(
        &factory,
        body.clone(),
        sign(GITHUB_SECRET, lossy.as_bytes()),
    )
    .await;
    assert_eq!(status, 401, "signed over the lossy decoding: {answer}");
    let (status, _) = deliver_bytes(&factory, body.clone(), sign("wrong", &body)).await;
    assert_eq!(status, 401, "unauthenticated, not UTF-8");
    assert_eq!(factory.runs().await.len(), 0);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_paths_are_normalised_and_what_touches_no_image_is_listed_with_why() {
    let factory = Factory::start().await;
    let commit = "9a7b5000000000000000000000000000000000ff";
    let escaping = [
        "images/example/../../etc/passwd",
        "../images/example/build.pkr.hcl",
        "/images/example/build.pkr.hcl",
        "images/example/../nope/x",
        "docs/README.md",
    ];
    let body = common::github_push(commit, &escaping, "main");
    let (status, answer) = deliver_github(&factory, "push", &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["runs"], serde_json::json!([]), "{answer}");
    let ignored = answer["ignored"].as_array().unwrap();
    let paths: Vec<&str> = ignored
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, escaping, "{answer}");
    let reasons: Vec<&str> = ignored
        .iter()
        .map(|i| i["reason"].as_str().unwrap())
        .collect();
    // `images/example/../../etc/passwd` is `etc/passwd`: in the repository,
    // but in no image folder.
    for (i, expected) in [
        (0, "not under images/"),
        (1, "leaves the repository"),
        (2, "leaves the repository"),
        (3, "images/nope is not an image folder"),
        (4, "not under images/"),
    ] {
        assert!(reasons[i].contains(expected), "{i}: {answer}");
    }

    // The same folder spelled untidily is still the example image.
    let body = common::github_push(commit, &["images//./example\\build.pkr.hcl"], "main");
    let (status, answer) = deliver_github(&factory, "push", &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["runs"][0]["image"], "example", "{answer}");

    // A branch that does not build names the setting that decides it.
    let body = common::github_push(commit, &["images/example/build.pkr.hcl"], "feature");
    let (_, answer) = deliver_github(&factory, "push", &body).await;
    assert_eq!(answer["runs"], serde_json::json!([]), "{answer}");
    assert_eq!(answer["ignored"][0]["branch"], "feature", "{answer}");
    assert!(
        answer["ignored"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("IMAGE_FACTORY_BRANCHES"),
        "{answer}"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_basic_scheme_of_a_service_hook_is_matched_without_regard_to_case() {
    let factory = Factory::start_with(master_factory_options()).await;
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("servicehook:{AZURE_DEVOPS_SECRET}"));
    let (status, answer) = deliver_devops(
        &factory,
        Some(("Authorization", &format!("BASIC {credentials}"))),
        devops_sample(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["runs"].as_array().map(Vec::len), Some(1), "{answer}");
    factory.stop().await;
}
