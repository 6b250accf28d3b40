//! The Security Update Guide client (`web::msrc`) against a stand-in of the
//! API on loopback that serves Microsoft's real CVRF documents
//! (`common::msrc`): every request it makes and every list the stand-in
//! answers are checked against the API's own OpenAPI description
//! (`msrc/swagger.json` of the third-party folder). Also: the service's
//! casing and envelope, a list answering every month, a revised month
//! refreshing the cache, an API that cannot be reached or fails, a month
//! not published, and a folder of documents instead of the API.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::msrc::{Dialect, FakeMsrc, Month};
use image_factory::domain::cvrf::{CvrfDocument, MonthId};
use image_factory::domain::patch;
use image_factory::ports::PortError;
use image_factory::ports::security_updates::SecurityUpdates;
use image_factory::web::msrc::{MSRC_URL, Msrc, MsrcSource};
use tempfile::TempDir;

fn month(id: &str) -> MonthId {
    id.parse().unwrap()
}

/// The client as the composition root builds it: `IMAGE_FACTORY_MSRC_URL`
/// set to `value`, documents cached in `cache`.
fn client(value: &str, cache: Option<&TempDir>) -> Arc<dyn SecurityUpdates> {
    let source =
        MsrcSource::from_vars(|name| (name == MSRC_URL).then(|| value.to_string())).unwrap();
    Arc::new(Msrc::new(&source, cache.map(|c| c.path().to_path_buf())).unwrap())
}

fn cumulative_kb(document: &CvrfDocument) -> String {
    patch::cumulative_update(document, "Windows Server 2022")
        .unwrap()
        .expect("a cumulative update")
        .kb
}

#[tokio::test]
async fn every_request_fits_the_description_and_every_list_its_schema() {
    let fake = FakeMsrc::start(
        vec![
            Month::real("2024-Jun"),
            Month::real("2025-Dec"),
            Month::real("2026-Jan"),
        ],
        Dialect::Described,
    )
    .await;
    let msrc = client(&fake.url, None);
    let june = msrc.month(month("2024-Jun")).await.unwrap();
    assert_eq!(june.id, month("2024-Jun"));
    assert_eq!(cumulative_kb(&june), "KB5039227");
    let newest = msrc.newest().await.unwrap();
    assert_eq!(newest.id, month("2026-Jan"));
    assert_eq!(cumulative_kb(&newest), "KB5073457");
    assert_eq!(
        fake.requests(),
        [
            "GET /updates('2024-Jun')",
            "GET /cvrf/2024-Jun",
            "GET /updates",
            "GET /cvrf/2026-Jan"
        ]
    );
    assert_eq!(fake.check_contract(), 4);
}

#[tokio::test]
async fn the_services_casing_and_envelope_are_read() {
    let fake = FakeMsrc::start(
        vec![Month::real("2025-Nov"), Month::real("2025-Dec")],
        Dialect::Service,
    )
    .await;
    let msrc = client(&fake.url, None);
    let november = msrc.month(month("2025-Nov")).await.unwrap();
    assert_eq!(cumulative_kb(&november), "KB5068787");
    let newest = msrc.newest().await.unwrap();
    assert_eq!(newest.id, month("2025-Dec"));
    fake.check_contract();
}

#[tokio::test]
async fn a_list_answering_every_month_still_gives_the_month_asked() {
    let fake = FakeMsrc::start(
        vec![
            Month::real("2025-Nov"),
            Month::real("2025-Dec"),
            Month::real("2026-Jan"),
        ],
        Dialect::Service,
    )
    .await;
    fake.answer_every_month();
    let december = client(&fake.url, None)
        .month(month("2025-Dec"))
        .await
        .unwrap();
    assert_eq!(december.id, month("2025-Dec"));
    assert_eq!(
        fake.requests(),
        ["GET /updates('2025-Dec')", "GET /cvrf/2025-Dec"]
    );
    fake.check_contract();
}

#[tokio::test]
async fn the_newest_month_is_the_one_released_last_not_the_one_revised_last() {
    // June 2024 revised after January 2026 was released.
    let fake = FakeMsrc::start(
        vec![
            Month::real("2024-Jun").revised("2026-02-20T00:00:00"),
            Month::real("2026-Jan"),
        ],
        Dialect::Service,
    )
    .await;
    let newest = client(&fake.url, None).newest().await.unwrap();
    assert_eq!(newest.id, month("2026-Jan"));
    fake.check_contract();
}

