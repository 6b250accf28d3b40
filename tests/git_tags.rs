//! Git tags on released commits, with the real peers: the loopback GitHub
//! of `common::github`, which keeps refs, answers as GitHub does (422
//! "Reference already exists", its error bodies, installation tokens) and
//! checks every request and answer against GitHub's published OpenAPI
//! description (`@octokit/openapi`, pinned), verifying the app's JWT with
//! the test app's public key; and the real `git` in an images folder's
//! repository.

mod common;

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use common::git;
use common::github::{A, APP_ID, B, GitHub, INSTALLATION, PAT, key_pair};
use common::openapi::{self, Exchange};
use image_factory::domain::git_tag::{TagName, TagOutcome};
use image_factory::domain::run::{
    GitTagState, RepositoryRef, Run, RunStatus, Trigger, TriggerKind,
};
use image_factory::domain::version::ImageVersion;
use image_factory::local::git::LocalGitTags;
use image_factory::ports::git::GitTags;
use image_factory::stages::git_tag::tag_release;
use image_factory::web::HostedGitTags;
use image_factory::web::github::{GitHubAuth, GitHubSettings, GitHubTags};
use serde_json::json;

fn repo() -> RepositoryRef {
    RepositoryRef::GitHub {
        owner: "octo".into(),
        repo: "images".into(),
    }
}

fn tag() -> TagName {
    TagName::new("example", &"1.2.3").expect("tag")
}

fn app(api_url: &str, private_key: &str) -> GitHubTags {
    GitHubTags::new(&GitHubSettings {
        api_url: api_url.into(),
        auth: GitHubAuth::App {
            app_id: APP_ID.into(),
            installation_id: INSTALLATION,
            private_key: private_key.into(),
        },
    })
    .expect("app settings")
}

fn token(api_url: &str) -> GitHubTags {
    GitHubTags::new(&GitHubSettings {
        api_url: api_url.into(),
        auth: GitHubAuth::Token(PAT.into()),
    })
    .expect("token settings")
}

#[tokio::test]
async fn as_the_app_a_commit_is_tagged_once_the_same_tag_again_is_there_and_another_commit_is_a_conflict()
 {
    let (private, public) = key_pair();
    let github = GitHub::new(&public);
    let url = github.serve().await;
    let tags = app(&url, &private);

    assert_eq!(
        tags.tag(Some(&repo()), &tag(), A).await,
        Ok(TagOutcome::Tagged)
    );
    assert_eq!(
        github.state().refs["octo/images"]["refs/tags/example/1.2.3"],
        A
    );
    assert_eq!(
        tags.tag(Some(&repo()), &tag(), A).await,
        Ok(TagOutcome::AlreadyThere)
    );
    assert_eq!(
        tags.tag(Some(&repo()), &tag(), B).await,
        Ok(TagOutcome::Conflict { existing: A.into() })
    );
    // Never moved.
    assert_eq!(
        github.state().refs["octo/images"]["refs/tags/example/1.2.3"],
        A
    );

    let state = github.state();
    assert!(state.jwt_refusals.is_empty(), "{:?}", state.jwt_refusals);
    // One installation token for the three tags: it is kept until shortly before it expires.
    assert_eq!(state.tokens.len(), 1);
    let operations: Vec<&str> = state.exchanges.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(
        operations,
        [
            "apps/create-installation-access-token",
            "git/create-ref",
            "git/create-ref",
            "git/get-ref",
            "git/create-ref",
            "git/get-ref"
        ]
    );
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
}

#[tokio::test]
async fn an_annotated_tag_made_by_hand_on_the_commit_is_already_there_and_on_another_a_conflict() {
    let github = GitHub::new("unused");
    let url = github.serve().await;
    let tag_object = "dd218f56b14c9653891f9e74264a383fa43fefbd";
    {
        let mut state = github.state();
        state.tag_objects.insert(tag_object.into(), A.into());
        state
            .refs
            .entry("octo/images".into())
            .or_default()
            .insert("refs/tags/example/1.2.3".into(), tag_object.into());
    }
    let tags = token(&url);
    assert_eq!(
        tags.tag(Some(&repo()), &tag(), A).await,
        Ok(TagOutcome::AlreadyThere)
    );
    assert_eq!(
        tags.tag(Some(&repo()), &tag(), B).await,
        Ok(TagOutcome::Conflict { existing: A.into() })
    );
    let state = github.state();
    assert!(state.exchanges.iter().any(|(op, _)| op == "git/get-tag"));
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
}

