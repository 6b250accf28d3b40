//! Release events to an Event Grid custom topic: a release on the local
//! factory publishes one CloudEvent to a loopback topic whose every request
//! is checked against the `PublishCloudEventEvents` operation of the
//! vendored Event Grid data-plane specification (tests/common/eventgrid.rs),
//! signed in with the real managed identity credential against the identity
//! endpoint stand-in: the bearer token is the one issued for Event Grid.

mod common;

use std::sync::Arc;

use cloudevents::AttributesReader;
use common::eventgrid::Topic;
use common::identity::{self, IdentityEndpoint};
use common::{Factory, Options};
use image_factory::azure::eventgrid::{EventGridPublisher, EventGridSettings};
use image_factory::azure::identity::Identity;
use image_factory::domain::run::RunStatus;
use image_factory::followups::FollowUps;
use image_factory::ports::events::Publisher;

const COMMIT: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3";

#[test]
fn a_release_publishes_one_cloud_event_to_the_topic_with_the_identitys_token() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let identity_endpoint = IdentityEndpoint::serve_for_process(&runtime);
    runtime.block_on(async {
        let topic = Topic::accepting(&identity::token_for("https://eventgrid.azure.net"));
        let endpoint = topic.serve().await;
        let settings = EventGridSettings::from_vars(|name| {
            (name == "IMAGE_FACTORY_EVENT_GRID_ENDPOINT").then(|| endpoint.clone())
        })
        .expect("settings")
        .expect("an endpoint");
        let credential = Identity::Managed {
            client_id: Some(identity::CLIENT_ID.to_string()),
        }
        .credential()
        .expect("managed identity credential");
        let publisher = EventGridPublisher::new(&settings, credential).expect("publisher");
        let options = Options {
            tweak: Box::new(move |app| {
                let publishers: Vec<Arc<dyn Publisher>> = vec![Arc::new(publisher)];
                app.follow_ups = FollowUps::new(publishers, &app.settings.public_url);
            }),
            ..Options::default()
        };
        let factory = Factory::start_with(options).await;
        let run = factory
            .push_and_wait(COMMIT, RunStatus::WaitingForApproval)
            .await;
        let link = factory.approval_link(&run.id, "platform-lead");
        assert_eq!(factory.decide(&link, "approve").await.status(), 200);
        let released = factory.wait_status(&run.id, RunStatus::Released).await;
        let run = factory
            .wait_for(&released.id, std::time::Duration::from_secs(30), |r| {
                r.follow_ups
                    .first()
                    .and_then(|f| f.deliveries.first())
                    .is_some_and(|d| d.delivered_at.is_some() || d.last_error.is_some())
            })
            .await;
        let delivery = &run.follow_ups[0].deliveries[0];
        assert!(
            delivery.delivered_at.is_some(),
            "{delivery:?}; refused: {:?}",
            topic.refused.lock().unwrap()
        );
        assert_eq!(delivery.target, "event-grid 127.0.0.1");

        assert!(topic.refused.lock().unwrap().is_empty());
        let batches = topic.accepted.lock().unwrap().clone();
        assert_eq!(batches.len(), 1, "one batch per release");
        let events = batches[0].as_array().expect("a batch");
        assert_eq!(events.len(), 1);
        let event: cloudevents::Event =
            serde_json::from_value(events[0].clone()).expect("a CloudEvents 1.0 event");
        assert_eq!(event.ty(), "image-factory.image.released");
        assert_eq!(
            event.subject(),
            Some(format!("example/{}", run.version).as_str())
        );
        assert_eq!(event.id(), run.follow_ups[0].id);

        // The token came from the identity, for Event Grid.
        assert!(
            identity_endpoint
                .requests()
                .iter()
                .any(|r| r.resource == "https://eventgrid.azure.net"
                    && r.client_id.as_deref() == Some(identity::CLIENT_ID))
        );

        // The fake's checks are real: a CloudEvent without its required
        // `specversion`, and the wrong content type, are refused by the spec.
        let op_check = |body: &str, content_type: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(
                "authorization",
                format!(
                    "Bearer {}",
                    identity::token_for("https://eventgrid.azure.net")
                )
                .parse()
                .unwrap(),
            );
            headers.insert("content-type", content_type.parse().unwrap());
            let query = [("api-version".to_string(), "2018-01-01".to_string())].into();
            topic.check(&query, &headers, body.as_bytes())
        };
        let batch =
            r#"[{"id":"1","source":"s","type":"t","time":"not a time","specversion":"1.0"}]"#;
        let (status, why) =
            op_check(batch, image_factory::azure::eventgrid::CONTENT_TYPE).unwrap_err();
        assert_eq!(status, 400);
        assert!(why.contains("/0/time"), "{why}");
        let batch = r#"[{"id":"1","source":"s","type":"t"}]"#;
        let (_, why) = op_check(batch, image_factory::azure::eventgrid::CONTENT_TYPE).unwrap_err();
        assert!(why.contains("specversion"), "{why}");
        let batch = r#"[{"id":"1","source":"s","type":"t","specversion":"1.0"}]"#;
        assert!(op_check(batch, image_factory::azure::eventgrid::CONTENT_TYPE).is_ok());
        assert!(op_check(batch, "application/json").is_err());
        factory.stop().await;
    });
}
