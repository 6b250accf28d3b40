//! `runs` (`GET|POST /api/runs/{id?}`): GET gives one run's whole record, or a
//! page of runs newest first, filtered by `image` and `status`, paged with
//! `continuation`. POST starts an out-of-band run (an urgent security fix, a
//! rebuild on demand): `{"image", "reason", "force", "actor"}`; the reason
//! and the actor are recorded on the run, and the answer says the run's
//! `status` and, for a run build avoidance skipped, why (`skipped`). POST to `/api/runs/{id}` records
//! an approver's decision for an operator (`image-factory approve`). Both
//! POSTs are operator actions and GET a read, authorised as [`super::caller`]
//! says (the operator token, or with sign-in the operator app role). With
//! `{"action": "cancel", "reason"}`, POST to `/api/runs/{id}` cancels the
//! run (`image-factory runs cancel`): it stops at once and what it started
//! is freed.
//! GET `/api/runs/{id}?log=<offset>[&attempt=<n>]` gives a piece of the run's
//! build log: the current attempt's, or an earlier one's. GET
//! `/api/runs/{id}?evidence` gives the patch evidence the run's build
//! collected, as the run records it (its SHA-256, where the file is kept,
//! what it says; `image-factory patch status --image`). GET
//! `/api/runs?view=fleet[&limit=<n>][&continuation=<token>]` gives a page of
//! the fleet view (`image-factory fleet`).

use super::caller::{Operator, Refused, operator, reader};
use super::invocation::{InvocationError, retry};
use serde::Deserialize;

use crate::app::{App, dispatch, dispatch_follow_up};
use crate::domain::approval::{Decision, Verdict};
use crate::domain::controls::{Lines, escape_option};
use crate::domain::machine::{Event, TransitionError, decide};
use crate::domain::run::{RunId, RunStatus, Trigger, TriggerKind};
use crate::ports::store::{RunQuery, StoreError, UpdateError, update_run};
use crate::protocol::{HttpRequestData, HttpResponseData, InvocationRequest, InvocationResponse};

/// Longest reason kept.
const MAX_REASON: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    image: String,
    reason: String,
    #[serde(default)]
    force: bool,
    /// Who asks, as an operator-token holder names themselves (with
    /// sign-in, the principal is recorded instead).
    #[serde(default)]
    actor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Always `cancel`.
    action: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: String,
    #[serde(rename = "as")]
    approver: String,
    #[serde(default)]
    comment: String,
}

/// Largest piece of a log one request returns.
const LOG_CHUNK: u64 = 64 * 1024;

/// The build log of run `id` from byte `offset`, with the next offset in
/// `X-Log-Offset`: the current build attempt's, or that of `attempt` (a
/// number within the build's recorded attempts). Only a run the store holds
/// has a log: its folder is found from its parsed id, never from the text of
/// the request.
async fn log_chunk(
    app: &App,
    id: &RunId,
    offset: &str,
    attempt: Option<&String>,
) -> Result<HttpResponseData, InvocationError> {
    use crate::build_log;
    use crate::domain::run::Stage;
    let Ok(offset) = offset.parse::<u64>() else {
        return Ok(HttpResponseData::error(400, "log must be a byte offset"));
    };
    let attempts = match app.store.get(id).await {
        Ok(stored) => stored.value.stage(Stage::Build).attempts.len(),
        Err(StoreError::NotFound { .. }) => {
            return Ok(HttpResponseData::error(
                404,
                &format!("there is no run {id}"),
            ));
        }
        Err(e @ StoreError::Corrupt { .. }) => {
            return Ok(HttpResponseData::error(500, &e.to_string()));
        }
        Err(e) => return Err(retry("cannot read the run", e)),
    };
    let run_dir = app.settings.run_dir(id);
    let path = match attempt {
        None => run_dir.join(build_log::CURRENT),
        Some(text) => match build_log::parse_attempt(text, attempts) {
            Ok(n) => build_log::path_of(&run_dir, n, attempts),
            Err(message) => return Ok(HttpResponseData::error(400, &message)),
        },
    };
    Ok(read_log(id, &path, offset, attempt).await)
}

