//! The reward ledger: ranks, rewards and records every task, append-only and exactly once.
//!
//! Inputs (durable pull consumers, shared by every replica): created tasks, assignments and
//! evaluation results. When every assigned miner of a task has been evaluated, or its
//! deadline and grace have passed (a sweep finds those), the task is finalized: scored by
//! the pure function in `gradients-scoring`, written as one transaction (result, entries,
//! their events), published through the outbox. Queries are served over the NATS micro
//! service `gradients-ledger`. The ledger tables refuse UPDATE and DELETE in the database.

mod api;
mod assignment_check;
mod batch;
pub mod client;
mod convert;
mod error;
mod evaluation_check;
mod finalize;
mod readiness;
mod record;
pub mod standings;
mod weights;

use std::sync::Arc;
use std::time::Duration;

use gradients_bus::lifecycle::Lifecycle;
use gradients_bus::subjects::{consumers, streams, ASSIGNMENTS_ALL, EVALUATIONS_ALL, TASK_CREATED};
use gradients_bus::worker::ConsumerSpec;
use gradients_bus::Bus;
use gradients_config::Settings;
use gradients_proto::v1::Timestamp;
use gradients_store::entity::ledger::{task, task_result};
use gradients_store::outbox::Relay;
use gradients_store::sea_orm::sea_query::{Expr, ExprTrait, Query};
use gradients_store::sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use gradients_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use batch::Batched;
pub use error::{LedgerError, QueryError};
pub use finalize::{
    entry_id, miner_result, Finalized, Finalizer, BECAUSE_ALL_EVALUATED, BECAUSE_DEADLINE, UNDECODABLE_EVIDENCE,
};

/// The service's name in metrics, logs and the NATS connection.
pub const SERVICE_NAME: &str = "ledger";
/// Version reported by `$SRV.INFO`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the query handlers need.
pub(crate) struct Context {
    pub settings: Settings,
    pub bus: Bus,
    pub db: DatabaseConnection,
    pub metrics: Metrics,
}

/// Batch workers per input. Each handles its batch as a chain of round trips (record,
/// commit, readiness, finalize, commit); a second worker keeps the database and the consumer
/// busy during the first one's waits. Exactly once does not rest on it: replicas already
/// run several workers on each consumer.
const WORKERS_PER_INPUT: usize = 2;

/// Runs the ledger until `shutdown` is cancelled, then drains.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), LedgerError> {
    let evaluator_key = evaluation_check::evaluator_key(&settings)?;
    let dispatch_key = assignment_check::dispatch_key(&settings)?;
    let lifecycle = Lifecycle::new(SERVICE_NAME, &settings.nats).health_on(&settings.ledger.http_addr);
    // The database and NATS are independent: reach both at once (each is a few round trips).
    let (started, db) = tokio::join!(
        lifecycle.start::<LedgerError>(&shutdown),
        gradients_store::connect(&settings.store, gradients_store::Schema::Ledger)
    );
    let Some(mut running) = started? else { return Ok(()) };
    let db = db?;
    let (bus, metrics) = (running.bus.clone(), running.metrics.clone());
    let relay = Relay::new(db.clone(), bus.clone(), metrics.clone());
    let finalizer = Arc::new(Finalizer {
        db: db.clone(),
        settings: settings.ledger.clone(),
        models: settings.models.clone(),
        outbox: relay.clone(),
        metrics: metrics.clone(),
        evidence: Some(standings::EvidenceReader::new(bus.clone())),
    });

    let poll = settings.ledger.outbox_poll();
    running.spawn_until_stopped(|stop| async move { relay.run(poll, stop).await });
    let input = |stream, durable, subject: &str| ConsumerSpec { stream, durable, filter_subject: subject.to_owned() };
    // Several workers per input, on the same durable consumer (as replicas share it): while
    // one finalizes what its batch completed, another fetches and records the next batch.
    for _ in 0..WORKERS_PER_INPUT {
        running.spawn_batch_worker(
            input(streams::TASKS, consumers::LEDGER_TASKS, TASK_CREATED),
            Batched::<batch::Tasks, _>::new(finalizer.clone(), batch::Unscreened),
        );
        running.spawn_batch_worker(
            input(streams::ASSIGNMENTS, consumers::LEDGER_ASSIGNMENTS, ASSIGNMENTS_ALL),
            Batched::<batch::Assignments, _>::new(
                finalizer.clone(),
                assignment_check::VerifiedAssignments {
                    recorder: record::AssignmentRecorder(finalizer.clone()),
                    dispatch_key: dispatch_key.clone(),
                    metrics: metrics.clone(),
                },
            ),
        );
        running.spawn_batch_worker(
            input(streams::EVALUATIONS, consumers::LEDGER_EVALUATIONS, EVALUATIONS_ALL),
            Batched::<batch::Evaluations, _>::new(
                finalizer.clone(),
                evaluation_check::VerifiedEvaluations {
                    recorder: record::EvaluationRecorder(finalizer.clone()),
                    evaluator_key: evaluator_key.clone(),
                    metrics: metrics.clone(),
                },
            ),
        );
    }
    {
        let (finalizer, interval) = (finalizer.clone(), settings.ledger.sweep_interval());
        running.spawn_until_stopped(|stop| sweep_deadlines(finalizer, interval, stop));
    }
    {
        let (db, bus, settings) = (db.clone(), bus.clone(), settings.ledger.clone());
        running.spawn_until_stopped(|stop| weights::publish_periodically(db, bus, settings, stop));
    }
    {
        let ctx = Arc::new(Context { settings: settings.clone(), bus, db, metrics });
        let stop = running.stop_token();
        running.spawn(async move { Ok(api::serve(ctx, stop).await?) });
    }
    running.ready();
    tracing::info!(service = gradients_bus::subjects::api::LEDGER_SERVICE, version = VERSION, "ledger ready");
    running.run().await
}

