//! Placing a task: on `tasks.created`, offer it to eligible live miners (request/reply on
//! each miner's own subject), record every answer, and assign the task to the miners that
//! accepted — each assignment signed, with a grant to read the train split only.
//!
//! Exactly once per (task, miner), whatever the replicas or crashes: an offer is made only
//! by whoever inserts its row first (primary key (task, miner)); assignments are inserted
//! with their events in one transaction (primary key (task, miner), event id = assignment
//! id as `Nats-Msg-Id`). Too few acceptances: the task message is retried with back-off
//! (one round per delivery) and after `offer_rounds` rounds the task fails with a reason.

use std::sync::Arc;

use async_nats::jetstream;
use gradients_bus::worker::{Handled, Handler, HandlerError};
use gradients_bus::{subjects, topology};
use gradients_miner::freshness;
use gradients_miner::identity::{domains, verify_message};
use gradients_proto::v1::{
    Assignment, DataGrant, DatasetRef, Miner, Offer, OfferReply, Task, TaskCreated, TaskStatus, Timestamp,
};
use gradients_store::entity::dispatch::{assignment, offer, task, OfferOutcome, TaskState};
use gradients_store::outbox::{status_event, PendingEvent};
use gradients_store::sea_orm::sea_query::Expr;
use gradients_store::sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, Set, TransactionTrait,
};
use prost::Message;

use crate::{registry, Context, SERVICE_NAME};

/// Attempts at recording a miner's answer to an offer before the round fails.
const RECORD_ATTEMPTS: u32 = 12;
/// The wait between those attempts.
const RECORD_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// The handler of `tasks.created`.
pub struct Placer(pub Arc<Context>);

fn transient(e: impl Into<gradients_bus::Cause>) -> HandlerError {
    HandlerError::transient(e)
}

impl Handler for Placer {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let ctx = &self.0;
        let created = TaskCreated::decode(message.payload.as_ref())
            .map_err(|e| HandlerError::poison(format!("not a TaskCreated: {e}")))?;
        let task = created.task.ok_or_else(|| HandlerError::poison("TaskCreated without a task"))?;
        // Without a deadline the task could never close on time: refuse it, never default it.
        let Some(deadline) = task.deadline.filter(|d| d.unix_ms > 0) else {
            return Err(HandlerError::poison(format!("task {} has no deadline", task.id)));
        };
        let round = message.info().map(|i| i.delivered.max(1) as u32).unwrap_or(1);
        let row = record_task(ctx, &task, deadline.unix_ms).await.map_err(transient)?;
        if row.state != TaskState::Offering {
            return Ok(Handled::Done); // Placed, failed, closed or cancelled already.
        }
        offer_round(ctx, &task, round).await?;
        let accepted = offer::Entity::find()
            .filter(offer::Column::TaskId.eq(task.id.as_str()))
            .filter(offer::Column::Outcome.eq(OfferOutcome::Accepted))
            .all(&ctx.db)
            .await
            .map_err(transient)?;
        #[cfg(feature = "test-faults")]
        if ctx.settings.dispatch.faults.crash_after_offers {
            ctx.crash.fire("crash_after_offers");
            std::future::pending::<()>().await;
        }
        let needed = ctx.settings.dispatch.min_miners_per_task;
        if accepted.len() >= needed {
            // Each assigned miner's own artifacts bucket, made here rather than at registration:
            // registering is open to anyone, so it must not reserve storage.
            for offer in &accepted {
                let max_bytes = ctx.settings.dispatch.artifacts_max_bytes;
                topology::miner_artifacts(&ctx.bus, &offer.miner_id, max_bytes, &ctx.settings.nats)
                    .await
                    .map_err(transient)?;
            }
            assign(ctx, &task, &accepted).await.map_err(transient)?;
            return Ok(Handled::Done);
        }
        // Each round is one delivery of the message: the last round comes no later than the
        // consumer's last delivery, so the task fails with its reason rather than being
        // dead-lettered.
        let max_deliver = ctx.settings.nats.max_deliver;
        let rounds = match u32::try_from(max_deliver) {
            Ok(deliveries) if deliveries > 0 => ctx.settings.dispatch.offer_rounds.min(deliveries),
            _ => ctx.settings.dispatch.offer_rounds,
        };
        if round >= rounds {
            let reason = format!(
                "only {} of the {needed} miners needed accepted after {round} rounds of offers",
                accepted.len()
            );
            fail(ctx, &task.id, &reason).await.map_err(transient)?;
            return Ok(Handled::Done);
        }
        // Not a failure: the market has too few willing miners yet. The message comes back
        // after the back-off for another round.
        Ok(Handled::RetryLater {
            after: ctx.settings.nats.retry_backoff(round as u64),
            reason: format!(
                "{} of {needed} miners accepted; offering again (round {round} of {rounds})",
                accepted.len()
            ),
        })
    }
}

