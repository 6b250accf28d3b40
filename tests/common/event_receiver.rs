//! A release-event receiver on loopback: `tests/event-receiver/receiver.js`,
//! a node process that verifies every delivery with the Standard Webhooks
//! reference library (npm `standardwebhooks`, pinned by its lockfile) and
//! records what it accepted, what repeated an id, and what it refused.

use std::process::Stdio;

use image_factory::followups::FollowUps;
use image_factory::ports::events::Publisher;
use image_factory::web::webhooks::WebhookSettings;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running receiver; killed when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:<port>/events`.
    pub url: String,
    child: Child,
}

/// `options` for a factory that sends release events to `url`, signed with `secret`.
pub fn with_webhook(mut options: super::Options, url: &str, secret: &str) -> super::Options {
    let settings = WebhookSettings::from_vars(|name| match name {
        "IMAGE_FACTORY_EVENT_WEBHOOKS" => Some(url.to_string()),
        "IMAGE_FACTORY_EVENT_WEBHOOK_SECRET" => Some(secret.to_string()),
        _ => None,
    })
    .expect("webhook settings")
    .expect("a webhook");
    options.tweak = Box::new(move |app| {
        let publishers = settings
            .publishers()
            .expect("publishers")
            .into_iter()
            .map(|p| std::sync::Arc::new(p) as std::sync::Arc<dyn Publisher>)
            .collect();
        app.follow_ups = FollowUps::new(publishers, &app.settings.public_url);
    });
    options
}

/// A fresh `whsec_` secret.
pub fn secret() -> String {
    use base64::Engine;
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    )
}

impl Receiver {
    /// Starts a receiver verifying with `secret` on `port` (0: any).
    pub async fn start(secret: &str, port: u16) -> Receiver {
        let script = super::repo_root().join("tests/event-receiver/receiver.js");
        let mut child = Command::new("node")
            .arg(&script)
            .arg(secret)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the event receiver (node; scripts/setup.sh installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next_line()
            .await
            .expect("read the receiver")
            .expect("the receiver printed its port");
        let port = line
            .strip_prefix("listening ")
            .expect("`listening <port>`")
            .to_string();
        Receiver {
            url: format!("http://127.0.0.1:{port}/events"),
            child,
        }
    }

    /// What it recorded: `{verified, duplicates, refused}`.
    pub async fn deliveries(&self) -> Value {
        let base = self.url.trim_end_matches("/events");
        reqwest::get(format!("{base}/deliveries"))
            .await
            .expect("the receiver answers")
            .json()
            .await
            .expect("deliveries JSON")
    }

    /// Waits until it verified `count` deliveries; answers them.
    pub async fn wait_verified(&self, count: usize) -> Vec<Value> {
        for _ in 0..300 {
            let all = self.deliveries().await;
            let verified = all["verified"].as_array().cloned().unwrap_or_default();
            if verified.len() >= count {
                return verified;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "the receiver verified fewer than {count} deliveries: {}",
            self.deliveries().await
        );
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
