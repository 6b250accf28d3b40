//! The gallery, the Marketplace and rollback on one machine, driven as an
//! operator drives them: three releases of the example image go to the local
//! gallery (`<data>/releases`), where the `[release] keep_last` policy prunes
//! the oldest; `image-factory rollback --url` asks the factory to make an
//! earlier version latest again and refuses one the gallery no longer holds; a version added to the local
//! Marketplace file starts the run of the image built on that base. An older
//! run approved after a newer one is published below the latest, not
//! promoted, and says so everywhere.

mod common;

use std::path::Path;
use std::time::Duration;

use common::event_receiver::{self, Receiver, with_webhook};
use common::{Factory, GITHUB_SECRET, Options, copy_example, github_push, sign};
use image_factory::domain::run::{Run, RunStatus, Stage, TriggerKind};
use serde_json::{Value, json};

/// The local gallery's file of `image`.
fn gallery(data: &Path, image: &str) -> Value {
    let text = std::fs::read_to_string(data.join("releases").join(image).join("gallery.json"))
        .expect("gallery.json");
    serde_json::from_str(&text).expect("JSON")
}

/// `(version, excludeFromLatest)` of every version in the gallery file.
fn versions(gallery: &Value) -> Vec<(String, bool)> {
    gallery["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_str().expect("version").to_string(),
                v["excludeFromLatest"].as_bool().expect("flag"),
            )
        })
        .collect()
}

