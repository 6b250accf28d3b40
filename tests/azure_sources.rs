//! Sources on the Azure path, with real peers: a run's commit fetched from
//! the loopback GitHub of `common::github` (its tarballs made by the real
//! `git archive` of a real repository, every exchange checked against
//! GitHub's published OpenAPI description) and from the loopback Azure
//! DevOps of `common::devops` (its zips made with the `zip` crate from the
//! real repository's files, every exchange checked against the Git 7.1
//! specification), and snapshots kept in Azurite, Microsoft's Storage
//! emulator. What a host serves becomes exactly the snapshot `git archive`
//! of the same commit gives, whatever the archive's top folder is called
//! or however the zip lays out its entries; a host that serves another
//! commit, a commit a host does not have, a repository the factory may not
//! read and an outage are each refused with what to do.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::arm_server::{FixedCredential, TOKEN};
use common::azurite::{Azurite, StorageCredential};
use common::devops::{DevOps, PROJECT, REPOSITORY, ZipLayout};
use common::github::{APP_ID, GitHub, INSTALLATION, PAT, key_pair};
use common::{copy_example, git};
use image_factory::archive::{Format, Layout, Limits};
use image_factory::azure::snapshots::BlobSnapshots;
use image_factory::domain::run::RepositoryRef;
use image_factory::domain::source::SnapshotId;
use image_factory::local::sources::FolderSnapshots;
use image_factory::ports::sources::SnapshotStore;
use image_factory::sources::{SourceError, Sources};
use image_factory::web::HostedSources;
use image_factory::web::azure_devops::AzureDevOpsApi;
use image_factory::web::azure_devops_source::AzureDevOpsSource;
use image_factory::web::github::{GitHubApi, GitHubAuth, GitHubSettings};
use image_factory::web::github_source::GitHubSource;

/// The largest download the hosts take in these tests.
const MAX: u64 = 64 * 1024 * 1024;

/// A repository holding the example image under `folder`, committed;
/// answers the commit.
fn repository(root: &Path, folder: &str) -> String {
    git(root, &["init", "-q", "-b", "main"]);
    std::fs::write(root.join("README.md"), "images\n").expect("readme");
    copy_example(&root.join(folder), "example");
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "the example image"]);
    git(root, &["rev-parse", "HEAD"])
}

/// A second commit changing the example's provisioning script; answers it.
fn edit(root: &Path, folder: &str, marker: &str) -> String {
    let script = root.join(folder).join("example/scripts/provision.sh");
    let text = std::fs::read_to_string(&script).expect("script");
    std::fs::write(&script, format!("{text}echo {marker}\n")).expect("script");
    git(root, &["commit", "-q", "-am", marker]);
    git(root, &["rev-parse", "HEAD"])
}

/// The snapshot id of `folder` at `commit`, from `git archive` run here.
fn expected(root: &Path, commit: &str, folder: &str) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["archive", "--format=tar", commit, "--", folder])
        .output()
        .expect("git archive");
    assert!(out.status.success());
    let layout = Layout {
        folder: folder.into(),
        ..Layout::default()
    };
    image_factory::archive::read(&out.stdout, Format::Tar, &layout, &Limits::default())
        .expect("git's archive reads")
        .tree
        .canonical_with_hash()
        .1
}

/// The same snapshot with every file's executable bit cleared (a zip keeps none).
fn expected_without_modes(root: &Path, commit: &str, folder: &str) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["archive", "--format=tar", commit, "--", folder])
        .output()
        .expect("git archive");
    let layout = Layout {
        folder: folder.into(),
        ..Layout::default()
    };
    let read = image_factory::archive::read(&out.stdout, Format::Tar, &layout, &Limits::default())
        .expect("git's archive reads");
    let mut plain = image_factory::archive::SourceTree::new();
    for (path, entry) in read.tree.entries() {
        let entry = match entry {
            image_factory::archive::Entry::File { bytes, .. } => {
                image_factory::archive::Entry::File {
                    executable: false,
                    bytes: bytes.clone(),
                }
            }
            link => link.clone(),
        };
        plain
            .insert(path.clone(), entry, &Limits::default())
            .expect("insert");
    }
    plain.canonical_with_hash().1
}