/// Finalizes tasks whose deadline and grace have passed, every `interval`, until `stop`.
async fn sweep_deadlines(finalizer: Arc<Finalizer>, interval: Duration, stop: CancellationToken) {
    loop {
        if let Err(e) = sweep_once(&finalizer, Timestamp::now().unix_ms).await {
            tracing::warn!(error = %e, "deadline sweep failed; will retry");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// How many overdue tasks one sweep query returns; the sweep pages until none is left.
const SWEEP_PAGE: u64 = 500;

/// One sweep at `now_ms`; returns how many tasks it finalized.
///
/// The query is an anti-join (tasks past deadline and grace with no result yet), ordered by
/// deadline and paged, over the deadline index: its cost and its parameter list do not grow
/// with the history of finalized tasks. A task that fails to finalize is logged and passed
/// over (it is retried on the next tick), so it cannot hold up the tasks behind it.
pub async fn sweep_once(finalizer: &Finalizer, now_ms: i64) -> Result<usize, DbErr> {
    let cutoff = now_ms.saturating_sub(finalizer.settings.evaluation_grace_ms as i64);
    let mut finalized = 0;
    // Resumes after the last (deadline, id) seen, so a task passed over is not read again.
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = overdue_unfinalized(&finalizer.db, cutoff, after.as_ref()).await?;
        let Some(last) = page.last().cloned() else { break };
        for (_, task_id) in &page {
            match finalizer.try_finalize(task_id, now_ms).await {
                Ok(Finalized::Now(_)) => finalized += 1,
                Ok(_) => {}
                Err(e) => tracing::warn!(task_id, error = %e, "deadline finalization failed; retried next sweep"),
            }
        }
        if (page.len() as u64) < SWEEP_PAGE {
            break;
        }
        after = Some(last);
    }
    Ok(finalized)
}

/// Up to [`SWEEP_PAGE`] tasks with `deadline_ms <= cutoff` and no result, after `after`
/// in (deadline, id) order.
async fn overdue_unfinalized(
    db: &DatabaseConnection,
    cutoff: i64,
    after: Option<&(i64, String)>,
) -> Result<Vec<(i64, String)>, DbErr> {
    let has_result = Query::select()
        .expr(Expr::val(1))
        .from(task_result::Entity)
        .and_where(
            Expr::col((task_result::Entity, task_result::Column::TaskId)).equals((task::Entity, task::Column::TaskId)),
        )
        .to_owned();
    let mut query = task::Entity::find()
        .select_only()
        .column(task::Column::DeadlineMs)
        .column(task::Column::TaskId)
        .filter(task::Column::DeadlineMs.lte(cutoff))
        .filter(Expr::exists(has_result).not());
    if let Some((deadline, id)) = after {
        query = query.filter(
            Condition::any()
                .add(task::Column::DeadlineMs.gt(*deadline))
                .add(Condition::all().add(task::Column::DeadlineMs.eq(*deadline)).add(task::Column::TaskId.gt(id))),
        );
    }
    query
        .order_by_asc(task::Column::DeadlineMs)
        .order_by_asc(task::Column::TaskId)
        .limit(SWEEP_PAGE)
        .into_tuple()
        .all(db)
        .await
}