/// Releases one change of the example image pushed as `commit`: each push
/// changes the template folder, so no run is skipped as identical.
async fn release(factory: &Factory, image_dir: &Path, commit: &str) -> String {
    std::fs::write(
        image_dir.join("scripts").join("release-marker.txt"),
        format!("{commit}\n"),
    )
    .expect("change the image");
    let run = factory
        .push_and_wait(commit, RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&run.id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    let released = factory.wait_status(&run.id, RunStatus::Released).await;
    released.version.to_string()
}

/// `image-factory rollback --url` of the factory, with its operator token,
/// from a shell that has none of the factory's other settings.
async fn rollback(factory: &Factory, to: &str) -> std::process::Output {
    let shell = tempfile::TempDir::new().expect("a folder");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["rollback", "--url", &factory.url, "--image", "example"])
        .args([
            "--to",
            to,
            "--reason",
            "checking the gallery",
            "--as",
            "ops",
        ])
        .env("IMAGE_FACTORY_DATA", shell.path())
        .env("IMAGE_FACTORY_OPERATOR_TOKEN", common::OPERATOR_TOKEN)
        .env_remove("IMAGE_FACTORY_SUBSCRIPTION_ID")
        .env_remove("IMAGE_FACTORY_FUNCTION_KEY")
        .env_remove("IMAGE_FACTORY_API_SCOPE")
        .output()
        .await
        .expect("the CLI runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_are_pruned_by_policy_and_rollback_makes_an_earlier_version_latest() {
    let images = tempfile::TempDir::new().expect("a folder");
    let dir = copy_example(images.path(), "example");
    let toml = std::fs::read_to_string(dir.join("image.toml")).expect("image.toml");
    std::fs::write(
        dir.join("image.toml"),
        format!("{toml}\n[release]\nkeep_last = 2\n"),
    )
    .expect("written");
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    let data = factory.data.path().to_path_buf();

    let first = release(&factory, &dir, "1111111111111111111111111111111111111111").await;
    assert_eq!(
        versions(&gallery(&data, "example")),
        [(first.clone(), false)]
    );
    let second = release(&factory, &dir, "2222222222222222222222222222222222222222").await;
    let third = release(&factory, &dir, "3333333333333333333333333333333333333333").await;

    // keep_last = 2: the first version left the gallery, its folder deleted.
    assert_eq!(
        versions(&gallery(&data, "example")),
        [(second.clone(), false), (third.clone(), false)]
    );
    let releases = data.join("releases").join("example");
    assert!(
        !releases.join(&first).exists(),
        "the pruned version's folder is gone"
    );
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(releases.join(&third).join("image-version.json"))
            .expect("the released version's metadata"),
    )
    .expect("JSON");
    assert_eq!(record["imageVersion"], third.as_str());
    assert_eq!(record["promoted"], third.as_str());
    assert_eq!(record["pruned"], json!([first]));

    // Rollback: the second version is latest again; the third is kept, excluded.
    let out = rollback(&factory, &second).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "example: {second} is current (rolled back from {third}; excluded from latest: {third})"
        )) && stdout.contains("recorded for ops (operator-token)"),
        "{stdout}"
    );
    assert_eq!(
        versions(&gallery(&data, "example")),
        [(second.clone(), false), (third.clone(), true)]
    );

    // A version the gallery no longer holds is refused, and nothing changes.
    let before = gallery(&data, "example");
    let runs_before = factory.runs().await;
    let out = rollback(&factory, &first).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("version {first} is not in the gallery")),
        "{stderr}"
    );
    assert_eq!(gallery(&data, "example"), before);
    assert_eq!(factory.runs().await, runs_before, "nor the runs");

    // Rolling forward again is a rollback to the higher version.
    let out = rollback(&factory, &third).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        versions(&gallery(&data, "example")),
        [(second, false), (third, false)]
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_added_to_the_local_marketplace_file_starts_a_run_once() {
    let images = tempfile::TempDir::new().expect("a folder");
    let dir = copy_example(images.path(), "example");
    let toml = std::fs::read_to_string(dir.join("image.toml")).expect("image.toml");
    std::fs::write(
        dir.join("image.toml"),
        format!(
            "{toml}\n[base_image]\npublisher = \"MicrosoftWindowsServer\"\noffer = \"WindowsServer\"\nsku = \"2022-datacenter-azure-edition\"\nlocation = \"westeurope\"\n"
        ),
    )
    .expect("written");
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    let fire = || async {
        factory
            .http
            .post(format!("{}/base-image", factory.handler_url))
            .json(&json!({ "Data": { "timer": { "IsPastDue": false } }, "Metadata": {} }))
            .send()
            .await
            .expect("the timer fires")
            .status()
    };
    // No file yet: nothing is listed, nothing starts.
    assert_eq!(fire().await, 200);
    assert!(factory.runs().await.is_empty());

    let catalogue = |versions: &str| {
        std::fs::write(
            factory.data.path().join("marketplace.toml"),
            format!(
                "[[image]]\npublisher = \"MicrosoftWindowsServer\"\noffer = \"WindowsServer\"\nsku = \"2022-datacenter-azure-edition\"\nversions = [{versions}]\n\n[[image]]\npublisher = \"Canonical\"\noffer = \"ubuntu-24_04-lts\"\nsku = \"server\"\nversions = [\"24.4.999\"]\n"
            ),
        )
        .expect("the Marketplace file")
    };
    catalogue("\"20348.2762.241009\", \"20348.2849.241106\"");
    assert_eq!(fire().await, 200);
    assert_eq!(fire().await, 200);
    let runs = factory.runs().await;
    assert_eq!(
        runs.len(),
        1,
        "one run for the newest version, however often the timer fires"
    );
    assert_eq!(runs[0].id.as_str(), "base-example-20348.2849.241106");
    assert_eq!(runs[0].trigger.kind, TriggerKind::BaseImageUpdate);

    // A newer version in the file starts the next run.
    catalogue("\"20348.2849.241106\", \"20348.2966.241205\"");
    assert_eq!(fire().await, 200);
    factory
        .wait_for(
            "base-example-20348.2966.241205",
            Duration::from_secs(60),
            |_| true,
        )
        .await;

    // A file that is not a Marketplace file fails the firing and starts nothing.
    std::fs::write(
        factory.data.path().join("marketplace.toml"),
        "[[image]]\nsku = 1\n",
    )
    .expect("written");
    assert_eq!(fire().await, 500);
    assert_eq!(factory.runs().await.len(), 2);
    factory.stop().await;
}