fn octo() -> RepositoryRef {
    RepositoryRef::GitHub {
        owner: "octo".into(),
        repo: "images".into(),
    }
}

/// The sources of the Azure path: GitHub through `github` (images under
/// `images/`), Azure DevOps at `devops_url` (images under `src/images/`),
/// the configured repository `configured`, snapshots in `store`.
fn sources(
    github: Arc<GitHubApi>,
    devops_url: Option<&str>,
    configured: RepositoryRef,
    store: Arc<dyn SnapshotStore>,
) -> Sources {
    let devops = AzureDevOpsApi::new(Arc::new(FixedCredential), devops_url).expect("devops");
    let host = HostedSources {
        github: GitHubSource::new(github, "images", MAX),
        azure_devops: AzureDevOpsSource::new(devops, "src/images", MAX),
        configured,
    };
    Sources::new(Arc::new(host), store, Limits::default())
}

fn with_token(url: &str) -> Arc<GitHubApi> {
    Arc::new(
        GitHubApi::new(&GitHubSettings {
            api_url: url.into(),
            auth: GitHubAuth::Token(PAT.into()),
        })
        .expect("api"),
    )
}

fn folder_store(dir: &Path) -> Arc<dyn SnapshotStore> {
    Arc::new(FolderSnapshots::new(dir.to_path_buf()))
}

/// The top folder of a gzipped tarball's first entry.
fn top_folder(tarball: &[u8]) -> String {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    let mut entries = archive.entries().expect("a tarball");
    loop {
        let entry = entries.next().expect("an entry").expect("an entry");
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        let path = entry.path().expect("a path").to_string_lossy().into_owned();
        return path.split('/').next().unwrap_or_default().to_string();
    }
}

#[tokio::test]
async fn a_commit_is_githubs_tarball_of_it_and_its_snapshot_is_exactly_that_commits_images_folder()
{
    let repo = tempfile::TempDir::new().expect("repo");
    let first = repository(repo.path(), "images");
    let second = edit(repo.path(), "images", "second");
    let github = GitHub::new("unused");
    github.attach("octo/images", repo.path(), false);
    let url = github.serve().await;
    let store = tempfile::TempDir::new().expect("store");
    let sources = sources(with_token(&url), None, octo(), folder_store(store.path()));

    let taken = sources
        .take(Some(&octo()), Some(&first))
        .await
        .expect("the first commit");
    assert_eq!(taken.id.as_str(), expected(repo.path(), &first, "images"));
    assert_eq!(taken.commit.as_deref(), Some(first.as_str()));
    assert!(!taken.uncommitted);
    assert_eq!(
        taken.repository.as_deref(),
        Some(format!("{url}/repos/octo/images").as_str())
    );
    assert!(taken.images("images")["example"].is_ok());
    let later = sources
        .take(Some(&octo()), Some(&second))
        .await
        .expect("the second commit");
    assert_eq!(later.id.as_str(), expected(repo.path(), &second, "images"));
    assert_ne!(later.id, taken.id);
    // Stored once, under its hash: the stored bytes hash to it.
    let stored = sources.store().get(&taken.id).await.expect("stored");
    assert_eq!(
        image_factory::archive::sha256_hex(&stored),
        taken.id.as_str()
    );

    // The branch head, from GitHub's refs: runs no push started take it.
    let head = sources
        .take_head(None, "main")
        .await
        .expect("the configured repository's head");
    assert_eq!(head.commit.as_deref(), Some(second.as_str()));
    assert_eq!(head.id, later.id);

    let state = github.state();
    // The download host never saw the factory's token: it was dropped at the redirect.
    assert!(!state.downloads.is_empty());
    assert!(
        state
            .downloads
            .iter()
            .all(|h| h.get("authorization").is_none()),
        "{:?}",
        state.downloads
    );
    let operations: Vec<&str> = state.exchanges.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(
        operations,
        [
            "repos/download-tarball-archive",
            "repos/download-tarball-archive",
            "git/get-ref",
            "repos/download-tarball-archive"
        ]
    );
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
}

