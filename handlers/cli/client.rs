//! The operator's client: how the commands talk to a running factory over
//! HTTP, as any other user of its API would (signed webhooks, the operator
//! token for out-of-band runs and decisions, the runs API).

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Settings;
use crate::domain::fleet::FleetPage;
use crate::domain::run::{Run, RunId};
use crate::startup::Secrets;

/// A client of one factory.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the factory at `url` (e.g. `http://localhost:7071`).
    pub fn new(url: &str) -> Client {
        Client {
            base: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<String> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("{what}: the factory answered {status}: {message}");
        }
        Ok(text)
    }

    /// POSTs `body` to `/api/runs[/{run}]` with the operator token.
    pub async fn operator_post(
        &self,
        run: Option<&RunId>,
        body: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let path = match run {
            Some(run) => format!("runs/{run}"),
            None => "runs".to_string(),
        };
        self.operator_post_to(&path, body).await
    }

    /// POSTs `body` to `/api/<path>` with the operator token (from
    /// `IMAGE_FACTORY_OPERATOR_TOKEN`, or the local secrets file).
    pub async fn operator_post_to(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let settings = Settings::from_env()?;
        let Some(token) = Secrets::from_env(&settings, true)?.operator else {
            bail!("no operator token: set IMAGE_FACTORY_OPERATOR_TOKEN");
        };
        self.send(
            self.http
                .post(format!("{}/api/{path}", self.base))
                .bearer_auth(token)
                .json(body),
            "the request was refused",
        )
        .await
    }

    /// Sends a GitHub push webhook of `commit` (with its `message`)
    /// changing `changed`, signed with the webhook secret.
    pub async fn push(
        &self,
        commit: &str,
        changed: &[String],
        branch: &str,
        message: Option<&str>,
    ) -> anyhow::Result<String> {
        let settings = Settings::from_env()?;
        let Some(secret) = Secrets::from_env(&settings, true)?.github else {
            bail!("no GitHub webhook secret: set IMAGE_FACTORY_GITHUB_SECRET");
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "ref": format!("refs/heads/{branch}"),
            "before": "0000000000000000000000000000000000000000",
            "after": commit,
            "deleted": false,
            "commits": [{ "id": commit, "added": [], "removed": [], "modified": changed }],
            "head_commit": {
                "id": commit, "message": message, "added": [], "removed": [], "modified": changed
            },
            "pusher": { "name": std::env::var("USER").unwrap_or_else(|_| "operator".into()) },
        }))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
        mac.update(&body);
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let request = self
            .http
            .post(format!("{}/api/hooks/github", self.base))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "push")
            .header(
                "X-GitHub-Delivery",
                format!("{:032x}", rand::random::<u128>()),
            )
            .header("X-Hub-Signature-256", format!("sha256={signature}"))
            .body(body);
        self.send(request, "the push was refused").await
    }

    /// One run.
    pub async fn run(&self, id: &RunId) -> anyhow::Result<Run> {
        let text = self
            .send(
                self.http.get(format!("{}/api/runs/{id}", self.base)),
                &format!("run {id}"),
            )
            .await?;
        serde_json::from_str(&text).context("the factory's answer is not a run")
    }

    /// A page of runs.
    pub async fn list(
        &self,
        image: Option<&str>,
        status: Option<&str>,
    ) -> anyhow::Result<Vec<Run>> {
        let mut query = Vec::new();
        if let Some(i) = image {
            query.push(("image", i));
        }
        if let Some(s) = status {
            query.push(("status", s));
        }
        let text = self
            .send(
                self.http
                    .get(format!("{}/api/runs", self.base))
                    .query(&query),
                "listing runs",
            )
            .await?;
        let page: serde_json::Value = serde_json::from_str(&text)?;
        serde_json::from_value(page["runs"].clone())
            .context("the factory's answer is not a list of runs")
    }

    /// The whole fleet view: every page of `GET /api/runs?view=fleet`, the
    /// images in one list (the headline of the last page read).
    pub async fn fleet(&self) -> anyhow::Result<FleetPage> {
        let mut continuation: Option<String> = None;
        let mut images = Vec::new();
        loop {
            let mut query = vec![("view", "fleet".to_string()), ("limit", "100".into())];
            if let Some(c) = continuation.take() {
                query.push(("continuation", c));
            }
            let text = self
                .send(
                    self.http
                        .get(format!("{}/api/runs", self.base))
                        .query(&query),
                    "the fleet view",
                )
                .await?;
            let page: FleetPage =
                serde_json::from_str(&text).context("the factory's answer is not a fleet view")?;
            images.extend(page.images);
            match page.continuation {
                Some(next) => continuation = Some(next),
                None => {
                    return Ok(FleetPage {
                        headline: page.headline,
                        images,
                        continuation: None,
                    });
                }
            }
        }
    }

    /// The build log from byte `offset`, the current attempt's or that of
    /// build attempt `attempt`: the text and the next offset.
    pub async fn log(
        &self,
        id: &RunId,
        offset: u64,
        attempt: Option<u32>,
    ) -> anyhow::Result<(String, u64)> {
        let mut url = format!("{}/api/runs/{id}?log={offset}", self.base);
        if let Some(n) = attempt {
            url.push_str(&format!("&attempt={n}"));
        }
        let response = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        // No current log yet is an empty one; no log of a given attempt is an error.
        if response.status() == 404 && attempt.is_none() {
            return Ok((String::new(), offset));
        }
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await?;
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("the build log of run {id}: the factory answered {status}: {message}");
        }
        let next = response
            .headers()
            .get("X-Log-Offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(offset);
        Ok((response.text().await?, next))
    }
}
