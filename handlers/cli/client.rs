//! The operator's client: how the commands talk to a running factory over
//! HTTP, as any other user of its API would (signed webhooks, the runs API,
//! the operators' actions).
//!
//! A deployed factory wants more than a local one, and the client sends
//! what the environment gives it on every request: the function key
//! (`IMAGE_FACTORY_FUNCTION_KEY`, as `x-functions-key`: the runs and
//! rollback functions are `authLevel: function`), and, when the factory is
//! behind App Service authentication, an Entra ID token for the factory's
//! app (`IMAGE_FACTORY_API_SCOPE`, e.g. `api://<client id>/.default`) from
//! the developer's own sign-in (`az login`; a managed identity where the
//! client runs on one), as `Authorization: Bearer`. Without a scope,
//! operator actions carry the operator token instead. Neither key nor token
//! is ever printed: errors name the setting, never its value.

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::OnceCell;

use crate::azure::identity::Identity;
use crate::config::Settings;
use crate::domain::evidence::EvidenceRecord;
use crate::domain::fleet::FleetPage;
use crate::domain::run::{Run, RunId};
use crate::startup::Secrets;

/// The function key setting.
pub const FUNCTION_KEY: &str = "IMAGE_FACTORY_FUNCTION_KEY";
/// The setting naming the scope of the factory's app registration.
pub const API_SCOPE: &str = "IMAGE_FACTORY_API_SCOPE";

/// How the client proves itself to a deployed factory.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Sent as `x-functions-key`.
    pub function_key: Option<String>,
    /// The scope an Entra ID token is asked for.
    pub scope: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "function_key",
                &self.function_key.as_ref().map(|_| "<redacted>"),
            )
            .field("scope", &self.scope)
            .finish()
    }
}

impl Credentials {
    /// Reads [`FUNCTION_KEY`] and [`API_SCOPE`] through `var` (empty: unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Credentials {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Credentials {
            function_key: set(FUNCTION_KEY),
            scope: set(API_SCOPE),
        }
    }
}

/// A client of one factory.
pub struct Client {
    base: String,
    http: reqwest::Client,
    credentials: Credentials,
    /// The Entra ID token, asked for once.
    token: OnceCell<String>,
}

impl Client {
    /// A client of the factory at `url` (e.g. `http://localhost:7071`), with
    /// the credentials of the environment.
    pub fn new(url: &str) -> Client {
        Client::with_credentials(url, Credentials::from_vars(|name| std::env::var(name).ok()))
    }

    /// A client of the factory at `url` with `credentials`.
    pub fn with_credentials(url: &str, credentials: Credentials) -> Client {
        Client {
            base: url.trim_end_matches('/').to_string(),
            // A factory behind sign-in redirects a request without a token
            // to the sign-in page: that is an answer to report, not to follow.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            credentials,
            token: OnceCell::new(),
        }
    }

    /// The Entra ID token for the factory's app, asked for once.
    async fn entra_token(&self, scope: &str) -> anyhow::Result<&str> {
        let token = self
            .token
            .get_or_try_init(|| async {
                let credential = Identity::from_vars(|name| std::env::var(name).ok())
                    .credential()
                    .map_err(anyhow::Error::msg)?;
                let token = credential.get_token(&[scope], None).await.with_context(|| {
                    format!("cannot get an Entra ID token for {scope} ({API_SCOPE}); sign in with `az login`")
                })?;
                Ok::<_, anyhow::Error>(token.token.secret().to_string())
            })
            .await?;
        Ok(token.as_str())
    }

    /// `request` with the credentials every request carries: the function
    /// key, and the Entra ID token when a scope is set.
    async fn authorised(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        if let Some(key) = &self.credentials.function_key {
            request = request.header("x-functions-key", key);
        }
        if let Some(scope) = &self.credentials.scope {
            request = request.bearer_auth(self.entra_token(scope).await?);
        }
        Ok(request)
    }

    /// Refuses an answer that sends the client to sign in (a redirect, which
    /// App Service authentication answers a request without a token with).
    fn not_signed_in(&self, response: &reqwest::Response) -> anyhow::Result<()> {
        if !response.status().is_redirection() {
            return Ok(());
        }
        let what_to_do = if self.credentials.scope.is_some() {
            "the Entra ID token was not accepted: check IMAGE_FACTORY_API_SCOPE (api://<the app's client id>/.default) and your sign-in (`az login`)"
        } else {
            "set IMAGE_FACTORY_API_SCOPE (api://<the app's client id>/.default) and sign in with `az login` (docs/sign-in.md)"
        };
        bail!(
            "{} sent the request to sign in (HTTP {}): it is behind App Service authentication; {what_to_do}",
            self.base,
            response.status().as_u16()
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<String> {
        let response = self
            .authorised(request)
            .await?
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        self.not_signed_in(&response)?;
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

    /// POSTs `body` to `/api/runs[/{run}]` as an operator.
    pub async fn operator_post(
        &self,
        run: Option<&RunId>,
        body: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let path = match run {
            Some(run) => format!("/api/runs/{run}"),
            None => "/api/runs".to_string(),
        };
        self.operator(&path, body).await
    }

    /// POSTs `body` to the operators' action at `path`: with the operator
    /// token, unless an Entra ID token speaks for the operator (a scope is
    /// set: the factory is behind sign-in).
    pub async fn operator(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<String> {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(body);
        if self.credentials.scope.is_none() {
            let settings = Settings::from_env()?;
            let Some(token) = Secrets::from_env(&settings, true)?.operator else {
                bail!(
                    "no operator token: set IMAGE_FACTORY_OPERATOR_TOKEN (or {API_SCOPE} for a factory behind sign-in)"
                );
            };
            request = request.bearer_auth(token);
        }
        self.send(request, "the request was refused").await
    }

    /// Asks the factory to roll `image` back to `to`, for `reason`, as
    /// `actor` (recorded when no sign-in speaks for the operator).
    pub async fn rollback(
        &self,
        image: &str,
        to: &str,
        reason: &str,
        actor: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let path = format!("/api/images/{}/rollback", crate::pages::url_encode(image));
        let body = serde_json::json!({ "to": to, "reason": reason, "actor": actor });
        let text = self.operator(&path, &body).await?;
        serde_json::from_str(&text).context("the factory's answer is not a rollback")
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

    /// The patch evidence run `id`'s build collected, as the run records it.
    pub async fn evidence(&self, id: &RunId) -> anyhow::Result<EvidenceRecord> {
        let text = self
            .send(
                self.http
                    .get(format!("{}/api/runs/{id}", self.base))
                    .query(&[("evidence", "")]),
                &format!("the evidence of run {id}"),
            )
            .await?;
        serde_json::from_str(&text).context("the factory's answer is not an evidence record")
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
    /// build attempt `attempt`: its bytes (a piece may end inside a line or
    /// a character) and the next offset.
    pub async fn log(
        &self,
        id: &RunId,
        offset: u64,
        attempt: Option<u32>,
    ) -> anyhow::Result<(Vec<u8>, u64)> {
        let mut url = format!("{}/api/runs/{id}?log={offset}", self.base);
        if let Some(n) = attempt {
            url.push_str(&format!("&attempt={n}"));
        }
        let response = self
            .authorised(self.http.get(url))
            .await?
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        self.not_signed_in(&response)?;
        // No current log yet is an empty one; no log of a given attempt is an error.
        if response.status() == 404 && attempt.is_none() {
            return Ok((Vec::new(), offset));
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
        Ok((response.bytes().await?.to_vec(), next))
    }
}