#[tokio::test]
async fn a_revised_month_refreshes_the_cache() {
    let fake = FakeMsrc::start(vec![Month::real("2025-Dec")], Dialect::Service).await;
    let cache = TempDir::new().unwrap();
    let msrc = client(&fake.url, Some(&cache));
    let first = msrc.month(month("2025-Dec")).await.unwrap();
    let cached = cache.path().join("cvrfDocument-2025-Dec.xml");
    assert!(cached.is_file());
    // Private, as the rest of the data folder.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cached).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Asked again: the list is read, the document comes from the cache.
    let again = msrc.month(month("2025-Dec")).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        fake.requests(),
        [
            "GET /updates('2025-Dec')",
            "GET /cvrf/2025-Dec",
            "GET /updates('2025-Dec')"
        ]
    );
    // Microsoft revises the month: the list's CurrentReleaseDate changes.
    fake.publish(Month::real("2025-Dec").revised("2026-01-20T10:00:00"));
    let revised = msrc.month(month("2025-Dec")).await.unwrap();
    assert_eq!(
        revised.current_release.to_rfc3339(),
        "2026-01-20T10:00:00+00:00"
    );
    assert_eq!(fake.requests().len(), 5, "{:?}", fake.requests());
    assert_eq!(fake.requests()[4], "GET /cvrf/2025-Dec");
    let cached = std::fs::read_to_string(cache.path().join("cvrfDocument-2025-Dec.xml")).unwrap();
    assert!(
        cached.contains("<cvrf:CurrentReleaseDate>2026-01-20T10:00:00</cvrf:CurrentReleaseDate>")
    );
    // A cache file that is not a document is fetched again, and replaced.
    std::fs::write(cache.path().join("cvrfDocument-2025-Dec.xml"), "garbage").unwrap();
    assert_eq!(msrc.month(month("2025-Dec")).await.unwrap(), revised);
    assert_eq!(fake.requests().len(), 7);
    fake.check_contract();
}

/// The error of `result`, which must have failed.
fn failure<T: std::fmt::Debug>(result: Result<T, PortError>) -> PortError {
    result.expect_err("it fails")
}

#[tokio::test]
async fn an_api_that_cannot_be_reached_or_fails_is_transient() {
    let closed = format!("http://127.0.0.1:{}", common::child::free_port());
    let err = failure(client(&closed, None).newest().await);
    assert!(err.is_transient(), "{err}");
    assert!(err.message.contains("cannot be reached"), "{err}");

    for status in [
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let failing =
            common::serve_loopback(axum::Router::new().fallback(move || async move { status }))
                .await;
        let err = failure(client(&failing, None).month(month("2025-Dec")).await);
        assert!(err.is_transient(), "{status}: {err}");
        assert!(err.message.contains(&status.as_u16().to_string()), "{err}");
    }
}

#[tokio::test]
async fn a_month_not_published_or_a_document_not_cvrf_is_permanent() {
    let fake = FakeMsrc::start(vec![Month::real("2026-Jan")], Dialect::Service).await;
    let err = failure(client(&fake.url, None).month(month("2031-Mar")).await);
    assert!(!err.is_transient());
    assert!(
        err.message
            .contains("Microsoft has published no security updates for 2031-Mar"),
        "{err}"
    );
    fake.check_contract();

    let missing =
        common::serve_loopback(axum::Router::new().fallback(|| async { StatusCode::NOT_FOUND }))
            .await;
    let err = failure(client(&missing, None).month(month("2026-Jan")).await);
    assert!(
        !err.is_transient() && err.message.contains("2026-Jan"),
        "{err}"
    );

    // A document whose ID is another month than the one listed.
    let mislabelled = FakeMsrc::start(
        vec![Month {
            id: "2026-Jan".into(),
            xml: Month::real("2025-Dec").xml,
        }],
        Dialect::Service,
    )
    .await;
    let err = failure(
        client(&mislabelled.url, None)
            .month(month("2026-Jan"))
            .await,
    );
    assert!(!err.is_transient());
    assert!(
        err.message
            .contains("it is the document of 2025-Dec, not of 2026-Jan"),
        "{err}"
    );

    // A document that is not CVRF at all.
    let broken = FakeMsrc::start(
        vec![Month {
            xml: Month::real("2025-Nov")
                .xml
                .replace("<vuln:CVE>", "<vuln:CVE><oops>"),
            id: "2025-Nov".into(),
        }],
        Dialect::Service,
    )
    .await;
    let err = failure(client(&broken.url, None).month(month("2025-Nov")).await);
    assert!(
        !err.is_transient() && err.message.contains("not XML"),
        "{err}"
    );
}