#[tokio::test]
async fn an_installation_token_near_its_expiry_is_renewed() {
    let (private, public) = key_pair();
    let github = GitHub::new(&public);
    github.state().token_life = Some(Duration::minutes(4));
    let url = github.serve().await;
    let tags = app(&url, &private);
    let other = TagName::new("example", &"1.2.4").expect("tag");
    assert_eq!(
        tags.tag(Some(&repo()), &tag(), A).await,
        Ok(TagOutcome::Tagged)
    );
    assert_eq!(
        tags.tag(Some(&repo()), &other, B).await,
        Ok(TagOutcome::Tagged)
    );
    let state = github.state();
    assert_eq!(state.tokens.len(), 2);
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
}

#[tokio::test]
async fn an_app_key_github_does_not_know_is_refused_with_what_to_check_and_no_secret() {
    let (_, public) = key_pair();
    let (other_private, _) = key_pair();
    let github = GitHub::new(&public);
    let url = github.serve().await;
    let err = app(&url, &other_private)
        .tag(Some(&repo()), &tag(), A)
        .await
        .expect_err("refused");
    assert!(!err.transient);
    assert!(err.message.contains("401"), "{}", err.message);
    assert!(
        err.message.contains("IMAGE_FACTORY_GITHUB_APP_ID"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("PRIVATE KEY-----"), "{}", err.message);
    let state = github.state();
    assert_eq!(state.jwt_refusals.len(), 1);
    assert!(state.refs.is_empty());
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
}

#[tokio::test]
async fn with_a_fine_grained_token_missing_access_and_unknown_commits_are_permanent_and_outages_transient()
 {
    let github = GitHub::new("unused");
    let url = github.serve().await;
    let tags = token(&url);
    assert_eq!(
        tags.tag(Some(&repo()), &tag(), A).await,
        Ok(TagOutcome::Tagged)
    );

    // A repository the token cannot see: 404, permanent, naming the permission.
    let hidden = RepositoryRef::GitHub {
        owner: "octo".into(),
        repo: "secret".into(),
    };
    let err = tags.tag(Some(&hidden), &tag(), A).await.expect_err("404");
    assert!(
        !err.transient && err.message.contains("Contents: write"),
        "{err:?}"
    );

    // Read but not write: 403, permanent, naming the permission.
    github.state().read_only.insert("octo/images".into());
    let other = TagName::new("example", &"2.0.0").expect("tag");
    let err = tags.tag(Some(&repo()), &other, A).await.expect_err("403");
    assert!(
        !err.transient && err.message.contains("Contents: write"),
        "{err:?}"
    );
    github.state().read_only.clear();

    // A commit GitHub does not have: 422 with no ref to read back, permanent.
    let unknown = "cc218f56b14c9653891f9e74264a383fa43fefbd";
    let err = tags
        .tag(Some(&repo()), &other, unknown)
        .await
        .expect_err("422");
    assert!(
        !err.transient && err.message.contains("Object does not exist"),
        "{err:?}"
    );

    // GitHub down: transient.
    github.state().failures = vec![503];
    let err = tags.tag(Some(&repo()), &other, A).await.expect_err("503");
    assert!(err.transient, "{err:?}");
    assert!(!err.message.contains(PAT));
    assert_eq!(
        tags.tag(Some(&repo()), &other, A).await,
        Ok(TagOutcome::Tagged)
    );

    let state = github.state();
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
}

#[test]
fn the_description_check_refuses_what_github_would_not_send_or_take() {
    let description = openapi::github();
    let good = Exchange {
        method: "POST".into(),
        path: "/repos/octo/images/git/refs".into(),
        query: BTreeMap::new(),
        request: Some(json!({ "ref": "refs/tags/example/1.2.3", "sha": A })),
        status: 201,
        answer: json!({
            "ref": "refs/tags/example/1.2.3", "node_id": "x", "url": "https://x",
            "object": { "type": "commit", "sha": A, "url": "https://x" }
        }),
    };
    assert_eq!(description.check("git/create-ref", &good), Ok(()));
    let mut no_sha = good.clone();
    no_sha.request = Some(json!({ "ref": "refs/tags/example/1.2.3" }));
    assert!(description.check("git/create-ref", &no_sha).is_err());
    let mut short = good.clone();
    short.answer["object"]["sha"] = json!(&A[..39]);
    assert!(description.check("git/create-ref", &short).is_err());
    let mut undeclared = good.clone();
    undeclared.status = 418;
    assert!(description.check("git/create-ref", &undeclared).is_err());
    let mut elsewhere = good.clone();
    elsewhere.path = "/repos/octo/git/refs".into();
    assert!(description.check("git/create-ref", &elsewhere).is_err());
    let token = Exchange {
        method: "POST".into(),
        path: format!("/app/installations/{INSTALLATION}/access_tokens"),
        query: BTreeMap::new(),
        request: None,
        status: 201,
        answer: json!({ "token": "ghs_x", "expires_at": "2026-01-01T00:00:00Z", "repository_selection": "some" }),
    };
    assert!(
        description
            .check("apps/create-installation-access-token", &token)
            .is_err()
    );
}

/// A released run of the example image at 1.2.3 that built `commit`, pushed to `repository`.
fn released(commit: Option<&str>, repository: Option<RepositoryRef>) -> Run {
    let trigger = Trigger {
        commit: commit.map(str::to_string),
        repository,
        ..Trigger::new(TriggerKind::Push, "github")
    };
    let mut run = Run::new(
        "push-example-aa218f56b14c".parse().expect("id"),
        "example".into(),
        ImageVersion {
            major: 1,
            minor: 2,
            patch: 3,
        },
        trigger,
        BTreeMap::new(),
        Utc::now(),
    );
    run.status = RunStatus::Released;
    run
}

#[tokio::test]
async fn a_release_is_tagged_once_a_failure_is_recorded_and_retried_when_due_and_runs_without_a_commit_are_not()
 {
    let github = GitHub::new("unused");
    let url = github.serve().await;
    let hosts = HostedGitTags {
        github: Some(token(&url)),
        azure_devops: None,
    };
    let now = Utc::now();

    // GitHub down at release: recorded, the release untouched, retried later.
    github.state().failures = vec![502];
    let mut run = released(Some(A), Some(repo()));
    let failed = tag_release(&hosts, &run, now).await.expect("tried");
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.tag, "example/1.2.3");
    let GitTagState::Failed {
        next_attempt,
        message,
    } = &failed.state
    else {
        panic!("failed: {failed:?}");
    };
    assert!(message.contains("502"), "{message}");
    let next = next_attempt.expect("retried");
    assert_eq!(next - now, Duration::minutes(1));
    run.git_tag = Some(failed.clone());
    assert_eq!(tag_release(&hosts, &run, now).await, None, "not due yet");
    assert!(failed.due(next));

    // The sweeper's retry, when due.
    let tagged = tag_release(&hosts, &run, next).await.expect("retried");
    assert_eq!(tagged.state, GitTagState::Tagged);
    assert_eq!(tagged.attempts, 2);
    run.git_tag = Some(tagged);
    assert_eq!(
        tag_release(&hosts, &run, next + Duration::days(1)).await,
        None
    );

    // Another run of the same version on another commit: a conflict, recorded.
    let conflict = tag_release(&hosts, &released(Some(B), Some(repo())), now)
        .await
        .expect("tried");
    assert_eq!(
        conflict.state,
        GitTagState::Conflict {
            existing_commit: A.into()
        }
    );

    // Nothing to try without a commit; nothing to tag without a repository.
    assert_eq!(
        tag_release(&hosts, &released(None, Some(repo())), now).await,
        None
    );
    let nowhere = tag_release(&hosts, &released(Some(A), None), now)
        .await
        .expect("recorded");
    assert!(
        matches!(nowhere.state, GitTagState::NothingToTag { .. }),
        "{nowhere:?}"
    );
    let devops = RepositoryRef::AzureDevOps {
        organization_url: "https://dev.azure.com/fabrikam".into(),
        project: "p".into(),
        repository_id: "r".into(),
    };
    let unconfigured = tag_release(&hosts, &released(Some(A), Some(devops)), now)
        .await
        .expect("recorded");
    assert!(matches!(
        unconfigured.state,
        GitTagState::NothingToTag { .. }
    ));

    // The record survives the run store's JSON, and older records load without it.
    let json = serde_json::to_value(&run).expect("json");
    assert_eq!(json["gitTag"]["state"], "tagged");
    let mut old = json.clone();
    old.as_object_mut().expect("object").remove("gitTag");
    old["trigger"]
        .as_object_mut()
        .expect("trigger")
        .remove("repository");
    let loaded: Run = serde_json::from_value(old).expect("an older record loads");
    assert_eq!(loaded.git_tag, None);
    assert_eq!(loaded.trigger.repository, None);
    assert!(github.state().violations.is_empty());
}