/// Up to [`LOG_CHUNK`] bytes of the log at `path` of run `id`, from `offset`;
/// an offset past the log's end is answered 416 with the log's length.
async fn read_log(
    id: &RunId,
    path: &std::path::Path,
    offset: u64,
    attempt: Option<&String>,
) -> HttpResponseData {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        let which = attempt.map_or(String::new(), |n| format!(" of attempt {n}"));
        return HttpResponseData::error(404, &format!("run {id} has no build log{which} (yet)"));
    };
    let length = match file.metadata().await {
        Ok(meta) => meta.len(),
        Err(e) => return HttpResponseData::error(500, &format!("cannot read the log: {e}")),
    };
    if offset > length {
        // RFC 9110 §15.5.17: the range cannot be satisfied; say the length.
        let mut http = HttpResponseData::error(
            416,
            &format!(
                "log offset {offset} is past the end of the log ({length} bytes); read from an offset the previous answer's X-Log-Offset gave, or from 0"
            ),
        );
        http.headers
            .insert("Content-Range".into(), format!("bytes */{length}"));
        return http;
    }
    let mut bytes = Vec::new();
    let read = async {
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        (&mut file).take(LOG_CHUNK).read_to_end(&mut bytes).await
    };
    if let Err(e) = read.await {
        return HttpResponseData::error(500, &format!("cannot read the log: {e}"));
    }
    // Stop at the last whole line so a line is never split across requests.
    let end = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None if (bytes.len() as u64) < LOG_CHUNK => 0,
        None => bytes.len(),
    };
    bytes.truncate(end);
    let next = offset + bytes.len() as u64;
    let mut http = HttpResponseData::text(200, String::from_utf8_lossy(&bytes).into_owned());
    http.headers.insert("X-Log-Offset".into(), next.to_string());
    http
}

/// The patch evidence record of run `id` (read-only): 404 when there is no
/// such run, or its build collected no evidence (saying why).
async fn evidence(app: &App, id: &RunId) -> Result<HttpResponseData, InvocationError> {
    let run = match app.store.get(id).await {
        Ok(stored) => stored.value,
        Err(StoreError::NotFound { .. }) => {
            return Ok(HttpResponseData::error(
                404,
                &format!("there is no run {id}"),
            ));
        }
        Err(e @ StoreError::Corrupt { .. }) => {
            return Ok(HttpResponseData::error(500, &e.to_string()));
        }
        Err(e) => return Err(retry("cannot read the run", e)),
    };
    Ok(
        match run.build.as_ref().and_then(|b| b.evidence.as_deref()) {
            Some(record) if record.evidence().is_some() => HttpResponseData::json(200, record),
            Some(record) => HttpResponseData::error(
                404,
                &format!(
                    "run {id} has no patch evidence: {}",
                    record.why_none().unwrap_or_default()
                ),
            ),
            None => HttpResponseData::error(
                404,
                &format!(
                    "run {id} has no patch evidence: its build did not collect any (its template declares no evidence_path, or it was not built)"
                ),
            ),
        },
    )
}

fn error(status: u16, message: &str) -> InvocationResponse {
    InvocationResponse::http(HttpResponseData::error(status, message))
}

fn refused(refusal: Refused) -> InvocationResponse {
    error(refusal.status, &refusal.message)
}

/// An operator's optional reason, trimmed, with control characters shown
/// escaped; refused (400) when longer than [`MAX_REASON`] characters.
pub(super) fn reason_of(reason: Option<String>) -> Result<Option<String>, InvocationResponse> {
    let reason = reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON)
    {
        return Err(error(
            400,
            &format!("a reason has at most {MAX_REASON} characters"),
        ));
    }
    Ok(escape_option(reason, Lines::Keep))
}

/// Default and largest page size.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// A runs API invocation.
#[derive(Debug)]
pub struct Runs {
    request: HttpRequestData,
}