/// Records the task once (with its `accepted -> dispatching` event) and returns its row.
async fn record_task(ctx: &Context, task: &Task, deadline_ms: i64) -> Result<task::Model, DbErr> {
    if let Some(row) = task::Entity::find_by_id(task.id.clone()).one(&ctx.db).await? {
        return Ok(row);
    }
    let now = Timestamp::now().unix_ms;
    let row = task::Model {
        task_id: task.id.clone(),
        task_proto: task.encode_to_vec(),
        state: TaskState::Offering,
        reason: String::new(),
        deadline_ms,
        updated_at_ms: now,
    };
    let txn = ctx.db.begin().await?;
    match row.clone().into_active_model().insert(&txn).await {
        Ok(_) => {}
        Err(e) if gradients_store::is_unique_violation(&e) => {
            txn.rollback().await?;
            return task::Entity::find_by_id(task.id.clone()).one(&ctx.db).await?.ok_or(e);
        }
        Err(e) => return Err(e),
    }
    status_event(&task.id, TaskStatus::Accepted, TaskStatus::Dispatching, "offering to miners", now, SERVICE_NAME)
        .store(&txn, now)
        .await?;
    txn.commit().await?;
    ctx.outbox.wake();
    Ok(row)
}

/// Whether `miner` can take `task`: type, model size and spare capacity.
fn eligible(ctx: &Context, miner: &Miner, task: &Task) -> bool {
    let Some(capabilities) = &miner.capabilities else { return false };
    let params = ctx.settings.models.get(&task.base_model).copied().unwrap_or(u64::MAX);
    capabilities.task_types.contains(&task.r#type)
        && capabilities.max_model_params >= params
        && miner.active_tasks < capabilities.max_concurrent_tasks.max(1)
}

/// One round: offers to eligible live miners not offered this task before, least loaded
/// first, up to the per-task cap; answers recorded as they come. An offer left `sent` past
/// its time was made by a replica that died before recording the answer (the miner may
/// well have accepted): that miner is asked again, with the same offer id.
async fn offer_round(ctx: &Context, task: &Task, round: u32) -> Result<(), HandlerError> {
    let cutoff = Timestamp::now().unix_ms - ctx.settings.dispatch.offer_timeout_ms as i64;
    let offered = offer::Entity::find()
        .filter(offer::Column::TaskId.eq(task.id.as_str()))
        .all(&ctx.db)
        .await
        .map_err(transient)?;
    let live: Vec<Miner> = registry::live_miners(ctx)
        .await
        .map_err(|e| transient(e.message))?
        .into_iter()
        .filter(|m| eligible(ctx, m, task))
        .collect();
    let is_live = |miner_id: &str| live.iter().find(|m| m.miner_id == miner_id);
    let mut asks = Vec::new();
    for stale in offered.iter().filter(|o| o.outcome == OfferOutcome::Sent && o.sent_at_ms < cutoff) {
        match is_live(&stale.miner_id) {
            Some(miner) => asks.push((miner.clone(), Some(stale.sent_at_ms))),
            None => {
                offer::Entity::update_many()
                    .col_expr(offer::Column::Outcome, Expr::value(OfferOutcome::Timeout))
                    .col_expr(
                        offer::Column::Reason,
                        Expr::value(
                            "no answer recorded (dispatch restarted) and the miner is no longer live or has no room",
                        ),
                    )
                    .filter(offer::Column::TaskId.eq(task.id.as_str()))
                    .filter(offer::Column::MinerId.eq(stale.miner_id.as_str()))
                    .filter(offer::Column::Outcome.eq(OfferOutcome::Sent))
                    .filter(offer::Column::SentAtMs.eq(stale.sent_at_ms))
                    .exec(&ctx.db)
                    .await
                    .map_err(transient)?;
            }
        }
    }
    let accepted = offered.iter().filter(|o| o.outcome == OfferOutcome::Accepted).count();
    let room = ctx.settings.dispatch.max_miners_per_task.saturating_sub(accepted + asks.len());
    let mut candidates: Vec<Miner> =
        live.iter().filter(|m| !offered.iter().any(|o| o.miner_id == m.miner_id)).cloned().collect();
    candidates.sort_by(|a, b| a.active_tasks.cmp(&b.active_tasks).then_with(|| a.miner_id.cmp(&b.miner_id)));
    candidates.truncate(room);
    tracing::info!(task_id = %task.id, round, candidates = candidates.len(), asked_again = asks.len(), "offering");
    asks.extend(candidates.into_iter().map(|miner| (miner, None)));
    let offers = asks.iter().map(|(miner, stale)| offer_one(ctx, task, miner, round, *stale));
    for result in futures::future::join_all(offers).await {
        result.map_err(transient)?;
    }
    Ok(())
}

/// Offers `task` to `miner` unless someone already did, and records the answer. With
/// `stale` (the `sent_at_ms` of an offer whose answer a dead replica never recorded), the
/// offer is asked again by whoever moves that row on first.
async fn offer_one(ctx: &Context, task: &Task, miner: &Miner, round: u32, stale: Option<i64>) -> Result<(), DbErr> {
    let offer_id =
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("offer:{}:{}", task.id, miner.miner_id).as_bytes())
            .to_string();
    if let Some(sent_at_ms) = stale {
        let claimed = offer::Entity::update_many()
            .col_expr(offer::Column::SentAtMs, Expr::value(Timestamp::now().unix_ms))
            .col_expr(offer::Column::Round, Expr::value(round as i32))
            .filter(offer::Column::TaskId.eq(task.id.as_str()))
            .filter(offer::Column::MinerId.eq(miner.miner_id.as_str()))
            .filter(offer::Column::Outcome.eq(OfferOutcome::Sent))
            .filter(offer::Column::SentAtMs.eq(sent_at_ms))
            .exec(&ctx.db)
            .await?;
        if claimed.rows_affected != 1 {
            return Ok(()); // another replica asks again
        }
    } else {
        let row = offer::ActiveModel {
            task_id: Set(task.id.clone()),
            miner_id: Set(miner.miner_id.clone()),
            offer_id: Set(offer_id.clone()),
            round: Set(round as i32),
            outcome: Set(OfferOutcome::Sent),
            reason: Set(String::new()),
            estimated_seconds: Set(0.0),
            sent_at_ms: Set(Timestamp::now().unix_ms),
            answered_at_ms: Set(None),
        };
        match row.insert(&ctx.db).await {
            Ok(_) => {}
            Err(e) if gradients_store::is_unique_violation(&e) => return Ok(()), // another replica offered
            Err(e) => return Err(e),
        }
    }
    let train = task.splits.as_ref().and_then(|s| s.train.clone()).unwrap_or_default();
    let proposal = Offer {
        offer_id: offer_id.clone(),
        task_id: task.id.clone(),
        r#type: task.r#type,
        base_model: task.base_model.clone(),
        train_rows: train.rows,
        train_bytes: train.object.map(|o| o.size).unwrap_or(0),
        deadline: task.deadline,
    };
    let request = async_nats::Request::new()
        .payload(proposal.encode_to_vec().into())
        .timeout(Some(ctx.settings.dispatch.offer_timeout()));
    let subject = subjects::miner_offers(&miner.miner_id);
    let (result, reason, estimate) = match ctx.bus.client.send_request(subject, request).await {
        Err(e) => (OfferOutcome::Timeout, e.to_string(), 0.0),
        Ok(reply) => match OfferReply::decode(reply.payload.as_ref()) {
            Err(e) => (OfferOutcome::Invalid, format!("undecodable reply: {e}"), 0.0),
            Ok(answer) => {
                let signed = verify_message(&miner.public_key, domains::OFFER_REPLY, &answer, &answer.signature, |a| {
                    a.signature.clear()
                });
                let fresh = freshness::check(
                    answer.at.as_ref(),
                    Timestamp::now().unix_ms,
                    ctx.settings.dispatch.max_clock_skew_ms,
                );
                if signed.is_err() || answer.offer_id != offer_id || answer.miner_id != miner.miner_id {
                    (OfferOutcome::Invalid, "reply not signed by the miner for this offer".to_owned(), 0.0)
                } else if let Err(stale) = fresh {
                    (OfferOutcome::Invalid, format!("stale reply: {stale}"), 0.0)
                } else if answer.accepted {
                    (OfferOutcome::Accepted, String::new(), answer.estimated_seconds)
                } else {
                    (OfferOutcome::Declined, answer.decline_reason, 0.0)
                }
            }
        },
    };
    tracing::info!(task_id = %task.id, miner_id = %miner.miner_id, outcome = %result, %reason, "offer answered");
    // The answer is in hand: lost to a dropped connection, it would leave the offer `sent`
    // and the miner unasked until the offer is stale, while the task's rounds run out. So
    // recording it is retried (a pool whose connections were all cut fails once for each).
    let mut attempt = 1;
    loop {
        let recorded = offer::Entity::update_many()
            .col_expr(offer::Column::Outcome, Expr::value(result))
            .col_expr(offer::Column::Reason, Expr::value(reason.clone()))
            .col_expr(offer::Column::EstimatedSeconds, Expr::value(estimate))
            .col_expr(offer::Column::AnsweredAtMs, Expr::value(Timestamp::now().unix_ms))
            .filter(offer::Column::TaskId.eq(task.id.as_str()))
            .filter(offer::Column::MinerId.eq(miner.miner_id.as_str()))
            .filter(offer::Column::Outcome.eq(OfferOutcome::Sent))
            .exec(&ctx.db)
            .await;
        match recorded {
            Ok(_) => return Ok(()),
            Err(e) if attempt < RECORD_ATTEMPTS => {
                tracing::warn!(task_id = %task.id, miner_id = %miner.miner_id, error = %e, attempt, "recording an answer failed; retrying");
                attempt += 1;
                tokio::time::sleep(RECORD_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Assigns the task to every miner that accepted, once: rows, signed assignments and the
/// `dispatching -> training` event in one transaction. Only a task still `offering` moves:
/// one cancelled while its offers were out gets no assignment.
async fn assign(ctx: &Context, task: &Task, accepted: &[offer::Model]) -> Result<(), DbErr> {
    let now = Timestamp::now().unix_ms;
    let train = task.splits.as_ref().and_then(|s| s.train.clone()).and_then(|t: DatasetRef| t.object);
    let txn = ctx.db.begin().await?;
    let moved = task::Entity::update_many()
        .col_expr(task::Column::State, Expr::value(TaskState::Training))
        .col_expr(task::Column::UpdatedAtMs, Expr::value(now))
        .filter(task::Column::TaskId.eq(task.id.as_str()))
        .filter(task::Column::State.eq(TaskState::Offering))
        .exec(&txn)
        .await?;
    if moved.rows_affected == 0 {
        txn.rollback().await?;
        return Ok(()); // Another replica assigned it.
    }
    let cohort_size = accepted.len() as u32;
    for accepted in accepted {
        let assignment_id = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("assignment:{}:{}", task.id, accepted.miner_id).as_bytes(),
        )
        .to_string();
        assignment::ActiveModel {
            task_id: Set(task.id.clone()),
            miner_id: Set(accepted.miner_id.clone()),
            assignment_id: Set(assignment_id.clone()),
            created_at_ms: Set(now),
        }
        .insert(&txn)
        .await?;
        let mut signed = Assignment {
            assignment_id: assignment_id.clone(),
            task_id: task.id.clone(),
            miner_id: accepted.miner_id.clone(),
            task: Some(task.clone()),
            grant: Some(DataGrant { task_id: task.id.clone(), train: train.clone(), expires_at: task.deadline }),
            deadline: task.deadline,
            signature: Vec::new(),
            cohort_size,
        };
        signed.signature = ctx.identity.sign_message(domains::ASSIGNMENT, &signed, |a| a.signature.clear());
        PendingEvent {
            id: assignment_id,
            subject: subjects::assignments(&accepted.miner_id),
            payload: signed.encode_to_vec(),
        }
        .store(&txn, now)
        .await?;
    }
    let reason = format!("assigned to {} miners", accepted.len());
    status_event(&task.id, TaskStatus::Dispatching, TaskStatus::Training, &reason, now, SERVICE_NAME)
        .store(&txn, now)
        .await?;
    txn.commit().await?;
    ctx.outbox.wake();
    tracing::info!(task_id = %task.id, miners = accepted.len(), "task assigned");
    Ok(())
}

/// Fails the task for want of miners.
async fn fail(ctx: &Context, task_id: &str, reason: &str) -> Result<(), DbErr> {
    let now = Timestamp::now().unix_ms;
    let txn = ctx.db.begin().await?;
    let moved = task::Entity::update_many()
        .col_expr(task::Column::State, Expr::value(TaskState::Failed))
        .col_expr(task::Column::Reason, Expr::value(reason))
        .col_expr(task::Column::UpdatedAtMs, Expr::value(now))
        .filter(task::Column::TaskId.eq(task_id))
        .filter(task::Column::State.eq(TaskState::Offering))
        .exec(&txn)
        .await?;
    if moved.rows_affected == 1 {
        status_event(task_id, TaskStatus::Dispatching, TaskStatus::Failed, reason, now, SERVICE_NAME)
            .store(&txn, now)
            .await?;
    }
    txn.commit().await?;
    ctx.outbox.wake();
    tracing::warn!(task_id, reason, "task failed");
    Ok(())
}
