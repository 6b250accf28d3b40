//! `runs` (`GET /api/runs/{id?}`): one run's whole record, or a page of runs
//! newest first, filtered by `image` and `status`, paged with `continuation`.

use super::InvocationError;
use crate::app::App;
use crate::domain::run::RunStatus;
use crate::protocol::{HttpRequestData, HttpResponseData, InvocationRequest, InvocationResponse};
use crate::store::{RunQuery, StoreError};

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
        let http = match self.request.params.get("id").filter(|id| !id.is_empty()) {
            Some(id) => match app.store.get(id).await {
                Ok(stored) => HttpResponseData::json(200, &stored.value),
                Err(StoreError::NotFound { .. }) => {
                    HttpResponseData::error(404, &format!("there is no run {id}"))
                }
                Err(e @ StoreError::Corrupt { .. }) => HttpResponseData::error(500, &e.to_string()),
                Err(e) => return Err(super::retry("cannot read the run", e)),
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
                    Err(e) => return Err(super::retry("cannot list runs", e)),
                },
            },
        };
        Ok(InvocationResponse::http(http))
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