#[tokio::test]
async fn anonymous_and_signed_tarballs_name_their_top_folder_differently_and_give_one_snapshot() {
    let repo = tempfile::TempDir::new().expect("repo");
    let commit = repository(repo.path(), "images");
    let (private, public) = key_pair();
    let github = GitHub::new(&public);
    github.attach("octo/images", repo.path(), true);
    let url = github.serve().await;

    let anonymous = GitHubSource::new(
        Arc::new(GitHubApi::anonymous(&url).expect("api")),
        "images",
        MAX,
    );
    let app = GitHubSource::new(
        Arc::new(
            GitHubApi::new(&GitHubSettings {
                api_url: url.clone(),
                auth: GitHubAuth::App {
                    app_id: APP_ID.into(),
                    installation_id: INSTALLATION,
                    private_key: private,
                },
            })
            .expect("app"),
        ),
        "images",
        MAX,
    );
    let plain = anonymous
        .fetch("octo", "images", &commit)
        .await
        .expect("anonymous");
    let signed = app.fetch("octo", "images", &commit).await.expect("signed");
    assert_eq!(
        top_folder(&plain.bytes),
        format!("octo-images-{}", &commit[..7])
    );
    assert_eq!(top_folder(&signed.bytes), format!("octo-images-{commit}"));

    // Both read to the same snapshot: the first segment is taken off, never predicted.
    let dir = tempfile::TempDir::new().expect("store");
    let store = folder_store(dir.path());
    let ids: Vec<SnapshotId> = {
        let mut ids = Vec::new();
        for api in [
            Arc::new(GitHubApi::anonymous(&url).expect("api")),
            with_token(&url),
        ] {
            let sources = sources(api, None, octo(), store.clone());
            ids.push(
                sources
                    .take(Some(&octo()), Some(&commit))
                    .await
                    .expect("taken")
                    .id,
            );
        }
        ids
    };
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0].as_str(), expected(repo.path(), &commit, "images"));
    let state = github.state();
    assert!(
        state
            .exchanges
            .iter()
            .any(|(op, _)| op == "apps/create-installation-access-token")
    );
    assert!(state.jwt_refusals.is_empty(), "{:?}", state.jwt_refusals);
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
}

#[tokio::test]
async fn another_commits_archive_an_unknown_commit_a_hidden_repository_and_an_outage_are_refused() {
    let repo = tempfile::TempDir::new().expect("repo");
    let first = repository(repo.path(), "images");
    let second = edit(repo.path(), "images", "second");
    let github = GitHub::new("unused");
    github.attach("octo/images", repo.path(), false);
    let url = github.serve().await;
    let store = tempfile::TempDir::new().expect("store");
    let sources = sources(with_token(&url), None, octo(), folder_store(store.path()));

    // A host that serves the first commit's archive when asked for the second.
    let first_tarball = GitHubSource::new(with_token(&url), "images", MAX)
        .fetch("octo", "images", &first)
        .await
        .expect("the first commit")
        .bytes;
    github.state().planted.insert(second.clone(), first_tarball);
    let error = sources
        .take(Some(&octo()), Some(&second))
        .await
        .expect_err("another commit's archive");
    assert!(
        matches!(error, SourceError::WrongCommit { ref asked, ref found } if *asked == second && *found == first),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("refusing to build what was not asked for")
    );
    assert!(
        std::fs::read_dir(store.path()).map_or(true, |d| d.count() == 0),
        "nothing stored"
    );
    github.state().planted.clear();

    // A commit GitHub does not have: permanent, saying to push it.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let error = sources
        .take(Some(&octo()), Some(unknown))
        .await
        .expect_err("unknown");
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("push the commit"), "{error}");

    // A private repository read without signing in: GitHub shows nothing.
    let anonymous = self::sources(
        Arc::new(GitHubApi::anonymous(&url).expect("api")),
        None,
        octo(),
        folder_store(store.path()),
    );
    let error = anonymous
        .take(Some(&octo()), Some(&first))
        .await
        .expect_err("hidden");
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("Contents: read"), "{error}");

    // A branch that does not exist, and GitHub down.
    let error = sources
        .take_head(Some(&octo()), "release")
        .await
        .expect_err("no branch");
    assert!(
        !error.is_transient() && error.to_string().contains("no branch release"),
        "{error}"
    );
    github.state().failures = vec![503];
    let error = sources
        .take(Some(&octo()), Some(&first))
        .await
        .expect_err("down");
    assert!(error.is_transient(), "{error}");
    assert!(!error.to_string().contains(PAT));
    assert!(
        sources.take(Some(&octo()), Some(&first)).await.is_ok(),
        "back up"
    );
    let state = github.state();
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
}