/// Runs `git` in `dir` with a fixed identity; answers its trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_released_commit_is_tagged_image_slash_version_in_the_images_repository() {
    let images = tempfile::TempDir::new().expect("a folder");
    copy_example(images.path(), "example");
    git(images.path(), &["init", "-q"]);
    git(images.path(), &["add", "."]);
    git(images.path(), &["commit", "-q", "-m", "the example image"]);
    let commit = git(images.path(), &["rev-parse", "HEAD"]);
    let factory = Factory::start_with(Options::with_images(images.path())).await;

    let run = factory
        .push_and_wait(&commit, RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&run.id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    factory.wait_status(&run.id, RunStatus::Released).await;
    let tag = format!("example/{}", run.version);
    let tagged = factory
        .wait_for(&run.id, Duration::from_secs(60), |r| r.git_tag.is_some())
        .await;
    let record = tagged.git_tag.expect("the tag's record");
    assert_eq!(
        (record.tag.as_str(), record.commit.as_str()),
        (tag.as_str(), commit.as_str())
    );
    assert_eq!(
        git(
            images.path(),
            &["rev-parse", &format!("refs/tags/{tag}^{{commit}}")]
        ),
        commit,
        "the tag points at the commit the run built"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_release_has_notes_naming_its_commit_the_previous_version_and_what_changed() {
    let images = tempfile::TempDir::new().expect("a folder");
    let dir = copy_example(images.path(), "example");
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    let first = release(&factory, &dir, "1111111111111111111111111111111111111111").await;
    let second_commit = "2222222222222222222222222222222222222222";
    let second = release(&factory, &dir, second_commit).await;

    // release-notes.md beside image-version.json in the local gallery.
    let folder = factory
        .data
        .path()
        .join("releases")
        .join("example")
        .join(&second);
    let notes = std::fs::read_to_string(folder.join("release-notes.md")).expect("the notes");
    for expected in [
        format!("# example {second}"),
        format!("- Commit: `{second_commit}` — Update the image"),
        format!(
            "The previous release is {first} (run push-example-1111111111111111111111111111111111111111, commit `1111111111111111111111111111111111111111`"
        ),
        "Changed files:\n\n- `scripts/release-marker.txt`".to_string(),
        "platform-lead approved at".to_string(),
        "| build |".to_string(),
    ] {
        assert!(
            notes.contains(&expected),
            "{expected:?} missing from:\n{notes}"
        );
    }
    assert!(
        !notes.contains("`build.pkr.hcl`"),
        "an unchanged file is not named:\n{notes}"
    );
    let first_notes =
        std::fs::read_to_string(folder.with_file_name(&first).join("release-notes.md"))
            .expect("the first release's notes");
    assert!(first_notes.contains("first release"), "{first_notes}");

    // The same notes, structured, in image-version.json.
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join("image-version.json")).expect("the metadata"),
    )
    .expect("JSON");
    assert_eq!(record["notes"]["previous"]["version"], first.as_str());
    assert_eq!(
        record["notes"]["changes"]["modified"],
        json!(["scripts/release-marker.txt"])
    );
    assert_eq!(record["notes"]["approvals"][0]["approver"], "platform-lead");

    // The CLI prints the notes the gallery holds.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["runs", "notes", &format!("push-example-{second_commit}")])
        .args(["--url", &factory.url])
        .output()
        .await
        .expect("the CLI runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        notes.trim_end()
    );

    // The changelog lists both releases, newest first, with their notes.
    let page = factory
        .http
        .get(format!("{}/api/dashboard/changelog/example", factory.url))
        .send()
        .await
        .expect("the changelog")
        .text()
        .await
        .expect("text");
    let (at_second, at_first) = (
        page.find(&format!("<h2>{second}</h2>"))
            .expect("the second release"),
        page.find(&format!("<h2>{first}</h2>"))
            .expect("the first release"),
    );
    assert!(at_second < at_first, "newest first: {page}");
    assert!(page.contains("scripts/release-marker.txt"), "{page}");
    factory.stop().await;
}

/// Pushes one change of the example image as `commit` and waits until its
/// run waits for approval; answers the run.
async fn waiting(factory: &Factory, image_dir: &Path, commit: &str) -> Run {
    std::fs::write(
        image_dir.join("scripts").join("release-marker.txt"),
        format!("{commit}\n"),
    )
    .expect("change the image");
    factory
        .push_and_wait(commit, RunStatus::WaitingForApproval)
        .await
}