#[tokio::test]
async fn locally_the_images_folders_repository_is_tagged_with_git_and_a_tag_is_never_moved() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    git(root, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(root.join("images/example")).expect("images");
    std::fs::write(root.join("images/example/image.toml"), "a").expect("write");
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "first"]);
    let first = git(root, &["rev-parse", "HEAD"]);
    std::fs::write(root.join("images/example/image.toml"), "b").expect("write");
    git(root, &["commit", "-q", "-am", "second"]);
    let second = git(root, &["rev-parse", "HEAD"]);

    let tags = LocalGitTags::new(&root.join("images"));
    assert_eq!(tags.tag(None, &tag(), &first).await, Ok(TagOutcome::Tagged));
    assert_eq!(git(root, &["rev-parse", "example/1.2.3^{commit}"]), first);
    assert_eq!(git(root, &["tag", "--list"]), "example/1.2.3");
    assert_eq!(
        tags.tag(None, &tag(), &first).await,
        Ok(TagOutcome::AlreadyThere)
    );
    assert_eq!(
        tags.tag(None, &tag(), &second).await,
        Ok(TagOutcome::Conflict {
            existing: first.clone()
        })
    );
    assert_eq!(
        git(root, &["rev-parse", "example/1.2.3^{commit}"]),
        first,
        "never moved"
    );

    // A commit the repository does not have: a clear, permanent error, no tag.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let other = TagName::new("example", &"1.2.4").expect("tag");
    let err = tags
        .tag(None, &other, unknown)
        .await
        .expect_err("unknown commit");
    assert!(!err.transient);
    assert!(
        err.message.contains(unknown)
            && err
                .message
                .contains("not in the images folder's repository"),
        "{}",
        err.message
    );
    assert_eq!(git(root, &["tag", "--list"]), "example/1.2.3");

    // Through the entry point, as a release does.
    let run = released(Some(&second), None);
    let mut run = run;
    run.version = ImageVersion {
        major: 1,
        minor: 2,
        patch: 5,
    };
    let record = tag_release(&tags, &run, Utc::now()).await.expect("tried");
    assert_eq!(record.state, GitTagState::Tagged);
    assert_eq!(git(root, &["rev-parse", "example/1.2.5^{commit}"]), second);
}

#[tokio::test]
async fn an_images_folder_outside_any_repository_has_nothing_to_tag_and_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("images")).expect("images");
    let tags = LocalGitTags::new(&dir.path().join("images"));
    let outcome = tags.tag(None, &tag(), A).await.expect("no error");
    let TagOutcome::NothingToTag { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("not in a git repository"), "{reason}");
}