#[tokio::test]
async fn azure_devops_items_zip_gives_the_commits_snapshot_whatever_the_zips_layout() {
    let repo = tempfile::TempDir::new().expect("repo");
    let first = repository(repo.path(), "src/images");
    let second = edit(repo.path(), "src/images", "second");
    let devops = DevOps::new(TOKEN);
    devops.attach(REPOSITORY, repo.path());
    let base = devops.serve().await;
    let repository = RepositoryRef::AzureDevOps {
        organization_url: format!("{base}/fabrikam"),
        project: PROJECT.into(),
        repository_id: REPOSITORY.into(),
    };
    let store = tempfile::TempDir::new().expect("store");
    let github = Arc::new(GitHubApi::anonymous("https://api.github.invalid").expect("api"));
    let sources = sources(
        github,
        Some(&base),
        repository.clone(),
        folder_store(store.path()),
    );
    // A zip keeps no executable bit: the snapshot is the commit's files, 0644.
    let want = expected_without_modes(repo.path(), &first, "src/images");
    assert_ne!(want, expected(repo.path(), &first, "src/images"));
    for layout in [
        ZipLayout::RepositoryPath,
        ZipLayout::FolderName,
        ZipLayout::Inside,
    ] {
        devops.state().layout = layout;
        let taken = sources
            .take(Some(&repository), Some(&first))
            .await
            .unwrap_or_else(|e| panic!("{layout:?}: {e}"));
        assert_eq!(taken.id.as_str(), want, "{layout:?}");
        assert!(taken.images("images")["example"].is_ok());
    }
    assert_eq!(
        sources
            .take(Some(&repository), Some(&first))
            .await
            .expect("taken")
            .repository,
        Some(format!("{base}/fabrikam/{PROJECT}/_git/{REPOSITORY}"))
    );

    // The configured repository's branch head, from the refs API.
    let head = sources.take_head(None, "main").await.expect("the head");
    assert_eq!(head.commit.as_deref(), Some(second.as_str()));
    assert_eq!(
        head.id.as_str(),
        expected_without_modes(repo.path(), &second, "src/images")
    );

    // What the items call asked for: the folder's zip at the commit.
    let items = devops
        .state()
        .queries
        .iter()
        .find(|q| q.contains_key("versionDescriptor.version"))
        .cloned()
        .expect("an items call");
    assert_eq!(items["path"], "/src/images");
    assert_eq!(items["$format"], "zip");
    assert_eq!(items["versionDescriptor.versionType"], "commit");
    assert_eq!(items["versionDescriptor.version"], first);

    // A commit the repository does not have; an identity it does not take.
    let unknown = "5555555555555555555555555555555555555555";
    let error = sources
        .take(Some(&repository), Some(unknown))
        .await
        .expect_err("unknown");
    assert!(
        !error.is_transient() && error.to_string().contains("push the commit"),
        "{error}"
    );
    *devops.token.lock().expect("lock") = "another identity's token".into();
    let error = sources
        .take(Some(&repository), Some(&first))
        .await
        .expect_err("203");
    assert!(
        !error.is_transient()
            && error
                .to_string()
                .contains("add the identity to the organization"),
        "{error}"
    );
    let state = devops.state();
    assert!(state.operations.iter().any(|op| op == "Items_Get"));
    assert!(state.operations.iter().any(|op| op == "Refs_List"));
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
}

