//! The release event: a CloudEvents 1.0 event in its JSON format, built from
//! a run and one of its follow-ups. Pure.
//!
//! The envelope is written here from the CloudEvents 1.0 specification and
//! its JSON event format (`specversion`, `id`, `source`, `type`, `subject`,
//! `time`, `datacontenttype`, `data`) rather than through the `cloudevents-sdk`
//! crate: the factory needs only the structured JSON form, it sends and never
//! receives events, and the crate's sending binding is for reqwest 0.12 (the
//! factory's client is reqwest 0.13). The tests parse
//! every delivered event with `cloudevents-sdk`, so the shape is checked by
//! the specification's own library.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::run::{
    Cancellation, EventType, Failure, FollowUp, FollowUpKind, ReleaseRecord, Rollback, Run,
    RunStatus,
};

/// A CloudEvents 1.0 event, structured JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// The follow-up's id: the same on every retry and every target.
    pub id: String,
    /// The factory: its public URL.
    pub source: String,
    /// `image-factory.image.released`, `image-factory.image.published` (a
    /// release below the latest), `image-factory.image.rolled-back`,
    /// `image-factory.run.failed`, `image-factory.run.cancelled`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `<image>/<version>`.
    pub subject: String,
    /// When the event happened (the run ended, the rollback was made).
    pub time: DateTime<Utc>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// What happened.
    pub data: EventData,
}

/// The event's `data`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    /// The image definition.
    pub image: String,
    /// The run's image version.
    pub version: String,
    /// The run.
    pub run_id: String,
    /// The run's status when the event was built.
    pub status: RunStatus,
    /// The commit built, when known.
    pub git_commit: Option<String>,
    /// The `image-version.json` document, for a released run.
    pub image_version: Option<ReleaseRecord>,
    /// Why the run failed, for a failed run.
    pub failure: Option<Failure>,
    /// The rollback, for `image-factory.image.rolled-back`: the version it
    /// made current (this run's), the one that was current, the versions
    /// it withdrew, who, how, why and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
    /// Who cancelled the run, when and why, and what was freed, for a
    /// cancelled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<Cancellation>,
    /// Where to look.
    pub links: Links,
}

/// Links to the run on the factory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Links {
    /// The run as JSON (`/api/runs/<id>`, function key).
    pub run: String,
    /// The run's dashboard page.
    pub dashboard: String,
}

/// The event a follow-up of `run` delivers, from the factory at `public_url`.
/// `None` when the follow-up is not an event.
pub fn cloud_event(run: &Run, follow_up: &FollowUp, public_url: &str) -> Option<CloudEvent> {
    let FollowUpKind::Event { event } = follow_up.kind;
    let base = public_url.trim_end_matches('/');
    Some(CloudEvent {
        specversion: "1.0".into(),
        id: follow_up.id.clone(),
        source: base.to_string(),
        event_type: event.name().into(),
        subject: format!("{}/{}", run.image, run.version),
        time: follow_up.created_at,
        datacontenttype: "application/json".into(),
        data: EventData {
            image: run.image.clone(),
            version: run.version.to_string(),
            run_id: run.id.to_string(),
            status: run.status,
            git_commit: run.trigger.commit.clone(),
            image_version: match event {
                EventType::Released | EventType::Published | EventType::RolledBack => {
                    run.release.clone()
                }
                EventType::Failed | EventType::Cancelled => None,
            },
            failure: match event {
                EventType::Failed => run.failure.clone(),
                EventType::Released
                | EventType::Published
                | EventType::RolledBack
                | EventType::Cancelled => None,
            },
            cancellation: match event {
                EventType::Cancelled => run.cancellation.clone(),
                EventType::Released
                | EventType::Published
                | EventType::RolledBack
                | EventType::Failed => None,
            },
            rollback: match event {
                EventType::RolledBack => run
                    .release
                    .iter()
                    .flat_map(|r| &r.rollbacks)
                    .find(|b| b.id == follow_up.id)
                    .cloned(),
                EventType::Released
                | EventType::Published
                | EventType::Failed
                | EventType::Cancelled => None,
            },
            links: Links {
                run: format!("{base}/api/runs/{}", run.id),
                dashboard: format!("{base}/api/dashboard/runs/{}", run.id),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::run::{Trigger, TriggerKind};

    #[test]
    fn a_released_run_makes_an_event_with_its_image_version_document() {
        let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let mut run = Run::new(
            "push-example-0123456789ab".parse().unwrap(),
            "example".into(),
            "2026.1130.0".parse().unwrap(),
            Trigger {
                commit: Some("0123456789ab".into()),
                ..Trigger::new(TriggerKind::Push, "github")
            },
            BTreeMap::new(),
            now,
        );
        run.status = RunStatus::Released;
        run.release = Some(ReleaseRecord {
            image_version: "2026.1130.0".into(),
            run_id: run.id.to_string(),
            ..ReleaseRecord::default()
        });
        run.owe(
            FollowUpKind::Event {
                event: EventType::Released,
            },
            now,
        );
        let event = cloud_event(&run, &run.follow_ups[0], "https://factory.example/").unwrap();
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "image-factory.image.released");
        assert_eq!(json["subject"], "example/2026.1130.0");
        assert_eq!(json["source"], "https://factory.example");
        assert_eq!(json["id"], run.follow_ups[0].id);
        assert_eq!(json["data"]["imageVersion"]["imageVersion"], "2026.1130.0");
        assert_eq!(json["data"]["gitCommit"], "0123456789ab");
        assert_eq!(
            json["data"]["links"]["dashboard"],
            "https://factory.example/api/dashboard/runs/push-example-0123456789ab"
        );
        assert!(json["data"]["failure"].is_null());
    }
}