#[tokio::test]
async fn a_folder_of_documents_stands_in_for_the_api() {
    let folder = common::third_party("msrc/cvrf");
    let msrc = client(folder.to_str().unwrap(), None);
    assert_eq!(msrc.newest().await.unwrap().id, month("2026-Jan"));
    let december = msrc.month(month("2025-Dec")).await.unwrap();
    assert_eq!(cumulative_kb(&december), "KB5071547");
    let err = failure(msrc.month(month("2031-Mar")).await);
    assert!(!err.is_transient());
    assert!(
        err.message
            .contains("cvrfDocument-2031-Mar.xml does not exist"),
        "{err}"
    );

    // A month the folder holds under its own name, nothing else there.
    let own = TempDir::new().unwrap();
    std::fs::write(
        own.path().join("cvrfDocument-2031-Mar.xml"),
        Month::real("2026-Jan").renamed("2031-Mar").xml,
    )
    .unwrap();
    std::fs::write(own.path().join("notes.txt"), "not a document").unwrap();
    let msrc = client(own.path().to_str().unwrap(), None);
    assert_eq!(msrc.newest().await.unwrap().id, month("2031-Mar"));
    let empty = TempDir::new().unwrap();
    let err = failure(client(empty.path().to_str().unwrap(), None).newest().await);
    assert!(
        !err.is_transient() && err.message.contains("holds no cvrfDocument"),
        "{err}"
    );
}

#[test]
fn the_descriptions_paths_are_what_the_checks_match() {
    use common::openapi::{self, Exchange};
    let exchange = |path: &str, status: u16, answer: serde_json::Value| Exchange {
        method: "GET".into(),
        path: path.into(),
        query: Default::default(),
        request: None,
        status,
        answer,
    };
    let description = openapi::msrc();
    assert_eq!(
        description.check_by_path(&exchange("/cvrf/2024-Jun", 200, serde_json::Value::Null)),
        Ok("/cvrf/{id}".into())
    );
    assert_eq!(
        description.check_by_path(&exchange(
            "/updates('2024-Jun')",
            200,
            serde_json::json!([])
        )),
        Ok("/updates({key})".into())
    );
    // What the description does not hold is refused: a path, a list entry
    // missing a required field or carrying one it does not define.
    assert!(
        description
            .check_by_path(&exchange(
                "/document/2024-Jun",
                200,
                serde_json::Value::Null
            ))
            .is_err()
    );
    assert!(
        description
            .check_by_path(&exchange("/updates()", 200, serde_json::json!([])))
            .is_err()
    );
    let entry = serde_json::json!({
        "id": "2024-Jun", "alias": "2024-Jun", "documentTitle": "June 2024 Security Updates", "severity": null,
        "initialReleaseDate": "2024-06-11T07:00:00Z", "currentReleaseDate": "2024-06-13T00:00:00Z",
        "cvrfUrl": "https://api.msrc.microsoft.com/cvrf/v3.0/cvrf/2024-Jun"
    });
    assert!(
        description
            .check_by_path(&exchange(
                "/updates",
                200,
                serde_json::json!([entry.clone()])
            ))
            .is_ok()
    );
    let mut without_url = entry.clone();
    without_url.as_object_mut().unwrap().remove("cvrfUrl");
    let errors = description
        .check_by_path(&exchange("/updates", 200, serde_json::json!([without_url])))
        .unwrap_err();
    assert!(errors.iter().any(|e| e.contains("cvrfUrl")), "{errors:?}");
    let mut undated = entry.clone();
    undated["currentReleaseDate"] = serde_json::json!("yesterday");
    let errors = description
        .check_by_path(&exchange("/updates", 200, serde_json::json!([undated])))
        .unwrap_err();
    assert!(errors.iter().any(|e| e.contains("date-time")), "{errors:?}");
    let mut extra = entry;
    extra["CvrfUrl"] = serde_json::json!("x");
    assert!(
        description
            .check_by_path(&exchange("/updates", 200, serde_json::json!([extra])))
            .is_err()
    );
}