impl Runs {
    /// Decodes the HTTP request.
    pub fn parse(request: &InvocationRequest) -> Result<Runs, InvocationError> {
        Ok(Runs {
            request: request.http_request()?,
        })
    }

    /// Answers with JSON.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        if self.request.method.eq_ignore_ascii_case("POST") {
            return self.trigger(app).await;
        }
        if let Err(refusal) = reader(app, &self.request) {
            return Ok(refused(refusal));
        }
        let id = match self.run_id() {
            Ok(id) => id,
            Err(response) => return Ok(response),
        };
        if let (Some(id), Some(offset)) = (&id, self.request.query.get("log")) {
            let attempt = self.request.query.get("attempt");
            return Ok(InvocationResponse::http(
                log_chunk(app, id, offset, attempt).await?,
            ));
        }
        if let (Some(id), true) = (&id, self.request.query.contains_key("evidence")) {
            return Ok(InvocationResponse::http(evidence(app, id).await?));
        }
        if id.is_none() && self.request.query.contains_key("view") {
            return Ok(InvocationResponse::http(self.view(app).await?));
        }
        let http = match id {
            Some(id) => match app.store.get(&id).await {
                Ok(stored) => HttpResponseData::json(200, &stored.value),
                Err(StoreError::NotFound { .. }) => {
                    HttpResponseData::error(404, &format!("there is no run {id}"))
                }
                Err(e @ StoreError::Corrupt { .. }) => HttpResponseData::error(500, &e.to_string()),
                Err(e) => return Err(retry("cannot read the run", e)),
            },
            None => match self.query() {
                Err(message) => HttpResponseData::error(400, &message),
                Ok(query) => match app.store.list(&query).await {
                    Ok(page) => HttpResponseData::json(
                        200,
                        &serde_json::json!({ "runs": page.runs, "continuation": page.continuation }),
                    ),
                    Err(e @ StoreError::BadContinuation) => {
                        HttpResponseData::error(400, &e.to_string())
                    }
                    Err(e) => return Err(retry("cannot list runs", e)),
                },
            },
        };
        Ok(InvocationResponse::http(http))
    }

    async fn trigger(&self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let operator = match operator(app, &self.request) {
            Ok(operator) => operator,
            Err(refusal) => return Ok(refused(refusal)),
        };
        match self.run_id() {
            Ok(Some(id)) => {
                let body: serde_json::Value =
                    serde_json::from_str(&self.request.body_text()).unwrap_or_default();
                return if body.get("action").is_some() {
                    self.cancel(app, &id, &operator).await
                } else {
                    self.decide(app, &id, &operator).await
                };
            }
            Ok(None) => {}
            Err(response) => return Ok(response),
        }
        let body: TriggerBody = match serde_json::from_str(&self.request.body_text()) {
            Ok(body) => body,
            Err(e) => {
                return Ok(error(
                    400,
                    &format!(
                        "the body must be {{\"image\", \"reason\", \"force\", \"actor\"}}: {e}"
                    ),
                ));
            }
        };
        let reason = body.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Ok(error(
                400,
                &format!("give a reason of 1-{MAX_REASON} characters: it is recorded on the run"),
            ));
        }
        let actor = operator.actor.clone().or_else(|| {
            body.actor
                .as_deref()
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| a.chars().take(crate::domain::rollback::MAX_ACTOR).collect())
        });
        let trigger = Trigger {
            actor,
            reason: Some(reason.to_string()),
            force: body.force,
            ..Trigger::new(TriggerKind::OutOfBand, "operator")
        };
        let id = format!("oob-{}-{}", body.image, crate::ports::clock::new_id());
        let source = match app.head_snapshot(None).await {
            Ok(source) => source,
            Err(e) => {
                let status = if e.is_transient() { 503 } else { 422 };
                return Ok(error(status, &e.to_string()));
            }
        };
        let created = match app.create_run(id, &body.image, trigger, &source).await {
            Ok(created) => created,
            Err(e) => return Ok(error(e.http_status(), &e.to_string())),
        };
        let run = created.run();
        tracing::info!(run_id = %run.id, image = %run.image, "out-of-band run started");
        let mut response = InvocationResponse::http(HttpResponseData::json(
            202,
            &serde_json::json!({
                "runId": run.id,
                "image": run.image,
                "version": run.version,
                "status": run.status,
                "skipped": run.skipped,
            }),
        ));
        dispatch_follow_up(&mut response, run);
        Ok(response)
    }

    /// An operator records an approver's decision (`image-factory approve`),
    /// with the same checks as a link: a listed approver, one decision each,
    /// before the deadline, on a run that waits.
    async fn decide(
        &self,
        app: &App,
        id: &RunId,
        operator: &Operator,
    ) -> Result<InvocationResponse, InvocationError> {
        let body: DecisionBody = match serde_json::from_str(&self.request.body_text()) {
            Ok(body) => body,
            Err(e) => {
                return Ok(error(
                    400,
                    &format!("the body must be {{\"decision\", \"as\", \"comment\"}}: {e}"),
                ));
            }
        };
        let Some(verdict) = Verdict::from_name(&body.decision) else {
            return Ok(error(400, "decision must be approve or reject"));
        };
        let comment = body.comment.trim();
        let decision = Decision {
            approver: body.approver.clone(),
            verdict,
            at: app.now(),
            comment: (!comment.is_empty()).then(|| comment.chars().take(MAX_REASON * 4).collect()),
            via: "cli".into(),
            token_id: None,
            recorded_by: operator.actor.clone(),
        };
        let event = Event::ApprovalDecided(decision);
        match update_run(app.store.as_ref(), id, |run| decide(run, &event)).await {
            Ok(t) => {
                tracing::info!(run_id = %id, verdict = verdict.name(), "decision recorded by an operator");
                let mut response = InvocationResponse::http(HttpResponseData::json(
                    200,
                    &serde_json::json!({ "runId": id, "status": t.run.status, "decisions": t.run.decisions }),
                ));
                dispatch(&mut response, id, &t.commands);
                Ok(response)
            }
            Err(UpdateError::Store(StoreError::NotFound { .. })) => {
                Ok(error(404, &format!("there is no run {id}")))
            }
            Err(UpdateError::Refused(e)) => {
                let status = match e {
                    TransitionError::ApprovalExpired { .. } => 410,
                    TransitionError::NotAnApprover { .. } => 403,
                    _ => 409,
                };
                Ok(error(status, &e.to_string()))
            }
            Err(e) => Err(retry("cannot record the decision", e)),
        }
    }

    /// An operator cancels run `id`: it stops at once (`cancelling`, recorded
    /// before anything is touched), then what it started is freed and it
    /// ends `cancelled` (200). When something could not be freed yet, the
    /// answer is 202 and the sweeper finishes the freeing. A run that
    /// ended, or whose release started, is not cancelled (409); cancelling a
    /// cancelled run again changes nothing.
    async fn cancel(
        &self,
        app: &App,
        id: &RunId,
        operator: &Operator,
    ) -> Result<InvocationResponse, InvocationError> {
        let body = match serde_json::from_str::<CancelBody>(&self.request.body_text()) {
            Ok(body) if body.action == "cancel" => body,
            Ok(body) => {
                return Ok(error(
                    400,
                    &format!(
                        "unknown action `{}`: the only action on a run is `cancel`",
                        body.action.chars().take(40).collect::<String>()
                    ),
                ));
            }
            Err(e) => {
                return Ok(error(
                    400,
                    &format!("the body must be {{\"action\": \"cancel\", \"reason\"}}: {e}"),
                ));
            }
        };
        let reason = match reason_of(body.reason) {
            Ok(reason) => reason,
            Err(response) => return Ok(response),
        };
        let event = Event::Cancel {
            at: app.now(),
            by: operator.recorded_as(),
            reason,
        };
        match update_run(app.store.as_ref(), id, |run| decide(run, &event)).await {
            Ok(t) => {
                if t.changed {
                    tracing::info!(run_id = %id, by = %operator.recorded_as(), "run cancelled; freeing what it started");
                }
            }
            Err(UpdateError::Store(StoreError::NotFound { .. })) => {
                return Ok(error(404, &format!("there is no run {id}")));
            }
            Err(UpdateError::Refused(e)) => return Ok(error(409, &e.to_string())),
            Err(e) => return Err(retry("cannot record the cancel", e)),
        }
        let run = match app.finish_cancel(id).await {
            Ok(t) => t.run,
            Err(e) => {
                // The cancel is recorded: the sweeper frees what is left.
                tracing::warn!(run_id = %id, error = %e, "the cancelled run's freeing was not recorded; the sweeper finishes it");
                match app.store.get(id).await {
                    Ok(stored) => stored.value,
                    Err(e) => return Err(retry("cannot read the cancelled run", e)),
                }
            }
        };
        let status = if run.status == RunStatus::Cancelled {
            200
        } else {
            202
        };
        Ok(InvocationResponse::http(HttpResponseData::json(
            status,
            &serde_json::json!({
                "runId": id,
                "status": run.status,
                "cancellation": run.cancellation,
            }),
        )))
    }

    /// `?view=fleet`: a page of the fleet view, paged by `limit` and
    /// `continuation` (no other parameter applies to it).
    async fn view(&self, app: &App) -> Result<HttpResponseData, InvocationError> {
        use super::fleet::{DEFAULT_PAGE, FleetError, MAX_PAGE, fleet_page};
        let q = &self.request.query;
        if q.get("view").map(String::as_str) != Some("fleet") {
            return Ok(HttpResponseData::error(400, "the only view is `fleet`"));
        }
        if let Some(other) = q
            .keys()
            .find(|k| !["view", "limit", "continuation"].contains(&k.as_str()))
        {
            return Ok(HttpResponseData::error(
                400,
                &format!("view=fleet takes only limit and continuation, not `{other}`"),
            ));
        }
        let limit = match q.get("limit") {
            None => DEFAULT_PAGE,
            Some(l) => match l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_PAGE).contains(l))
            {
                Some(l) => l,
                None => {
                    return Ok(HttpResponseData::error(
                        400,
                        &format!("limit must be a number from 1 to {MAX_PAGE}"),
                    ));
                }
            },
        };
        let continuation = q.get("continuation").filter(|c| !c.is_empty());
        match fleet_page(app, continuation.map(String::as_str), limit).await {
            Ok(page) => Ok(HttpResponseData::json(200, &page)),
            Err(e @ FleetError::BadContinuation) => {
                Ok(HttpResponseData::error(400, &e.to_string()))
            }
            Err(e) => Err(retry("cannot read the fleet", e)),
        }
    }

    /// The run id of the route, parsed: `None` when the route names none,
    /// a 400 answer when it names something that is not a run id.
    fn run_id(&self) -> Result<Option<RunId>, InvocationResponse> {
        match self.request.params.get("id").filter(|id| !id.is_empty()) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|e: crate::domain::run::RunIdError| error(400, &e.to_string())),
        }
    }

    fn query(&self) -> Result<RunQuery, String> {
        let q = &self.request.query;
        let mut query = RunQuery {
            image: q.get("image").filter(|i| !i.is_empty()).cloned(),
            limit: DEFAULT_LIMIT,
            continuation: q.get("continuation").filter(|c| !c.is_empty()).cloned(),
            ..RunQuery::default()
        };
        if let Some(status) = q.get("status").filter(|s| !s.is_empty()) {
            for name in status.split(',') {
                let status = RunStatus::from_name(name.trim())
                    .ok_or_else(|| format!("unknown status `{name}`"))?;
                query.statuses.push(status);
            }
        }
        if let Some(limit) = q.get("limit") {
            query.limit = limit
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| format!("limit must be a number from 1 to {MAX_LIMIT}"))?;
        }
        Ok(query)
    }
}
