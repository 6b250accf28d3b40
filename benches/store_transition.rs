//! What one stage transition costs in the Cosmos DB run store, against the
//! Cosmos DB API test server on loopback: the requests the store sends per
//! transition (counted by the server's launcher) and the time of one
//! transition through the adapter (`update_run`: point read, decide,
//! conditional replace) next to the raw SDK's point read plus conditional
//! replace of the same document, measured in the same run.
//!
//! `cargo bench --bench store_transition` (a plain main that prints a table).

#[allow(dead_code)] // the bench uses part of the test harness
#[path = "../tests/common/cosmos_server.rs"]
mod cosmos_server;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use chrono::Utc;
use cosmos_server::CosmosServer;
use image_factory::domain::machine::{Event, decide};
use image_factory::domain::run::{Execution, Run, Stage, StageOutput, Trigger, TriggerKind};
use image_factory::domain::version::ImageVersion;
use image_factory::ports::store::{RunStore, update_run};

const RUNS: usize = 100;

fn new_run(id: &str) -> Run {
    Run::new(
        id.parse().unwrap(),
        "web".into(),
        ImageVersion::new(2026, 1110, 0).expect("version"),
        Trigger {
            commit: Some("0123abc".into()),
            branch: Some("main".into()),
            ..Trigger::new(TriggerKind::Push, "github")
        },
        BTreeMap::new(),
        Utc::now(),
    )
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let server = CosmosServer::start();
    let store = server.fresh_store().await;
    for i in 0..RUNS {
        store
            .create(&new_run(&format!("run-{i}")))
            .await
            .expect("create");
    }

    // Two transitions per run: validate started, validate succeeded.
    let mut adapter = Vec::new();
    let before = server.requests().await;
    for i in 0..RUNS {
        let id: image_factory::domain::run::RunId = format!("run-{i}").parse().expect("a run id");
        let execution = Execution {
            message_id: format!("m-{i}"),
            delivery: 1,
        };
        let events = [
            Event::StageStarted {
                stage: Stage::Validate,
                execution: execution.clone(),
                at: Utc::now(),
            },
            Event::StageSucceeded {
                stage: Stage::Validate,
                execution,
                at: Utc::now(),
                output: StageOutput::Validated {
                    findings: vec![],
                    packer_version: None,
                },
            },
        ];
        for event in events {
            let started = Instant::now();
            let t = update_run(&store, &id, |run| decide(run, &event))
                .await
                .expect("transition");
            adapter.push(started.elapsed());
            assert!(t.changed);
        }
    }
    let requests = server.requests().await - before;
    let transitions = adapter.len() as f64;

    // The raw SDK on the same documents: point read + conditional replace.
    let container = store.container();
    let mut raw = Vec::new();
    for i in 0..RUNS {
        let id = format!("run-{i}");
        for _ in 0..2 {
            let started = Instant::now();
            let response = container
                .read_item(id.clone(), &id, None)
                .await
                .expect("read");
            let etag = response.headers().etag().cloned().expect("etag");
            let doc: serde_json::Value = response.into_model().expect("json");
            container
                .replace_item(
                    id.clone(),
                    &id,
                    &doc,
                    Some(
                        ItemWriteOptions::default().with_precondition(Precondition::if_match(etag)),
                    ),
                )
                .await
                .expect("replace");
            raw.push(started.elapsed());
        }
    }

    println!(
        "Cosmos DB run store, {} transitions on loopback",
        adapter.len()
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| requests per stage transition | {:.2} |",
        requests as f64 / transitions
    );
    println!(
        "| adapter transition (update_run), median / p90 | {} / {} |",
        ms(percentile(&mut adapter, 0.5)),
        ms(percentile(&mut adapter, 0.9))
    );
    println!(
        "| raw SDK read + conditional replace, median / p90 | {} / {} |",
        ms(percentile(&mut raw, 0.5)),
        ms(percentile(&mut raw, 0.9))
    );
}