#[tokio::test]
async fn snapshots_are_blobs_in_azurite_read_back_listed_and_removed_and_a_planted_giant_is_refused()
 {
    let azurite = Azurite::shared();
    let container = azurite.fresh_container().await;
    let store = BlobSnapshots::new(
        &container,
        Arc::new(StorageCredential),
        Some(&azurite.ca_file),
        1024 * 1024,
    )
    .expect("store");
    let bytes = b"not really a tar, but the store does not care".to_vec();
    let id: SnapshotId = image_factory::archive::sha256_hex(&bytes)
        .parse()
        .expect("an id");
    store.put(&id, bytes.clone()).await.expect("put");
    store.put(&id, bytes.clone()).await.expect("put again");
    assert_eq!(store.get(&id).await.expect("get"), bytes);
    assert_eq!(
        azurite.read_blob(&store.url_of(&id)).await,
        Some(bytes.clone())
    );
    let listed = store.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert!((chrono::Utc::now() - listed[0].stored_at).num_minutes() < 5);

    // A blob larger than any snapshot within the limits is not read.
    let giant: SnapshotId = "1".repeat(64).parse().expect("an id");
    store
        .put(&giant, vec![0u8; 1024 * 1024 + 1])
        .await
        .expect("planted");
    let error = store.get(&giant).await.expect_err("too large");
    assert!(
        !error.is_transient() && error.message.contains("tampered with or corrupt"),
        "{error:?}"
    );

    store.delete(&id).await.expect("delete");
    store.delete(&id).await.expect("delete twice");
    let error = store.get(&id).await.expect_err("gone");
    assert!(
        !error.is_transient() && error.message.contains("pruned or never stored"),
        "{error:?}"
    );
    assert_eq!(store.list().await.expect("list").len(), 1);

    // An identity Blob Storage does not take: permanent, no token in the message.
    let refused = BlobSnapshots::new(
        &container,
        Arc::new(FixedCredential),
        Some(&azurite.ca_file),
        1024 * 1024,
    )
    .expect("store");
    let error = refused.get(&giant).await.expect_err("refused");
    assert!(!error.is_transient(), "{error:?}");
    assert!(!error.message.contains(TOKEN), "{error:?}");
}

#[test]
fn the_specification_check_refuses_an_items_call_without_its_path_or_with_an_unknown_query() {
    use common::openapi::{self, Exchange};
    let call = |query: &[(&str, &str)]| Exchange {
        method: "GET".into(),
        path: format!("/fabrikam/{PROJECT}/_apis/git/repositories/{REPOSITORY}/items"),
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        request: None,
        status: 200,
        answer: serde_json::Value::Null,
    };
    let good = [
        ("path", "/src/images"),
        ("$format", "zip"),
        ("versionDescriptor.versionType", "commit"),
        (
            "versionDescriptor.version",
            "5555555555555555555555555555555555555555",
        ),
        ("api-version", "7.1"),
    ];
    let spec = openapi::azure_devops_git();
    assert_eq!(spec.check("Items_Get", &call(&good)), Ok(()));
    assert!(
        spec.check("Items_Get", &call(&good[1..])).is_err(),
        "no path"
    );
    let mut unknown = good.to_vec();
    unknown.push(("zipForUnix", "true"));
    assert!(
        spec.check("Items_Get", &call(&unknown)).is_err(),
        "Items_Get has no zipForUnix"
    );
}