/// Approves run `id` through its link and waits until it is released.
async fn approve(factory: &Factory, id: &str) -> Run {
    let link = factory.approval_link(id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    factory.wait_status(id, RunStatus::Released).await
}

/// The text of a page of the factory.
async fn page(factory: &Factory, path: &str) -> String {
    factory
        .http
        .get(format!("{}{path}", factory.url))
        .send()
        .await
        .expect("the page")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_run_approved_after_a_newer_one_is_published_but_latest_stays_the_newer() {
    let images = tempfile::TempDir::new().expect("a folder");
    let dir = copy_example(images.path(), "example");
    let secret = event_receiver::secret();
    let receiver = Receiver::start(&secret, 0).await;
    let factory = Factory::start_with(with_webhook(
        Options::with_images(images.path()),
        &receiver.url,
        &secret,
    ))
    .await;
    let data = factory.data.path().to_path_buf();
    let first = release(&factory, &dir, "1111111111111111111111111111111111111111").await;

    // Two runs wait for approval; the newer (higher version) is approved first.
    let older = waiting(&factory, &dir, "2222222222222222222222222222222222222222").await;
    let newer = waiting(&factory, &dir, "3333333333333333333333333333333333333333").await;
    assert!(older.version < newer.version);
    let newer = approve(&factory, &newer.id).await;
    let (older_v, newer_v) = (older.version.to_string(), newer.version.to_string());

    // The approver of the older run is warned before deciding.
    let link = factory.approval_link(&older.id, "platform-lead");
    let warning = factory
        .http
        .get(&link)
        .send()
        .await
        .expect("the page")
        .text()
        .await
        .expect("text");
    assert!(
        warning.contains(&format!(
            "Version {older_v} is older than the latest release, {newer_v}"
        )),
        "{warning}"
    );
    let older = approve(&factory, &older.id).await;

    // Published, not promoted: latest stays the newer version.
    assert_eq!(
        versions(&gallery(&data, "example")),
        [
            (first.clone(), false),
            (older_v.clone(), true),
            (newer_v.clone(), false)
        ]
    );
    let record = older.release.as_ref().expect("a release record");
    assert_eq!(record.promoted, None);
    assert_eq!(record.below_latest.as_deref(), Some(newer_v.as_str()));
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(
            data.join("releases")
                .join("example")
                .join(&older_v)
                .join("image-version.json"),
        )
        .expect("the older version's metadata"),
    )
    .expect("JSON");
    assert_eq!(file["belowLatest"], newer_v.as_str());
    assert!(file["promoted"].is_null(), "{file}");
    assert!(
        older
            .stage(Stage::Release)
            .summary
            .as_deref()
            .is_some_and(|s| s.contains(&format!("below the latest {newer_v}"))),
        "{:?}",
        older.stage(Stage::Release).summary
    );
    // Its notes name the release below it as the previous one, not the newer.
    let notes = record.notes.as_ref().expect("notes");
    assert_eq!(
        notes.previous.as_ref().map(|p| p.version.as_str()),
        Some(first.as_str())
    );

    // Its event says so: a type of its own, not "released".
    let verified = receiver.wait_verified(3).await;
    let events: Vec<(String, String)> = verified
        .iter()
        .map(|d| {
            let event: Value =
                serde_json::from_str(d["body"].as_str().expect("a body")).expect("JSON");
            (
                event["type"].as_str().unwrap_or_default().to_string(),
                event["subject"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            (
                "image-factory.image.released".to_string(),
                format!("example/{first}")
            ),
            (
                "image-factory.image.released".to_string(),
                format!("example/{newer_v}")
            ),
            (
                "image-factory.image.published".to_string(),
                format!("example/{older_v}")
            ),
        ]
    );

    // The pages say so: the run, the image, the changelog and the fleet.
    let shown = format!("published below the latest {newer_v}, not promoted");
    let run_page = page(&factory, &format!("/api/dashboard/runs/{}", older.id)).await;
    assert!(run_page.contains(&shown), "{run_page}");
    let image_page = page(&factory, "/api/dashboard/images/example").await;
    assert!(
        image_page.contains(&format!("Current version: <strong>{newer_v}</strong>")),
        "{image_page}"
    );
    assert!(image_page.contains(&shown), "{image_page}");
    let changelog = page(&factory, "/api/dashboard/changelog/example").await;
    assert!(changelog.contains(&shown), "{changelog}");
    let fleet: Value = serde_json::from_str(&page(&factory, "/api/runs?view=fleet").await)
        .expect("the fleet view");
    let latest = &fleet["images"][0]["currentRelease"];
    assert_eq!(latest["version"], newer_v.as_str(), "{fleet}");
    assert!(latest.get("belowLatest").is_none(), "{fleet}");
    factory.stop().await;
    receiver.stop().await;
}

/// Terminal and bidi controls a hostile push can carry: escape, bell, a
/// right-to-left override, a carriage return that rewrites the line, a C1
/// control (CSI) and an isolate.
const CONTROLS: [char; 6] = ['\u{1b}', '\u{7}', '\u{202e}', '\r', '\u{9b}', '\u{2066}'];

fn assert_no_controls(what: &str, text: &str) {
    let found: Vec<String> = text
        .chars()
        .filter(|c| CONTROLS.contains(c))
        .map(|c| format!("U+{:04X}", c as u32))
        .collect();
    assert!(
        found.is_empty(),
        "{what} passes {found:?} through:\n{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn terminal_and_bidi_controls_from_a_push_are_shown_escaped_in_notes_pages_and_the_cli() {
    let images = tempfile::TempDir::new().expect("a folder");
    let dir = copy_example(images.path(), "example");
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    release(&factory, &dir, "3333333333333333333333333333333333333333").await;

    // The next commit adds a file whose name reverses on screen, under a
    // message and a pusher's name that would retitle and clear a terminal.
    let sneaky = "rtl\u{202e}txt.exe";
    std::fs::write(dir.join("scripts").join(sneaky), "payload\n").expect("add the file");
    let commit = "4444444444444444444444444444444444444444";
    let mut push: Value = serde_json::from_str(&github_push(
        commit,
        &["images/example/build.pkr.hcl"],
        "main",
    ))
    .expect("a push");
    let message = "Fix \u{1b}]0;owned\u{7}\u{1b}[2J\rRDP \u{202e}gnp.exe\u{9b}31m \u{2066}x";
    push["head_commit"]["message"] = json!(message);
    push["commits"][0]["message"] = json!(message);
    push["pusher"]["name"] = json!("eve\u{202e}\u{1b}[8m");
    let body = push.to_string();
    let answer = factory
        .http
        .post(format!("{}/api/hooks/github", factory.url))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign(GITHUB_SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("push");
    assert_eq!(answer.status(), 202);
    let id = format!("push-example-{commit}");
    factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    let released = factory.wait_status(&id, RunStatus::Released).await;
    let version = released.version.to_string();

    // release-notes.md
    let notes = std::fs::read_to_string(
        factory
            .data
            .path()
            .join("releases/example")
            .join(&version)
            .join("release-notes.md"),
    )
    .expect("the notes");
    assert_no_controls("release-notes.md", &notes);
    // (Markdown text escapes `<`, `>`, `[` and `]` with a backslash, so
    // that `\<U+202E\>` reads `<U+202E>` rendered; a code span does not.)
    let md = |escape: &str| escape.replace('<', "\\<").replace('>', "\\>");
    for expected in [
        format!(
            "Fix {}\\]0;owned{}{}\\[2J{}RDP",
            md("<U+001B>"),
            md("<U+0007>"),
            md("<U+001B>"),
            md("<U+000D>")
        ),
        format!(
            "RDP {}gnp.exe{}31m {}x",
            md("<U+202E>"),
            md("<U+009B>"),
            md("<U+2066>")
        ),
        format!("by eve{}{}\\[8m", md("<U+202E>"), md("<U+001B>")),
        "- `scripts/rtl<U+202E>txt.exe`".to_string(),
    ] {
        assert!(
            notes.contains(&expected),
            "{expected:?} missing from:\n{notes}"
        );
    }

    // The pages: the run, the image, the changelog.
    for page in [
        format!("runs/{id}"),
        "images/example".to_string(),
        "changelog/example".to_string(),
    ] {
        let html = factory
            .http
            .get(format!("{}/api/dashboard/{page}", factory.url))
            .send()
            .await
            .expect("a page")
            .text()
            .await
            .expect("text");
        assert_no_controls(&page, &html);
        // The text as a browser shows it (askama writes `<` as `&#60;`).
        let shown = html
            .replace("&#60;", "<")
            .replace("&lt;", "<")
            .replace("&#62;", ">")
            .replace("&gt;", ">");
        assert!(
            shown.contains("rtl<U+202E>txt.exe") && shown.contains("eve<U+202E><U+001B>[8m"),
            "{page} shows the escapes:\n{html}"
        );
    }

    // The CLI: the notes and the run as printed on the operator's terminal.
    for args in [vec!["runs", "notes", &id], vec!["runs", "show", &id]] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"))
            .args(&args)
            .args(["--url", &factory.url])
            .output()
            .await
            .expect("the CLI runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8(out.stdout).expect("UTF-8");
        assert_no_controls(&args.join(" "), &printed);
        if args[1] == "notes" {
            assert_eq!(printed.trim_end(), notes.trim_end());
        }
    }
    factory.stop().await;
}
